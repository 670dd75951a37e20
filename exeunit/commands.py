"""Exe-script commands and their wire form (sans-io, pure).

An exe-script is a list of one-key dicts, as in Golem's exe-script::

    [{"deploy": {"image": "sha256:<64 hex>", "name": "python:3.12-slim", "env": {}}},
     {"start": {}},
     {"transfer_in": {"to": "/work/in/data.csv", "sha256": "<64 hex>", "size": 1234}},
     {"run": {"argv": ["python", "-c", "..."], "env": {}, "workdir": "/work", "timeout": 60.0}},
     {"transfer_out": {"from": "/work/out/result.json"}},
     {"terminate": {}}]

Pipelines add two (the provider keeps caches per requestor and key, ``yagna/activity_service/job_caches.py``)::

    {"cache_restore": {"key": "repo/deps-<hash>", "to": "/work/in/cache-0.tar"}}   # exit code 1: no such cache
    {"cache_save": {"key": "repo/deps-<hash>", "from": "/work/out/cache-0.tar"}}

Scripts arrive from peers, so :func:`parse_script` is a total function in the
h11 sense: on *any* input it either returns commands or raises
:class:`~exeunit.errors.ScriptError` (with ``index`` = the command's position
and ``field`` = the wire key at fault), never anything else. The dataclasses
validate themselves too, so a command built in code obeys the same limits.

Field names in errors are the *wire* names (``to``, ``from``, ``timeout``),
because the person reading the error wrote the wire form.

:func:`script_to_wire` emits the canonical form: every field spelled out
(``name`` only when set), ``timeout`` as a float. ``parse_script`` of it gives
back equal commands, and it uses only str/int/float/list/dict, so it goes
through canonical CBOR unchanged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeAlias, TypeVar

from exeunit.errors import ScriptError, TransferRefused
from exeunit.paths import container_path, is_inside, normalise

_C = TypeVar("_C")

__all__ = [
    "COMMAND_TYPES",
    "DEFAULT_TIMEOUT_S",
    "DEFAULT_WORKDIR",
    "MAX_ARGV_BYTES",
    "MAX_ARGV_ITEMS",
    "MAX_COMMANDS",
    "MAX_ENV_BYTES",
    "MAX_ENV_VARS",
    "MAX_NAME_CHARS",
    "MAX_TIMEOUT_S",
    "MAX_TRANSFER_BYTES",
    "TRANSFER_IN_DIR",
    "TRANSFER_OUT_DIR",
    "WORKDIR_ROOTS",
    "CacheRestore",
    "CacheSave",
    "Command",
    "Deploy",
    "MAX_PORTS",
    "Run",
    "Serve",
    "Start",
    "Terminate",
    "TransferIn",
    "TransferOut",
    "command_to_wire",
    "parse_command",
    "parse_script",
    "script_to_wire",
]

MAX_COMMANDS = 100
MAX_ARGV_ITEMS = 256
MAX_ARGV_BYTES = 64 * 1024
"""Sum of the UTF-8 lengths of all argv items."""
MAX_ENV_VARS = 128
MAX_ENV_BYTES = 64 * 1024
"""Sum of the UTF-8 lengths of all names and values of one env (not in the brief:
without it 128 values could each be as large as a message)."""
MAX_NAME_CHARS = 256
"""Longest display name of a deployed image."""
DEFAULT_TIMEOUT_S = 300.0
MAX_TIMEOUT_S = 24 * 3600.0
DEFAULT_WORKDIR = "/work"
WORKDIR_ROOTS = ("/work", "/tmp")
"""A ``run`` may start in one of these or below them: the only writable places."""
TRANSFER_IN_DIR = "/work/in"
TRANSFER_OUT_DIR = "/work/out"
VOLUME_DIR = "/work/vol"
"""Where a Golem image's volumes live (linked from their own paths): files go in and out there."""
MAX_TRANSFER_BYTES = 1 << 40
"""Sanity cap on a declared transfer size; the real cap is the agreement's storage."""

MAX_CACHE_KEY_BYTES = 512
"""Longest pipeline cache key (UTF-8); the provider stores it by its sha256."""
MAX_PORTS = 16
"""Most container ports one service exposes through its provider's tunnel."""
MAX_VOLUMES = 8
"""Most storage volumes one service mounts."""
VOLUME_FORBIDDEN = ("/work", "/tmp", "/proc", "/sys", "/dev", "/.yagna", "/etc", "/bin", "/sbin", "/usr", "/lib")
"""Where a service's volume may not be mounted (the runtime's own mounts, the system)."""
_VOLUME_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
HEALTH_KINDS = ("tcp", "http")

_IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}")
_PACKAGE = re.compile(r"hash:sha3:[0-9a-f]{56}:https?://[\x21-\x7e]{1,2000}")
"""A Golem VM package: the sha3-224 of a ``.gvmi`` file and where to download it."""
_SHA256 = re.compile(r"[0-9a-f]{64}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Invalid(Exception):
    """A field is invalid; becomes a ScriptError with the field (and index) attached."""

    def __init__(self, where: str, message: str) -> None:
        self.where = where
        self.message = message
        super().__init__(message)


class _FieldError(ScriptError):
    """What a command's constructor raises: a ScriptError that keeps its bare
    message, so :func:`parse_script` can re-raise it with the command index."""

    def __init__(self, message: str, *, where: str) -> None:
        self.message = message
        super().__init__(message, field=where)


# -- value checks (raise _Invalid) -------------------------------------------------------


def _utf8_len(value: str, where: str) -> int:
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise _Invalid(where, "is not valid Unicode (lone surrogate?)") from None


def _check_str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise _Invalid(where, f"must be a string, not {type(value).__name__}")
    _utf8_len(value, where)
    if "\0" in value:
        raise _Invalid(where, "must not contain NUL")
    return value


def _check_env(env: object) -> dict[str, str]:
    if not isinstance(env, dict):
        raise _Invalid("env", f"must be a map of strings, not {type(env).__name__}")
    if len(env) > MAX_ENV_VARS:
        raise _Invalid("env", f"has {len(env)} variables, at most {MAX_ENV_VARS} are allowed")
    total = 0
    for name, value in env.items():
        if not isinstance(name, str) or _ENV_NAME.fullmatch(name) is None:
            shown = repr(name)[:100]
            raise _Invalid("env", f"variable name {shown} must match [A-Za-z_][A-Za-z0-9_]*")
        _check_str(value, f"env.{name}")
        total += len(name) + _utf8_len(value, f"env.{name}")
    if total > MAX_ENV_BYTES:
        raise _Invalid("env", f"is {total} bytes, at most {MAX_ENV_BYTES} are allowed")
    return dict(env)


def _check_argv(argv: object) -> list[str]:
    if not isinstance(argv, (list, tuple)):
        raise _Invalid("argv", f"must be a list of strings, not {type(argv).__name__}")
    if not argv:
        raise _Invalid("argv", "must not be empty")
    if len(argv) > MAX_ARGV_ITEMS:
        raise _Invalid("argv", f"has {len(argv)} items, at most {MAX_ARGV_ITEMS} are allowed")
    total = 0
    for i, item in enumerate(argv):
        _check_str(item, f"argv[{i}]")
        total += _utf8_len(item, f"argv[{i}]")
    if total > MAX_ARGV_BYTES:
        raise _Invalid("argv", f"is {total} bytes, at most {MAX_ARGV_BYTES} are allowed")
    if argv[0] == "":
        raise _Invalid("argv[0]", "the program name must not be empty")
    return list(argv)


def _check_path(value: object, where: str, under: str) -> str:
    try:
        return container_path(value, under=under)
    except TransferRefused as exc:
        try:
            return container_path(value, under=VOLUME_DIR)
        except TransferRefused:
            raise _Invalid(where, f"{exc} (or below {VOLUME_DIR}, a Golem image's volumes)") from None


def _check_workdir(value: object) -> str:
    try:
        normal = normalise(value)
    except TransferRefused as exc:
        raise _Invalid("workdir", str(exc)) from None
    if normal in WORKDIR_ROOTS or any(is_inside(normal, root) for root in WORKDIR_ROOTS):
        return normal
    raise _Invalid("workdir", f"{normal[:200]!r} is not {' or '.join(WORKDIR_ROOTS)} or below them")


def _check_timeout(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid("timeout", f"must be a number of seconds, not {type(value).__name__}")
    if isinstance(value, int) and abs(value) > 2**53:
        raise _Invalid("timeout", f"must be at most {MAX_TIMEOUT_S:g} seconds")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise _Invalid("timeout", f"must be a positive number of seconds, not {value!r}")
    if seconds > MAX_TIMEOUT_S:
        raise _Invalid("timeout", f"must be at most {MAX_TIMEOUT_S:g} seconds, not {value!r}")
    return seconds


def _check_sha256(value: object) -> str:
    if not isinstance(value, str) or _SHA256.fullmatch(value) is None:
        raise _Invalid("sha256", "must be 64 lowercase hex digits")
    return value


def _check_size(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid("size", f"must be an integer number of bytes, not {type(value).__name__}")
    if not 0 <= value <= MAX_TRANSFER_BYTES:
        raise _Invalid("size", f"must be between 0 and {MAX_TRANSFER_BYTES}, not {value}")
    return value


def _check_image(value: object) -> str:
    if not isinstance(value, str) or _IMAGE_ID.fullmatch(value) is None:
        raise _Invalid("image", "must be an image id 'sha256:<64 lowercase hex>' (images are named by id)")
    return value


def _check_package(value: object) -> str:
    if not isinstance(value, str) or _PACKAGE.fullmatch(value) is None:
        raise _Invalid("package", "must be a Golem package 'hash:sha3:<56 lowercase hex>:<http(s) URL>'")
    return value


def _check_name(value: object) -> str | None:
    if value is None:
        return None
    name = _check_str(value, "name")
    if not name or len(name) > MAX_NAME_CHARS:
        raise _Invalid("name", f"must be 1 to {MAX_NAME_CHARS} characters")
    return name


def _check_port(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise _Invalid(where, f"must be a TCP port 1..65535, not {value!r}"[:200])
    return value


def _check_ports(value: object) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)):
        raise _Invalid("ports", f"must be a list of TCP ports, not {type(value).__name__}")
    if len(value) > MAX_PORTS:
        raise _Invalid("ports", f"has {len(value)} ports, at most {MAX_PORTS} are allowed")
    ports = tuple(_check_port(p, f"ports[{i}]") for i, p in enumerate(value))
    if len(set(ports)) != len(ports):
        raise _Invalid("ports", "lists a port twice")
    return ports


def _check_volumes(value: object) -> tuple[dict[str, object], ...]:
    """``[{"name", "path", "size", "persistent"}]``: named volumes mounted at absolute paths."""
    if not isinstance(value, (list, tuple)):
        raise _Invalid("volumes", f"must be a list of volumes, not {type(value).__name__}")
    if len(value) > MAX_VOLUMES:
        raise _Invalid("volumes", f"has {len(value)} volumes, at most {MAX_VOLUMES} are allowed")
    out: list[dict[str, object]] = []
    for i, v in enumerate(value):
        where = f"volumes[{i}]"
        if not isinstance(v, dict) or set(v) - {"name", "path", "size", "persistent"} or not {"name", "path", "size"} <= set(v):
            raise _Invalid(where, "must be a map of name, path, size and persistent")
        name = _check_str(v["name"], f"{where}.name")
        if _VOLUME_NAME.fullmatch(name) is None:
            raise _Invalid(f"{where}.name", "must be 1-63 of a-z, 0-9 and '-'")
        try:
            path = normalise(v["path"])
        except TransferRefused as exc:
            raise _Invalid(f"{where}.path", str(exc)) from None
        if path == "/" or any(path == f or is_inside(path, f) for f in VOLUME_FORBIDDEN):
            raise _Invalid(f"{where}.path", f"{path[:200]!r} may not hold a volume (not /, nor {', '.join(VOLUME_FORBIDDEN)})")
        size = v["size"]
        if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= MAX_TRANSFER_BYTES:
            raise _Invalid(f"{where}.size", f"must be a number of bytes from 1 to {MAX_TRANSFER_BYTES}")
        persistent = v.get("persistent", False)
        if not isinstance(persistent, bool):
            raise _Invalid(f"{where}.persistent", "must be true or false")
        out.append({"name": name, "path": path, "size": size, "persistent": persistent})
    if len({v["name"] for v in out}) != len(out) or len({v["path"] for v in out}) != len(out):
        raise _Invalid("volumes", "names a volume or a path twice")
    return tuple(out)


def _check_health(value: object) -> dict[str, object] | None:
    """``None``, ``{"tcp": port}`` or ``{"http": port, "path": "/..."}``."""
    if value is None:
        return None
    if not isinstance(value, dict) or not value:
        raise _Invalid("health", "must be a map like {'tcp': 8080} or {'http': 8080, 'path': '/'}")
    kinds = [k for k in value if k in HEALTH_KINDS]
    unknown = [k for k in value if k not in (*HEALTH_KINDS, "path")]
    if len(kinds) != 1 or unknown:
        raise _Invalid("health", "must name exactly one of 'tcp' or 'http' (and 'path' with 'http')")
    kind = str(kinds[0])
    out: dict[str, object] = {kind: _check_port(value[kind], f"health.{kind}")}
    if "path" in value:
        if kind != "http":
            raise _Invalid("health.path", "is only for an 'http' check")
        path = _check_str(value["path"], "health.path")
        if not path.startswith("/") or len(path) > 1024 or any(c in path for c in " \r\n"):
            raise _Invalid("health.path", "must be an absolute URL path without spaces, at most 1024 characters")
        out["path"] = path
    elif kind == "http":
        out["path"] = "/"
    return out


def _validated(fn: Callable[[_C], None]) -> Callable[[_C], None]:
    """Wrap a ``__post_init__`` check: ``_Invalid`` leaves it as a ``ScriptError``."""

    def post_init(self: _C) -> None:
        try:
            fn(self)
        except _Invalid as exc:
            raise _FieldError(exc.message, where=exc.where) from None

    return post_init


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


# -- the commands ------------------------------------------------------------------------


@dataclass(frozen=True)
class Deploy:
    """Create the activity's container from an image named by id."""

    kind: ClassVar[str] = "deploy"
    image: str = ""
    """``sha256:<64 hex>``: a name could be re-tagged to something else. Empty with ``package``."""
    env: dict[str, str] = field(default_factory=dict)
    """Environment of every ``run`` (a ``run``'s own env overrides it)."""
    name: str | None = None
    """Display only (``python:3.12-slim``); never used to pick the image."""
    package: str | None = None
    """A Golem VM package ``hash:sha3:<hex>:<url>`` instead of an image: the provider downloads the
    ``.gvmi``, checks its sha3-224 and runs it in the same container (exeunit/gvmi.py)."""
    ports: tuple[int, ...] = ()
    """Container ports a service exposes: the provider bridges each to the requestor's tunnel
    (docs/services.md). Empty for a batch container (no tunnel, nothing mounted)."""
    volumes: tuple[dict[str, object], ...] = ()
    """A service's storage (``{"name", "path", "size", "persistent"}``): persistent ones on the provider's
    disk, the others in memory; each within its size, all within the agreement's storage."""

    @_validated
    def __post_init__(self) -> None:
        _set(self, "ports", _check_ports(self.ports))
        _set(self, "volumes", _check_volumes(self.volumes))
        if self.package is not None:
            _check_package(self.package)
            if self.image:
                raise _Invalid("image", "give an image or a package, not both")
        else:
            _check_image(self.image)
        _set(self, "env", _check_env(self.env))
        _check_name(self.name)


@dataclass(frozen=True)
class Start:
    """Start the deployed container (an idle init; work comes by ``run``)."""

    kind: ClassVar[str] = "start"


@dataclass(frozen=True)
class Run:
    """Execute one program in the running container."""

    kind: ClassVar[str] = "run"
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = DEFAULT_WORKDIR
    """Normalised on construction; ``/work``, ``/tmp`` or below them."""
    timeout_s: float = DEFAULT_TIMEOUT_S

    @_validated
    def __post_init__(self) -> None:
        _set(self, "argv", _check_argv(self.argv))
        _set(self, "env", _check_env(self.env))
        _set(self, "workdir", _check_workdir(self.workdir))
        _set(self, "timeout_s", _check_timeout(self.timeout_s))


@dataclass(frozen=True)
class Serve:
    """Run the container's service for as long as the activity lives: restarted when it exits
    (bounded back-off, counted), its output streamed as this command's output, optionally checked
    for health. The command finishes only when the activity ends."""

    kind: ClassVar[str] = "serve"
    argv: list[str] = field(default_factory=list)
    """Empty: the image's own entrypoint and command (or ``args`` in place of its command)."""
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = ""
    """Empty: the image's own working directory; else ``/work``, ``/tmp`` or below them."""
    args: list[str] = field(default_factory=list)
    """With an empty ``argv``: arguments that replace the image's command after its entrypoint (Akash's ``args``)."""
    health: dict[str, object] | None = None
    """``{"tcp": port}`` or ``{"http": port, "path": "/"}``: checked through the tunnel's forwarder."""

    @_validated
    def __post_init__(self) -> None:
        if self.argv:
            _set(self, "argv", _check_argv(self.argv))
        elif not isinstance(self.argv, (list, tuple)):
            raise _Invalid("argv", f"must be a list of strings, not {type(self.argv).__name__}")
        else:
            _set(self, "argv", [])
        if self.args:
            if self.argv:
                raise _Invalid("args", "give argv (the whole command) or args (after the image's entrypoint), not both")
            try:
                _set(self, "args", _check_argv(self.args))
            except _Invalid as exc:
                raise _Invalid(exc.where.replace("argv", "args"), exc.message) from None
        elif not isinstance(self.args, (list, tuple)):
            raise _Invalid("args", f"must be a list of strings, not {type(self.args).__name__}")
        else:
            _set(self, "args", [])
        _set(self, "env", _check_env(self.env))
        if self.workdir != "":
            _set(self, "workdir", _check_workdir(self.workdir))
        _set(self, "health", _check_health(self.health))


@dataclass(frozen=True)
class TransferIn:
    """Fetch a blob from the requestor (content-addressed) into ``/work/in/``."""

    kind: ClassVar[str] = "transfer_in"
    dest: str
    sha256: str
    """Lowercase hex, so one digest has one spelling (it is the blob's name)."""
    size: int

    @_validated
    def __post_init__(self) -> None:
        _set(self, "dest", _check_path(self.dest, "to", TRANSFER_IN_DIR))
        _check_sha256(self.sha256)
        _check_size(self.size)


@dataclass(frozen=True)
class TransferOut:
    """Offer a file from ``/work/out/`` to the requestor as a blob."""

    kind: ClassVar[str] = "transfer_out"
    src: str

    @_validated
    def __post_init__(self) -> None:
        _set(self, "src", _check_path(self.src, "from", TRANSFER_OUT_DIR))


def _check_cache_key(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise _Invalid("key", "must be a non-empty string")
    if _utf8_len(value, "key") > MAX_CACHE_KEY_BYTES:
        raise _Invalid("key", f"is at most {MAX_CACHE_KEY_BYTES} bytes of UTF-8")
    return value


@dataclass(frozen=True)
class CacheRestore:
    """Copy the requestor's cache saved under ``key`` on this provider into ``/work/in/``.

    Exit code 0 with the file's sha256 and size when it was there, 1 when the provider has no such cache."""

    kind: ClassVar[str] = "cache_restore"
    key: str
    dest: str

    @_validated
    def __post_init__(self) -> None:
        _check_cache_key(self.key)
        _set(self, "dest", _check_path(self.dest, "to", TRANSFER_IN_DIR))


@dataclass(frozen=True)
class CacheSave:
    """Keep a file of ``/work/out/`` on this provider as the requestor's cache under ``key``."""

    kind: ClassVar[str] = "cache_save"
    key: str
    src: str

    @_validated
    def __post_init__(self) -> None:
        _check_cache_key(self.key)
        _set(self, "src", _check_path(self.src, "from", TRANSFER_OUT_DIR))


@dataclass(frozen=True)
class Terminate:
    """End the activity: kill and remove the container."""

    kind: ClassVar[str] = "terminate"


Command: TypeAlias = Deploy | Start | Run | Serve | TransferIn | TransferOut | CacheRestore | CacheSave | Terminate
COMMAND_TYPES: dict[str, type[Command]] = {
    cls.kind: cls for cls in (Deploy, Start, Run, Serve, TransferIn, TransferOut, CacheRestore, CacheSave, Terminate)
}
"""Wire name -> command class."""


# -- wire form ---------------------------------------------------------------------------

# command -> wire key -> (required, attribute name)
_FIELDS: dict[str, dict[str, tuple[bool, str]]] = {
    "deploy": {"image": (False, "image"), "env": (False, "env"), "name": (False, "name"), "package": (False, "package"),
               "ports": (False, "ports"), "volumes": (False, "volumes")},
    "start": {},
    "serve": {"argv": (False, "argv"), "args": (False, "args"), "env": (False, "env"), "workdir": (False, "workdir"),
              "health": (False, "health")},
    "run": {"argv": (True, "argv"), "env": (False, "env"), "workdir": (False, "workdir"), "timeout": (False, "timeout_s")},
    "transfer_in": {"to": (True, "dest"), "sha256": (True, "sha256"), "size": (True, "size")},
    "transfer_out": {"from": (True, "src")},
    "cache_restore": {"key": (True, "key"), "to": (True, "dest")},
    "cache_save": {"key": (True, "key"), "from": (True, "src")},
    "terminate": {},
}


def _build(kind: str, body: dict[object, object]) -> Command:
    spec = _FIELDS[kind]
    for key in body:
        if key not in spec:
            shown = key if isinstance(key, str) else repr(key)
            raise _Invalid(shown[:100], f"unknown field for {kind!r} (known: {', '.join(spec) or 'none'})")
    kwargs: dict[str, Any] = {}  # each value is checked by the command's own constructor
    for key, (required, attr) in spec.items():
        if key in body:
            if key == "name" and body[key] is None:
                continue
            kwargs[attr] = body[key]
        elif required:
            raise _Invalid(key, f"is required for {kind!r}")
    try:
        return COMMAND_TYPES[kind](**kwargs)
    except _FieldError as exc:
        raise _Invalid(exc.field or kind, exc.message) from None


def _parse_one(item: object) -> Command:
    if not isinstance(item, dict):
        raise _Invalid("", f"a command must be a one-key map like {{'run': {{...}}}}, not {type(item).__name__}")
    if len(item) != 1:
        raise _Invalid("", f"a command must be a map with exactly one key (the command name), not {len(item)}")
    ((kind, body),) = item.items()
    if not isinstance(kind, str) or kind not in COMMAND_TYPES:
        shown = kind[:100] if isinstance(kind, str) else repr(kind)[:100]
        raise _Invalid(shown, f"unknown command (known: {', '.join(COMMAND_TYPES)})")
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise _Invalid(kind, f"the body of {kind!r} must be a map, not {type(body).__name__}")
    return _build(kind, body)


def parse_command(item: object, *, index: int | None = None) -> Command:
    """One decoded wire command -> a command; :class:`ScriptError` is the only error."""
    try:
        return _parse_one(item)
    except _Invalid as exc:
        raise ScriptError(exc.message, index=index, field=exc.where or None) from None


def parse_script(obj: object) -> list[Command]:
    """A decoded exe-script (list of one-key maps) -> commands, or :class:`ScriptError`.

    Refuses non-lists, empty scripts and more than :data:`MAX_COMMANDS` commands.
    """
    if not isinstance(obj, (list, tuple)):
        raise ScriptError(f"an exe-script must be a list of commands, not {type(obj).__name__}")
    if not obj:
        raise ScriptError("an exe-script must have at least one command")
    if len(obj) > MAX_COMMANDS:
        raise ScriptError(f"an exe-script has at most {MAX_COMMANDS} commands, this one has {len(obj)}")
    return [parse_command(item, index=i) for i, item in enumerate(obj)]


def command_to_wire(cmd: Command) -> dict[str, object]:
    """The canonical wire form of one command (every field spelled out)."""
    if isinstance(cmd, Deploy):
        body: dict[str, object] = {"image": cmd.image, "env": dict(cmd.env)}
        if cmd.package is not None:
            body = {"package": cmd.package, "env": dict(cmd.env)}
        if cmd.name is not None:
            body["name"] = cmd.name
        if cmd.ports:
            body["ports"] = list(cmd.ports)
        if cmd.volumes:
            body["volumes"] = [dict(v) for v in cmd.volumes]
    elif isinstance(cmd, Serve):
        body = {"argv": list(cmd.argv), "env": dict(cmd.env), "workdir": cmd.workdir}
        if cmd.args:
            body["args"] = list(cmd.args)
        if cmd.health is not None:
            body["health"] = dict(cmd.health)
    elif isinstance(cmd, Run):
        body = {"argv": list(cmd.argv), "env": dict(cmd.env), "workdir": cmd.workdir, "timeout": float(cmd.timeout_s)}
    elif isinstance(cmd, TransferIn):
        body = {"to": cmd.dest, "sha256": cmd.sha256, "size": cmd.size}
    elif isinstance(cmd, TransferOut):
        body = {"from": cmd.src}
    elif isinstance(cmd, CacheRestore):
        body = {"key": cmd.key, "to": cmd.dest}
    elif isinstance(cmd, CacheSave):
        body = {"key": cmd.key, "from": cmd.src}
    elif isinstance(cmd, (Start, Terminate)):
        body = {}
    else:
        raise TypeError(f"not a command: {cmd!r}")
    return {cmd.kind: body}


def script_to_wire(commands: list[Command]) -> list[dict[str, object]]:
    """The canonical wire form of a script; ``parse_script`` of it returns equal commands."""
    return [command_to_wire(cmd) for cmd in commands]
