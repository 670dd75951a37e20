"""Every setting of ``yagna service run`` in one table, and where each value comes from.

A setting has a key in the config file (``net.target_peers``), an environment
variable (``YAGNA_TARGET_PEERS``), usually a ``service run`` flag
(``--target-peers``), a kind that parses and checks its values, a default and
a line of help. :func:`resolve` picks each value by precedence::

    command-line flag  >  environment variable  >  config file  >  default

and records the origin of each (``flag``, ``env``, ``file``, ``default``;
``flag+file``/``env+file`` for ``net.bootstrap``, whose flags *add* to the
file's list). It is pure: the caller passes the flags given, the environment
and the parsed file. :func:`parse_text` reads a config file's text; any
mistake (TOML syntax, unknown section or key, wrong type, bad value) is a
:class:`SettingError` naming the key and its line, never a guess.

Names: the environment variable of a setting with a flag is ``YAGNA_`` and the
flag's name in capitals, dashes as underscores (``--api-port`` ->
``YAGNA_API_PORT``, ``--subnet`` -> ``YAGNA_SUBNET``); a setting without a flag
takes its key's name (``net.relay_max_circuits`` -> ``YAGNA_RELAY_MAX_CIRCUITS``;
``provider.preset.threads`` -> ``YAGNA_PRESET_THREADS``). Lists in the
environment are separated by commas or spaces; booleans are
``true/false/1/0/yes/no/on/off``.

The file is ``<data dir>/config.toml`` (:func:`config_path`); ``<data dir>/yagna.toml``,
its older name, is still read when it is the only one; both at once is an
error (which one would win is not obvious, so the node does not guess).

A new ``service run`` flag: declare the click option without ``default`` or
``envvar`` (``yagna/cli/settings_cli.py`` adds them to its help from here), add
its row to :data:`SETTINGS`, map it in :func:`node_config`, and paste
``python -m yagna.settings`` into docs/configuration.md; ``tests/test_settings.py``
fails until the row exists.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yagna.config import ConfigError

if TYPE_CHECKING:
    from market.presets import Preset
    from yagna.config import NodeConfig
    from yagna.net.relay_core import RelayLimits

FILE_NAME = "config.toml"
LEGACY_FILE_NAME = "yagna.toml"
MAX_FILE_SIZE = 256 * 1024
MAX_LIST = 64


class SettingError(ConfigError):
    """A setting's value (from a flag, the environment or the file) is unusable; the message names it."""


# -- kinds: parse and check one value ------------------------------------------------------------------


class Kind:
    """How a setting's values look: checked from TOML/flags (:meth:`check`), parsed from text (:meth:`parse`)."""

    doc = "a value"

    def check(self, value: object) -> object:
        """The value as the setting holds it; ValueError("must be ...") if it is not one."""
        raise NotImplementedError

    def parse(self, text: str) -> object:
        """A value from text (an environment variable, ``yagna config set``)."""
        return self.check(text)

    def show(self, value: object) -> str:
        """The value as text for people (``config show``)."""
        if value is None:
            return "(not set)"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float):
            return f"{value:g}"
        return str(value)


def _not(value: object) -> str:
    return f"not {value!r:.80}"


@dataclass(frozen=True)
class Int(Kind):
    low: int
    high: int
    unit: str = ""

    @property
    def doc(self) -> str:  # type: ignore[override]
        return f"whole number{' of ' + self.unit if self.unit else ''} from {self.low} to {self.high}"

    def check(self, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int) or not self.low <= value <= self.high:
            raise ValueError(f"must be a {self.doc}, {_not(value)}")
        return value

    def parse(self, text: str) -> object:
        try:
            return self.check(int(text.strip()))
        except ValueError:
            raise ValueError(f"must be a {self.doc}, {_not(text)}") from None


@dataclass(frozen=True)
class Float(Kind):
    low: float
    high: float
    unit: str = ""
    low_open: bool = False

    @property
    def doc(self) -> str:  # type: ignore[override]
        low = f"more than {self.low:g}" if self.low_open else f"from {self.low:g}"
        return f"number{' of ' + self.unit if self.unit else ''} {low} to {self.high:g}"

    def check(self, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"must be a {self.doc}, {_not(value)}")
        number = float(value)
        too_low = number <= self.low if self.low_open else number < self.low
        if not math.isfinite(number) or too_low or number > self.high:
            raise ValueError(f"must be a {self.doc}, {_not(value)}")
        return number

    def parse(self, text: str) -> object:
        try:
            return self.check(float(text.strip()))
        except ValueError:
            raise ValueError(f"must be a {self.doc}, {_not(text)}") from None


@dataclass(frozen=True)
class Choice(Kind):
    choices: tuple[str, ...]

    @property
    def doc(self) -> str:  # type: ignore[override]
        return "one of " + ", ".join(f'"{c}"' for c in self.choices)

    def check(self, value: object) -> object:
        if value not in self.choices:
            raise ValueError(f"must be {self.doc}, {_not(value)}")
        return value

    def parse(self, text: str) -> object:
        return self.check(text.strip())


class Bool(Kind):
    doc = "true or false"
    _TEXT = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}

    def check(self, value: object) -> object:
        if not isinstance(value, bool):
            raise ValueError(f"must be true or false, {_not(value)}")
        return value

    def parse(self, text: str) -> object:
        try:
            return self._TEXT[text.strip().lower()]
        except KeyError:
            raise ValueError(f"must be true or false, {_not(text)}") from None


@dataclass(frozen=True)
class Text(Kind):
    pattern: str = r"\S(.*\S)?"
    what: str = "a non-empty string"
    max_len: int = 2048

    @property
    def doc(self) -> str:  # type: ignore[override]
        return self.what

    def check(self, value: object) -> object:
        if not isinstance(value, str) or not 0 < len(value) <= self.max_len:
            raise ValueError(f"must be a non-empty string, {_not(value)}")
        if not re.fullmatch(self.pattern, value):
            raise ValueError(f"must be {self.what}, {_not(value)}")
        return value

    def parse(self, text: str) -> object:
        return self.check(text.strip())


class Amount(Kind):
    """Tokens as a decimal string (money is never a float)."""

    doc = 'an amount of tokens as a decimal string, e.g. "0.025"'

    def check(self, value: object) -> object:
        from yagna.core.money import MoneyError, parse_amount

        if not isinstance(value, str):
            raise ValueError(f"must be {self.doc} (in quotes), {_not(value)}")
        try:
            parse_amount(value)
        except MoneyError as exc:
            raise ValueError(f"must be {self.doc}: {exc}") from None
        return value.strip()


class FilePath(Kind):
    doc = "a file path"

    def check(self, value: object) -> object:
        if isinstance(value, Path):
            value = str(value)
        if not isinstance(value, str) or not 0 < len(value) <= 4096 or "\0" in value:
            raise ValueError(f"must be a file path, {_not(value)}")
        return value

    def parse(self, text: str) -> object:
        return self.check(os.path.expanduser(text.strip()))


@dataclass(frozen=True)
class StrList(Kind):
    item: Text = Text()

    @property
    def doc(self) -> str:  # type: ignore[override]
        return f"list of strings (at most {MAX_LIST})"

    def check(self, value: object) -> object:
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"must be a list of strings, {_not(value)}")
        if len(value) > MAX_LIST:
            raise ValueError(f"lists more than {MAX_LIST} entries")
        for v in value:
            self.item.check(v)
        return list(value)

    def parse(self, text: str) -> object:
        text = text.strip()
        if text.startswith("["):  # a TOML array, as in the file
            import tomllib

            try:
                return self.check(tomllib.loads(f"v = {text}")["v"])
            except tomllib.TOMLDecodeError as exc:
                raise ValueError(f"must be a list of strings: {exc}") from None
        return self.check([v for v in re.split(r"[,\s]+", text) if v])

    def show(self, value: object) -> str:
        return ", ".join(value) if isinstance(value, list) and value else "(none)"


_SUBNET = Text(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", "1-64 of A-Z, a-z, 0-9, '.', '_' or '-'")
_ADDRESS = Text(r"0x[0-9a-fA-F]{40}", "a 0x address of 40 hex digits")
_URL = Text(r"https?://\S+", "an http(s) URL")
_COUNT = Int(1, 10_000)


# -- the table ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    key: str
    """``section.name`` in the config file (the section may itself be dotted: ``provider.preset``)."""
    kind: Kind
    default: object
    help: str
    flag: str | None = None
    """The ``service run`` option (``--target-peers``); None: the file and the environment only."""
    env: str = ""
    """The environment variable; by default derived from the flag or the key (module docstring)."""
    default_text: str | None = None
    """What the default means when it is not a plain value (None: :meth:`Kind.show` of the default)."""
    merge: bool = False
    """A list whose flag/environment values add to the file's (``net.bootstrap``)."""

    def __post_init__(self) -> None:
        if not self.env:
            if self.flag is not None:
                name = self.flag.removeprefix("--")
            elif self.key.startswith("provider.preset."):
                name = "preset_" + self.name
            else:
                name = self.name
            object.__setattr__(self, "env", "YAGNA_" + name.upper().replace("-", "_"))

    @property
    def section(self) -> str:
        return self.key.rpartition(".")[0]

    @property
    def name(self) -> str:
        return self.key.rpartition(".")[2]

    def describe_default(self) -> str:
        return self.default_text if self.default_text is not None else self.kind.show(self.default)


S = Setting
SETTINGS: tuple[Setting, ...] = (
    # [node]
    S("node.role", Choice(("requestor", "provider", "both")), "both",
      "What this node does: buys compute, sells it, or both.", flag="--role"),
    S("node.api_port", Int(0, 65535), 7465, "REST API port on 127.0.0.1 (0 = any free port).", flag="--api-port"),
    S("node.metrics_listen", Text(r"(\[[0-9A-Fa-f:.]+\]|[0-9.]+):[0-9]{1,5}", "HOST:PORT with an IP address, e.g. "
                                  "0.0.0.0:9464 or [::1]:9464", max_len=64), None,
      "Also serve /metrics (Prometheus) on this address WITHOUT an app key, for a scraper on another machine; "
      "firewall it to that scraper (docs/metrics.md).", flag="--metrics-listen", default_text="off"),
    # [net]
    S("net.listen", StrList(), [], "libp2p listen addresses (multiaddrs).", flag="--listen",
      default_text="/ip4/127.0.0.1/tcp/<last port or any>"),
    S("net.bootstrap", StrList(), [], "Peers to join through, /ip4/.../tcp/.../p2p/<node id>; flags add to the file's.",
      flag="--bootstrap", merge=True),
    S("net.px_interval", Float(0, 3600, "seconds", low_open=True), 5.0, "Seconds between peer exchanges.",
      flag="--px-interval"),
    S("net.target_peers", _COUNT, 8, "Connections to keep up by own dials; bootstrap peers are always dialed.",
      flag="--target-peers"),
    S("net.max_peers", _COUNT, 64, "Connections at most, inbound included.", flag="--max-peers"),
    S("net.relay_service", Choice(("auto", "on", "off")), "auto",
      "Serve circuit relay v2 to private nodes: auto = while publicly reachable, on = always, off = never.",
      flag="--relay-service"),
    S("net.relay_max_reservations", _COUNT, None, "Relay: reservations held at once.", default_text="128"),
    S("net.relay_circuit_mib", _COUNT, None, "Relay: bytes per relayed circuit, MiB.", default_text="256"),
    S("net.relay_circuit_seconds", _COUNT, None, "Relay: lifetime of a relayed circuit, seconds.", default_text="600"),
    S("net.relay_circuits_per_peer", _COUNT, None, "Relay: circuits at once per peer.", default_text="4"),
    S("net.relay_max_circuits", _COUNT, None, "Relay: circuits at once over all peers.", default_text="32"),
    S("net.hole_punching", Bool(), True,
      "Upgrade relayed connections to direct ones by hole punching (DCUtR) where the NATs allow it.",
      flag="--hole-punching"),
    # [market]
    S("market.network_id", Text(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", "1-64 of A-Z, a-z, 0-9, '.', '_' or '-'"),
      "testnet", "Market network; offers, demands and agreements of other networks are refused.",
      flag="--network-id"),
    S("market.subnets", StrList(_SUBNET), ["public"],
      "Subnets whose offers to follow; presets choose where they offer.", flag="--subnet"),
    S("market.offer_ttl", Int(10, 7 * 86400, "seconds"), 1800, "Seconds an offer lives; it is re-announced halfway.",
      flag="--offer-ttl"),
    S("market.anti_entropy_interval", Float(0, 3600, "seconds"), 3.0,
      "Mean seconds between offer anti-entropy rounds with one random neighbour per subnet "
      "(jittered +-50%; 0: only with each new peer).", flag="--anti-entropy-interval"),
    # [provider]
    S("provider.max_threads", Int(0, 2**20), None, "Most CPU threads to sell.", flag="--max-threads",
      default_text="all but one"),
    S("provider.max_mem_gib", Float(0, 2**30, "GiB"), None, "Most memory to sell, GiB.", flag="--max-mem-gib",
      default_text="70% of the machine's"),
    S("provider.max_storage_gib", Float(0, 2**30, "GiB"), None, "Most disk to sell, GiB.", flag="--max-storage-gib",
      default_text="80% of the free disk"),
    S("provider.activity_keepalive", Float(1, 86400, "seconds"), 30.0,
      "Seconds of requestor silence after which its activity is stopped and its container removed.",
      flag="--activity-keepalive"),
    S("provider.job_cache_gib", Float(0, 2**30, "GiB"), 4.0,
      "Disk for pipelines' caches, all requestors together, GiB (least recently used go first).",
      flag="--job-cache-gib"),
    S("provider.job_cache_per_requestor_gib", Float(0, 2**30, "GiB"), 1.0,
      "Disk for pipelines' caches of one requestor, GiB.", flag="--job-cache-per-requestor-gib"),
    # [provider.preset]: the preset the daemon creates or updates at start (`yagna provider init` writes it)
    S("provider.preset.name", Text(r"[a-z0-9][a-z0-9_-]{0,63}", "1-64 of a-z, 0-9, '_' or '-'"), "default",
      "Name of the preset this file defines (created or updated at start when any provider.preset key is set)."),
    S("provider.preset.threads", Int(1, 1024), 1, "CPU threads per agreement."),
    S("provider.preset.mem_gib", Float(0, 1_000_000, "GiB", low_open=True), 1.0, "Memory per agreement, GiB."),
    S("provider.preset.storage_gib", Float(0, 1_000_000, "GiB", low_open=True), 2.0, "Disk per agreement, GiB."),
    S("provider.preset.price_cpu_hour", Amount(), "0.025", "Price per CPU-hour, tokens."),
    S("provider.preset.price_hour", Amount(), "0.005", "Price per hour of duration, tokens."),
    S("provider.preset.start_fee", Amount(), "0", "Price per agreement start, tokens."),
    S("provider.preset.fixed_price_hour", Amount(), None,
      "A fixed price per hour for this size, tokens (then no CPU price and no start fee).", default_text="none"),
    S("provider.preset.subnet", _SUBNET, None, "Subnet the preset's offer is published in.",
      default_text="the first of market.subnets"),
    # [payment]
    S("payment.driver", Choice(("testnet-ledger", "erc20")), "testnet-ledger",
      "testnet-ledger: test tokens of no value, in the node's own file; erc20: payment channels in a contract on "
      "an EVM chain (needs rpc_url, token, contract).", flag="--payment-driver"),
    S("payment.rpc_url", _URL, None, "erc20: the chain's JSON-RPC endpoint, e.g. http://127.0.0.1:8545.",
      flag="--rpc-url", default_text="none"),
    S("payment.token", _ADDRESS, None, "erc20: the ERC-20 token's 0x address.", flag="--token", default_text="none"),
    S("payment.contract", _ADDRESS, None, "erc20: the PaymentChannels contract's 0x address (docs/payments.md).",
      flag="--contract", default_text="none"),
    # [log]
    S("log.level", Choice(("debug", "info", "warning", "error")), "info", "Log level.", flag="--log-level"),
    S("log.format", Choice(("text", "json")), "text", "Log format (json: one object per line, for the journal).",
      flag="--log-format"),
    S("log.file", FilePath(), None, "Log to this file, rotated at 10 MiB with 4 old files kept.", flag="--log-file",
      default_text="stderr"),
)
del S

BY_KEY: dict[str, Setting] = {s.key: s for s in SETTINGS}
BY_FLAG: dict[str, Setting] = {s.flag: s for s in SETTINGS if s.flag is not None}
BY_ENV: dict[str, Setting] = {s.env: s for s in SETTINGS}
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(s.section for s in SETTINGS))
NOT_SETTINGS = frozenset({"--data-dir", "--config", "--test-fault"})
"""``service run`` options that are no settings: where the file is (the data dir, the config file itself),
and a hidden test-only switch."""

assert len(BY_ENV) == len(SETTINGS), "two settings share an environment variable"


def setting(key: str) -> Setting:
    """The setting named ``key``, or a SettingError listing the known keys."""
    try:
        return BY_KEY[key]
    except KeyError:
        close = difflib.get_close_matches(key, BY_KEY, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise SettingError(f"unknown setting {key!r}{hint} (`yagna config show` lists them all)") from None


# -- the file ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileValues:
    """The settings one config file sets (checked), with the line of each key."""

    path: Path | None = None
    """None: there is no file."""
    values: dict[str, object] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)


def config_path(data_dir: Path, explicit: Path | None = None) -> tuple[Path, bool]:
    """The config file to read and whether it must exist: ``explicit`` (``--config``), else
    ``<data dir>/config.toml``, or ``<data dir>/yagna.toml`` when only that older name exists."""
    if explicit is not None:
        return explicit, True
    new, old = data_dir / FILE_NAME, data_dir / LEGACY_FILE_NAME
    if old.is_file():
        if new.exists():
            raise SettingError(
                f"both {new} and {old} exist; which one would win is not obvious, so the node refuses both: "
                f"move the settings of {old.name} into {new.name} (same sections and keys) and delete {old.name}"
            )
        return old, False
    return new, False


def read_file(path: Path, *, required: bool) -> FileValues:
    """Read and check a config file; a missing optional file sets nothing."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_SIZE + 1)
    except FileNotFoundError:
        if required:
            raise SettingError(f"config file {path} does not exist") from None
        return FileValues()
    except NotADirectoryError:
        if required:
            raise SettingError(f"cannot read config file {path}: a parent is not a directory") from None
        return FileValues()  # the data dir itself is a file: the data-dir check names that, not us
    except IsADirectoryError:
        raise SettingError(f"config file {path} is a directory") from None
    except OSError as exc:
        raise SettingError(f"cannot read config file {path}: {exc.strerror}") from None
    if len(raw) > MAX_FILE_SIZE:
        raise SettingError(f"config file {path} is larger than {MAX_FILE_SIZE // 1024} KiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SettingError(f"config file {path} is not valid TOML: not UTF-8 at byte {exc.start}") from None
    return parse_text(text, path)


def parse_text(text: str, path: Path) -> FileValues:
    """Check a config file's text against the table; errors name the key and its line."""
    import tomllib

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingError(f"config file {path} is not valid TOML: {exc}") from None
    lines = key_lines(text)

    def fail(key: str, message: str) -> SettingError:
        line = _line_of(key, lines)
        return SettingError(f"config file {path}{f', line {line}' if line else ''}: {message}")

    values: dict[str, object] = {}

    def walk(table: Mapping[str, Any], section: str) -> None:
        unknown = []
        for name, value in table.items():
            key = f"{section}.{name}"
            if key in SECTIONS:
                if not isinstance(value, dict):
                    raise fail(key, f"[{key}] must be a table")
                walk(value, key)
            elif key in BY_KEY:
                try:
                    values[key] = BY_KEY[key].kind.check(value)
                except ValueError as exc:
                    raise fail(key, f"{key} {exc}") from None
            else:
                unknown.append(name)
        if unknown:
            known = [s.name for s in SETTINGS if s.section == section]
            known += [s.rpartition(".")[2] for s in SECTIONS if s.rpartition(".")[0] == section]
            raise fail(f"{section}.{unknown[0]}", f"unknown key(s) in [{section}]: {', '.join(unknown)} "
                                                   f"(known: {', '.join(known)})")

    top = [s for s in SECTIONS if "." not in s]
    for name, value in doc.items():
        if name not in top:
            known = ", ".join(f"[{s}]" for s in SECTIONS)
            if isinstance(value, dict):
                raise fail(name, f"unknown section(s) {name} (known: {known})")
            raise fail(name, f"unknown key {name} outside any section (settings go in sections: {known})")
        if not isinstance(value, dict):
            raise fail(name, f"[{name}] must be a table")
        walk(value, name)
    return FileValues(path=path, values=values, lines={k: _line_of(k, lines) or 0 for k in values})


_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_ASSIGN = re.compile(r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=""")


def _dotted(text: str) -> str:
    return ".".join(part.strip().strip("\"'") for part in re.findall(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""", text))


def key_lines(text: str) -> dict[str, int]:
    """The line (1-based) where each table and key first appears, by dotted name (best effort:
    a line inside a multi-line string that looks like ``key = ...`` may be taken for one)."""
    found: dict[str, int] = {}
    table = ""
    for number, line in enumerate(text.splitlines(), 1):
        header = _HEADER.match(line)
        if header:
            table = _dotted(header.group(1))
            found.setdefault(table, number)
            continue
        assign = _ASSIGN.match(line)
        if assign:
            key = _dotted(assign.group(1))
            found.setdefault(f"{table}.{key}" if table else key, number)
    return found


def _line_of(key: str, lines: Mapping[str, int]) -> int | None:
    """The line of ``key``, or of the nearest enclosing table that has one."""
    while key:
        if key in lines:
            return lines[key]
        key = key.rpartition(".")[0]
    return None


# -- precedence ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resolved:
    """Every setting's value and where it came from."""

    values: dict[str, object]
    origins: dict[str, str]
    """``flag``, ``env``, ``file``, ``default`` (``flag+file``/``env+file`` for merged lists)."""
    file: Path | None = None

    def __getitem__(self, key: str) -> Any:
        return self.values[key]


def env_values(env: Mapping[str, str]) -> dict[str, object]:
    """The settings the environment sets (``YAGNA_*`` of the table; empty values are ignored)."""
    out: dict[str, object] = {}
    for s in SETTINGS:
        text = env.get(s.env)
        if text is None or not text.strip():
            continue
        try:
            out[s.key] = s.kind.parse(text)
        except ValueError as exc:
            raise SettingError(f"environment variable {s.env} ({s.key}) {exc}") from None
    return out


def resolve(flags: Mapping[str, object], env: Mapping[str, str], file: FileValues) -> Resolved:
    """Each setting by precedence: ``flags`` (by key, given on the command line only) > ``env`` > ``file`` > default."""
    from_env = env_values(env)
    values: dict[str, object] = {}
    origins: dict[str, str] = {}
    for s in SETTINGS:
        if s.key in flags:
            try:
                value: object = s.kind.check(flags[s.key])
            except ValueError as exc:
                raise SettingError(f"{s.flag or s.key} {exc}") from None
            origin = "flag"
        elif s.key in from_env:
            value, origin = from_env[s.key], "env"
        elif s.key in file.values:
            value, origin = file.values[s.key], "file"
        else:
            value, origin = s.default, "default"
            if isinstance(value, list):
                value = list(value)
        if s.merge and origin in ("flag", "env") and file.values.get(s.key):
            value = list(dict.fromkeys([*file.values[s.key], *value]))  # type: ignore[misc]
            origin += "+file"
        values[s.key], origins[s.key] = value, origin
    return Resolved(values, origins, file.path)


def load(data_dir: Path, *, explicit: Path | None = None, flags: Mapping[str, object] | None = None,
         env: Mapping[str, str] | None = None) -> Resolved:
    """Read the data dir's config file (or ``explicit``) and resolve every setting."""
    path, required = config_path(data_dir, explicit)
    return resolve(flags or {}, os.environ if env is None else env, read_file(path, required=required))


# -- what the daemon makes of them ---------------------------------------------------------------------


def relay_limits(values: Mapping[str, object]) -> RelayLimits | None:
    """The relay limits the settings set (defaults for the rest); None when they set none."""
    keys = ("net.relay_max_reservations", "net.relay_circuit_mib", "net.relay_circuit_seconds",
            "net.relay_circuits_per_peer", "net.relay_max_circuits")
    got: dict[str, Any] = {k: values.get(k) for k in keys}
    if all(v is None for v in got.values()):
        return None
    from yagna.net.relay_core import MiB, RelayLimits

    d = RelayLimits()
    return RelayLimits(
        max_reservations=got["net.relay_max_reservations"] or d.max_reservations,
        circuit_bytes=got["net.relay_circuit_mib"] * MiB if got["net.relay_circuit_mib"] else d.circuit_bytes,
        circuit_duration=float(got["net.relay_circuit_seconds"] or d.circuit_duration),
        circuits_per_peer=got["net.relay_circuits_per_peer"] or d.circuits_per_peer,
        max_circuits=got["net.relay_max_circuits"] or d.max_circuits,
    )


PRESET_KEYS = tuple(s.key for s in SETTINGS if s.section == "provider.preset")


def provider_preset(resolved: Resolved) -> Preset | None:
    """The preset ``[provider.preset]`` defines (None when no key of it is set anywhere)."""
    if all(resolved.origins[k] == "default" for k in PRESET_KEYS):
        return None
    from market.errors import MarketError
    from market.presets import Preset
    from market.pricing import LinearPricing
    from yagna.core.money import parse_amount

    v = {k.rpartition(".")[2]: resolved[k] for k in PRESET_KEYS}
    try:
        # per hour -> per second, floored, as `yagna provider preset create` does
        if v["fixed_price_hour"] is not None:
            pricing = LinearPricing(0, 0, parse_amount(v["fixed_price_hour"]) // 3600)
        else:
            pricing = LinearPricing(parse_amount(v["start_fee"]), parse_amount(v["price_cpu_hour"]) // 3600,
                                    parse_amount(v["price_hour"]) // 3600)
        return Preset(name=v["name"], threads=v["threads"], mem_gib=v["mem_gib"], storage_gib=v["storage_gib"],
                      pricing=pricing, subnet=v["subnet"] or resolved["market.subnets"][0],
                      fixed=v["fixed_price_hour"] is not None)
    except MarketError as exc:
        raise SettingError(f"[provider.preset]: {exc}") from None


def node_config(resolved: Resolved, data_dir: Path, *, test_faults: Iterable[str] = ()) -> NodeConfig:
    """The daemon's configuration from resolved settings."""
    from yagna.config import NodeConfig

    v = resolved
    return NodeConfig(
        data_dir=data_dir,
        role=v["node.role"],
        api_port=v["node.api_port"],
        metrics_listen=v["node.metrics_listen"],
        listen=list(v["net.listen"]),
        bootstrap=list(v["net.bootstrap"]),
        px_interval=v["net.px_interval"],
        target_peers=v["net.target_peers"],
        max_peers=v["net.max_peers"],
        network_id=v["market.network_id"],
        subnets=list(v["market.subnets"]),
        offer_ttl_s=v["market.offer_ttl"],
        anti_entropy_s=v["market.anti_entropy_interval"],
        max_threads=v["provider.max_threads"],
        max_mem_gib=v["provider.max_mem_gib"],
        max_storage_gib=v["provider.max_storage_gib"],
        activity_keepalive_s=v["provider.activity_keepalive"],
        job_cache_gib=v["provider.job_cache_gib"],
        job_cache_per_requestor_gib=v["provider.job_cache_per_requestor_gib"],
        test_faults=frozenset(test_faults),
        relay_service=v["net.relay_service"],
        relay_limits=relay_limits(v.values),
        hole_punching=v["net.hole_punching"],
        payment_driver=v["payment.driver"],
        rpc_url=v["payment.rpc_url"],
        token=v["payment.token"],
        contract=v["payment.contract"],
        provider_preset=provider_preset(resolved),
    )


def markdown_table() -> str:
    """The table as Markdown, for docs/configuration.md (a test keeps that page in step with it)."""
    rows = ["| key | flag | environment | default | value | what |", "|---|---|---|---|---|---|"]
    for s in SETTINGS:
        flag = f"`{s.flag}`" if s.flag else "(file, env)"
        default = s.describe_default().replace("<", "&lt;").replace(">", "&gt;")
        rows.append(f"| `{s.key}` | {flag} | `{s.env}` | {default} | {s.kind.doc} | {s.help} |")
    return "\n".join(rows)


if __name__ == "__main__":  # python -m yagna.settings: the table for the docs
    print(markdown_table())
