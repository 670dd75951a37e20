"""The node's config file: ``<data dir>/yagna.toml`` (or ``service run --config PATH``).

Only settings an operator keeps across restarts live here; flags given on the
command line win over the file, and list settings (``bootstrap``) add to it::

    [net]
    listen = ["/ip4/0.0.0.0/tcp/7464"]
    bootstrap = ["/ip4/198.18.0.10/tcp/7464/p2p/12D3KooW..."]
    target_peers = 8      # connections a node keeps up by its own dials
    max_peers = 64        # connections at most, inbound included
    relay_service = "auto"  # serve circuit relay v2 while public: auto, on (always), off
    relay_max_reservations = 128
    relay_circuit_mib = 256       # bytes per relayed circuit, MiB
    relay_circuit_seconds = 600   # lifetime of a relayed circuit
    relay_circuits_per_peer = 4
    relay_max_circuits = 32
    hole_punching = true  # upgrade relayed connections to direct ones (DCUtR)

    [market]
    anti_entropy_interval = 3.0   # mean seconds between offer anti-entropy rounds (0: only with new peers)

    [payment]
    driver = "erc20"              # or "testnet-ledger" (the default)
    rpc_url = "http://127.0.0.1:8545"
    token = "0x..."               # the ERC-20 token
    contract = "0x..."            # the PaymentChannels contract (docs/payments.md)

Unknown sections or keys are errors that name them: a misspelt key silently
ignored would leave a node running with a setting its operator did not choose.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from typing import TYPE_CHECKING

from yagna.config import ConfigError

if TYPE_CHECKING:
    from yagna.net.relay_core import RelayLimits

FILE_NAME = "yagna.toml"
MAX_FILE_SIZE = 256 * 1024


@dataclass(frozen=True)
class NetFileSettings:
    listen: list[str] = field(default_factory=list)
    bootstrap: list[str] = field(default_factory=list)
    target_peers: int | None = None
    max_peers: int | None = None
    relay_service: str | None = None
    relay_max_reservations: int | None = None
    relay_circuit_mib: int | None = None
    relay_circuit_seconds: int | None = None
    relay_circuits_per_peer: int | None = None
    relay_max_circuits: int | None = None
    hole_punching: bool | None = None


@dataclass(frozen=True)
class MarketFileSettings:
    anti_entropy_interval: float | None = None


@dataclass(frozen=True)
class PaymentFileSettings:
    driver: str | None = None
    rpc_url: str | None = None
    token: str | None = None
    contract: str | None = None


@dataclass(frozen=True)
class FileSettings:
    path: Path | None = None
    """The file these came from; None when there is none."""
    net: NetFileSettings = field(default_factory=NetFileSettings)
    market: MarketFileSettings = field(default_factory=MarketFileSettings)
    payment: PaymentFileSettings = field(default_factory=PaymentFileSettings)


MAX_ANTI_ENTROPY_INTERVAL = 3600.0


_RELAY_COUNTS = ("relay_max_reservations", "relay_circuit_mib", "relay_circuit_seconds",
                 "relay_circuits_per_peer", "relay_max_circuits")
_NET_KEYS = {"listen", "bootstrap", "target_peers", "max_peers", "relay_service", "hole_punching", *_RELAY_COUNTS}


def default_path(data_dir: Path) -> Path:
    return data_dir / FILE_NAME


def load(path: Path, *, required: bool) -> FileSettings:
    """Read and check the file; a missing optional file gives the defaults."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_SIZE + 1)
    except FileNotFoundError:
        if required:
            raise ConfigError(f"config file {path} does not exist") from None
        return FileSettings()
    except NotADirectoryError:
        if required:
            raise ConfigError(f"cannot read config file {path}: a parent is not a directory") from None
        # The data dir itself is a file: the data-dir check names that, not us.
        return FileSettings()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    if len(raw) > MAX_FILE_SIZE:
        raise ConfigError(f"config file {path} is larger than {MAX_FILE_SIZE // 1024} KiB")
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return FileSettings(path=path, net=_net(doc, path), market=_market(doc, path), payment=_payment(doc, path))


def _net(doc: dict[str, object], path: Path) -> NetFileSettings:
    unknown = set(doc) - {"net", "market", "payment"}
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown section(s) {', '.join(sorted(unknown))} (known: [net], [market], [payment])"
        )
    net = doc.get("net", {})
    if not isinstance(net, dict):
        raise ConfigError(f"config file {path}: [net] must be a table")
    unknown = set(net) - _NET_KEYS
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown key(s) in [net]: {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(_NET_KEYS))})"
        )
    return NetFileSettings(
        listen=_strings(net, "listen", path),
        bootstrap=_strings(net, "bootstrap", path),
        target_peers=_count(net, "target_peers", path),
        max_peers=_count(net, "max_peers", path),
        relay_service=_relay_service(net, path),
        hole_punching=_bool(net, "hole_punching", path),
        **{key: _count(net, key, path) for key in _RELAY_COUNTS},  # type: ignore[arg-type]
    )


def relay_limits(net: NetFileSettings) -> RelayLimits | None:
    """The relay limits the file sets (defaults for the rest); None when it sets none."""
    if all(getattr(net, key) is None for key in _RELAY_COUNTS):
        return None
    from yagna.net.relay_core import MiB, RelayLimits

    d = RelayLimits()
    return RelayLimits(
        max_reservations=net.relay_max_reservations or d.max_reservations,
        circuit_bytes=(net.relay_circuit_mib * MiB) if net.relay_circuit_mib else d.circuit_bytes,
        circuit_duration=float(net.relay_circuit_seconds or d.circuit_duration),
        circuits_per_peer=net.relay_circuits_per_peer or d.circuits_per_peer,
        max_circuits=net.relay_max_circuits or d.max_circuits,
    )


def _market(doc: dict[str, object], path: Path) -> MarketFileSettings:
    market = doc.get("market", {})
    if not isinstance(market, dict):
        raise ConfigError(f"config file {path}: [market] must be a table")
    unknown = set(market) - {"anti_entropy_interval"}
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown key(s) in [market]: {', '.join(sorted(unknown))} (known: anti_entropy_interval)"
        )
    value = market.get("anti_entropy_interval")
    if value is None:
        return MarketFileSettings()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_ANTI_ENTROPY_INTERVAL:
        raise ConfigError(
            f"config file {path}: market.anti_entropy_interval must be a number of seconds from 0 to "
            f"{MAX_ANTI_ENTROPY_INTERVAL:g}, not {value!r}"
        )
    return MarketFileSettings(anti_entropy_interval=float(value))


def _payment(doc: dict[str, object], path: Path) -> PaymentFileSettings:
    payment = doc.get("payment", {})
    if not isinstance(payment, dict):
        raise ConfigError(f"config file {path}: [payment] must be a table")
    keys = ("driver", "rpc_url", "token", "contract")
    unknown = set(payment) - set(keys)
    if unknown:
        raise ConfigError(f"config file {path}: unknown key(s) in [payment]: {', '.join(sorted(unknown))} "
                          f"(known: {', '.join(keys)})")
    for key in keys:
        value = payment.get(key)
        if value is not None and (not isinstance(value, str) or not 0 < len(value) <= 2048):
            raise ConfigError(f"config file {path}: payment.{key} must be a non-empty string, not {value!r:.80}")
    return PaymentFileSettings(**{k: payment.get(k) for k in keys})


def _bool(table: dict[str, object], key: str, path: Path) -> bool | None:
    value = table.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise ConfigError(f"config file {path}: net.{key} must be true or false, not {value!r}")


def _relay_service(table: dict[str, object], path: Path) -> str | None:
    value = table.get("relay_service")
    if value is None:
        return None
    if value not in ("auto", "on", "off"):
        raise ConfigError(f'config file {path}: net.relay_service must be "auto", "on" or "off"')
    return str(value)


def _strings(table: dict[str, object], key: str, path: Path) -> list[str]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"config file {path}: net.{key} must be a list of strings")
    if len(value) > 64:
        raise ConfigError(f"config file {path}: net.{key} lists more than 64 entries")
    return list(value)


def _count(table: dict[str, object], key: str, path: Path) -> int | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 10_000:
        raise ConfigError(f"config file {path}: net.{key} must be a whole number from 1 to 10000")
    return value
