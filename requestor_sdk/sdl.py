"""Deployment manifests (``yagna deploy``): the subset of Akash's SDL v2.0 that fits our model (sans-io, pure).

An Akash user's file works as it is where its keys mean something here; every key we cannot
honour is an error naming the key and its line, never silently ignored (docs/services.md maps
every key). The result is a typed :class:`Manifest`: services (image, command/args, env, exposed
ports), compute profiles (cpu, memory, storage), placements (attributes as constraints on offer
properties, price caps per service) and the deployment (which profile where, how many replicas).

Prices: Akash prices a lease per block in a denomination (``uakt``, ``ibc/...``). Our own
denominations (``glm``, ``tglm``) are taken as tokens per hour; any other is converted with a
rate the requestor gives (tokens per unit of that denomination) at :data:`AKASH_BLOCKS_PER_HOUR`
blocks an hour, or refused with a message saying so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = [
    "AKASH_BLOCKS_PER_HOUR",
    "ComputeProfile",
    "Deployment",
    "ExposedPort",
    "Manifest",
    "ManifestError",
    "PriceCap",
    "ServiceSpec",
    "parse_manifest",
]

AKASH_BLOCKS_PER_HOUR = 600
"""Akash's ~6 s blocks: what a per-block price is multiplied by to get a price per hour."""
NATIVE_DENOMS = frozenset({"glm", "tglm"})
MAX_MANIFEST_BYTES = 256 * 1024
MAX_SERVICES = 64
MAX_REPLICAS = 64
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKMGTPE]i?|[kKMGTPE]|)[bB]?\s*$")
_FACTORS = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
            "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class ManifestError(ValueError):
    """A manifest we cannot honour; names the key (``services.web.expose[0].proto``) and its line."""

    def __init__(self, source: str, line: int | None, key: str, message: str) -> None:
        self.source, self.line, self.key = source, line, key
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")


@dataclass(frozen=True)
class ExposedPort:
    port: int
    """The container's port."""
    as_port: int
    """The port the service is known by (Akash's ``as``; the requestor's local port defaults to a free one)."""
    to_global: bool
    """``to: - global: true``: reachable through the requestor's tunnel now (public exposure comes later)."""


@dataclass(frozen=True)
class Volume:
    name: str
    size_bytes: int
    persistent: bool
    mount: str | None = None


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    image: str
    command: list[str] | None
    args: list[str] | None
    env: dict[str, str]
    expose: list[ExposedPort]
    line: int
    mounts: dict[str, str] = field(default_factory=dict)
    """Named storage of the service's profile -> where it is mounted (``params.storage``)."""
    health: dict[str, object] | None = None
    """Our extension ``x-yagna-health``: ``{"tcp": port}`` or ``{"http": port, "path": "/"}``; None: a TCP
    check of the first exposed port."""


@dataclass(frozen=True)
class ComputeProfile:
    name: str
    cpu_units: Decimal
    """CPUs (``0.5``, ``500m``)."""
    memory_bytes: int
    storage: list[Volume]


@dataclass(frozen=True)
class PriceCap:
    tokens_per_hour: Decimal
    denom: str
    amount: Decimal


@dataclass(frozen=True)
class Placement:
    name: str
    attributes: dict[str, str]
    pricing: dict[str, PriceCap]


@dataclass(frozen=True)
class Deployment:
    service: str
    placement: str
    profile: str
    count: int


@dataclass
class Manifest:
    version: str
    services: dict[str, ServiceSpec]
    profiles: dict[str, ComputeProfile]
    placements: dict[str, Placement]
    deployments: list[Deployment]
    notes: list[str] = field(default_factory=list)
    """What a user should know (e.g. "global exposure is through the requestor's tunnel for now")."""

    def replicas(self) -> int:
        return sum(d.count for d in self.deployments)


# -- a YAML tree that remembers lines -----------------------------------------------------------


@dataclass
class _Node:
    value: Any
    line: int
    """1-based."""


def _load(text: str, source: str) -> _Node:
    import yaml

    if len(text.encode()) > MAX_MANIFEST_BYTES:
        raise ManifestError(source, None, "", f"a manifest is at most {MAX_MANIFEST_BYTES // 1024} KiB")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is None:
            raise ManifestError(source, 1, "", "the manifest is empty")
        return _convert(root, source, depth=0)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ManifestError(source, mark.line + 1 if mark else None, "", f"not valid YAML: "
                            f"{getattr(exc, 'problem', None) or exc}") from None
    except (ValueError, TypeError, UnicodeError, RecursionError) as exc:
        if isinstance(exc, ManifestError):
            raise
        # a scalar PyYAML cannot build (`!!int x`), a lone surrogate, nesting too deep for its composer
        raise ManifestError(source, None, "", f"not valid YAML: {type(exc).__name__}: {str(exc)[:200]}") from None


def _convert(node: Any, source: str, depth: int) -> _Node:
    import yaml

    line = node.start_mark.line + 1
    if depth > 32:
        raise ManifestError(source, line, "", "nested too deep")
    if isinstance(node, yaml.MappingNode):
        out: dict[str, _Node] = {}
        keys: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = yaml.SafeLoader(" ").construct_object(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                raise ManifestError(source, key_node.start_mark.line + 1, "", "keys must be strings")
            if key in keys:
                raise ManifestError(source, key_node.start_mark.line + 1, key, f"repeated (first on line {keys[key]})")
            keys[key] = key_node.start_mark.line + 1
            # a value is reported at its key's line (a nested mapping starts on the next one)
            out[key] = _Node(_convert(value_node, source, depth + 1).value, keys[key])
        return _Node(out, line)
    if isinstance(node, yaml.SequenceNode):
        return _Node([_convert(item, source, depth + 1) for item in node.value], line)
    return _Node(yaml.SafeLoader(" ").construct_object(node), line)


# -- the checks -------------------------------------------------------------------------------


class _Ctx:
    def __init__(self, source: str, rates: Mapping[str, Decimal]) -> None:
        self.source = source
        self.rates = {k.lower(): Decimal(v) for k, v in rates.items()}
        self.notes: list[str] = []

    def fail(self, node: _Node | None, key: str, message: str) -> ManifestError:
        return ManifestError(self.source, node.line if node is not None else None, key, message)

    def mapping(self, node: _Node, key: str, allowed: set[str], *, why: Mapping[str, str] | None = None) -> dict[str, _Node]:
        if not isinstance(node.value, dict):
            raise self.fail(node, key, "must be a mapping")
        for name, child in node.value.items():
            if name not in allowed:
                reason = (why or {}).get(name, "not supported here (docs/services.md lists what is)")
                raise self.fail(child, f"{key}.{name}" if key else name, reason)
        return node.value  # type: ignore[no-any-return]

    def text(self, node: _Node, key: str) -> str:
        if isinstance(node.value, bool) or not isinstance(node.value, (str, int, float)):
            raise self.fail(node, key, "must be a string")
        value = str(node.value)
        if not value or len(value) > 4096:
            raise self.fail(node, key, "must be 1 to 4096 characters")
        return value

    def strings(self, node: _Node, key: str) -> list[str]:
        if not isinstance(node.value, list):
            raise self.fail(node, key, "must be a list of strings")
        return [self.text(item, f"{key}[{i}]") for i, item in enumerate(node.value)]

    def integer(self, node: _Node, key: str, lo: int, hi: int) -> int:
        if isinstance(node.value, bool) or not isinstance(node.value, int) or not lo <= node.value <= hi:
            raise self.fail(node, key, f"must be a whole number from {lo} to {hi}")
        return node.value

    def size(self, node: _Node, key: str) -> int:
        match = _SIZE.match(str(node.value)) if not isinstance(node.value, bool) else None
        if match is None:
            raise self.fail(node, key, "must be a size like 512Mi, 1Gi or 100M")
        value = int(Decimal(match.group(1)) * _FACTORS[match.group(2)])
        if value <= 0:
            raise self.fail(node, key, "must be more than 0")
        return value

    def name(self, node: _Node, key: str, name: str) -> str:
        if not _NAME.match(name):
            raise self.fail(node, key, "names are lowercase letters, digits and dashes (up to 63)")
        return name


_SERVICE_KEYS = {"image", "command", "args", "env", "expose", "params", "depends_on", "dependencies", "x-yagna-health"}
_SERVICE_WHY = {"credentials": "private registries are not supported: images come from the requestor's Docker",
                "dependencies": "", "depends_on": ""}
_EXPOSE_WHY = {"accept": "hostnames (accept) need public ingress, which comes later; reach the port through "
                         "`yagna deploy` on the requestor's machine",
               "http_options": "HTTP ingress options need public ingress, which comes later"}


def _service(ctx: _Ctx, name: str, node: _Node) -> ServiceSpec:
    key = f"services.{name}"
    ctx.name(node, key, name)
    fields = ctx.mapping(node, key, _SERVICE_KEYS, why=_SERVICE_WHY)
    if "image" not in fields:
        raise ctx.fail(node, f"{key}.image", "is required")
    env: dict[str, str] = {}
    if "env" in fields:
        for i, item in enumerate(ctx.strings(fields["env"], f"{key}.env")):
            var, sep, value = item.partition("=")
            if not sep or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", var):
                raise ctx.fail(fields["env"].value[i], f"{key}.env[{i}]", "must be NAME=value")
            env[var] = value
    expose: list[ExposedPort] = []
    if "expose" in fields:
        if not isinstance(fields["expose"].value, list):
            raise ctx.fail(fields["expose"], f"{key}.expose", "must be a list")
        for i, item in enumerate(fields["expose"].value):
            ekey = f"{key}.expose[{i}]"
            e = ctx.mapping(item, ekey, {"port", "as", "to", "proto"}, why=_EXPOSE_WHY)
            if "port" not in e:
                raise ctx.fail(item, f"{ekey}.port", "is required")
            port = ctx.integer(e["port"], f"{ekey}.port", 1, 65535)
            as_port = ctx.integer(e["as"], f"{ekey}.as", 1, 65535) if "as" in e else port
            if "proto" in e and str(e["proto"].value).lower() != "tcp":
                raise ctx.fail(e["proto"], f"{ekey}.proto", "only tcp is carried (udp is not)")
            to_global = False
            if "to" in e:
                if not isinstance(e["to"].value, list):
                    raise ctx.fail(e["to"], f"{ekey}.to", "must be a list")
                for j, target in enumerate(e["to"].value):
                    t = ctx.mapping(target, f"{ekey}.to[{j}]", {"global", "service"},
                                    why={"ip": "leased IPs need public ingress, which comes later"})
                    if t.get("global") is not None and t["global"].value is True:
                        to_global = True
            expose.append(ExposedPort(port, as_port, to_global))
        if any(p.to_global for p in expose):
            ctx.notes.append(f"{key}: `to: global` ports are reached through the requestor's tunnel "
                             "(127.0.0.1 on its machine); public exposure comes later")
    mounts: dict[str, str] = {}
    if "params" in fields:
        params = ctx.mapping(fields["params"], f"{key}.params", {"storage"})
        if "storage" in params:
            volumes = params["storage"].value if isinstance(params["storage"].value, dict) else {}
            for vol, spec in ctx.mapping(params["storage"], f"{key}.params.storage", set(volumes)).items():
                v = ctx.mapping(spec, f"{key}.params.storage.{vol}", {"mount", "readOnly"})
                if "mount" not in v:
                    raise ctx.fail(spec, f"{key}.params.storage.{vol}.mount", "is required")
                mount = ctx.text(v["mount"], f"{key}.params.storage.{vol}.mount")
                if not mount.startswith("/"):
                    raise ctx.fail(v["mount"], f"{key}.params.storage.{vol}.mount", "must be an absolute path")
                mounts[vol] = mount
    health: dict[str, object] | None = None
    if "x-yagna-health" in fields:
        hkey = f"{key}.x-yagna-health"
        h = ctx.mapping(fields["x-yagna-health"], hkey, {"tcp", "http", "path"})
        kinds = [k for k in ("tcp", "http") if k in h]
        if len(kinds) != 1:
            raise ctx.fail(fields["x-yagna-health"], hkey, "names exactly one of tcp or http (a port)")
        port = ctx.integer(h[kinds[0]], f"{hkey}.{kinds[0]}", 1, 65535)
        if port not in [p.port for p in expose]:
            raise ctx.fail(h[kinds[0]], f"{hkey}.{kinds[0]}", "must be one of the service's exposed ports")
        health = {kinds[0]: port}
        if "path" in h:
            if kinds[0] != "http":
                raise ctx.fail(h["path"], f"{hkey}.path", "is only for an http check")
            path = ctx.text(h["path"], f"{hkey}.path")
            if not path.startswith("/") or " " in path:
                raise ctx.fail(h["path"], f"{hkey}.path", "must be an absolute URL path")
            health["path"] = path
    return ServiceSpec(name, ctx.text(fields["image"], f"{key}.image"),
                       ctx.strings(fields["command"], f"{key}.command") if "command" in fields else None,
                       ctx.strings(fields["args"], f"{key}.args") if "args" in fields else None,
                       env, expose, node.line, mounts, health)


def _cpu(ctx: _Ctx, node: _Node, key: str) -> Decimal:
    raw = str(node.value).strip()
    try:
        units = Decimal(raw[:-1]) / 1000 if raw.endswith("m") else Decimal(raw)
    except InvalidOperation:
        raise ctx.fail(node, key, "must be a number of CPUs (0.5) or milli-CPUs (500m)") from None
    if not units.is_finite() or units <= 0 or units > 1024:
        raise ctx.fail(node, key, "must be more than 0 CPUs and at most 1024")
    return units


def _profile(ctx: _Ctx, name: str, node: _Node) -> ComputeProfile:
    key = f"profiles.compute.{name}"
    fields = ctx.mapping(node, key, {"resources"})
    if "resources" not in fields:
        raise ctx.fail(node, f"{key}.resources", "is required")
    res = ctx.mapping(fields["resources"], f"{key}.resources", {"cpu", "memory", "storage", "gpu"})
    for need in ("cpu", "memory"):
        if need not in res:
            raise ctx.fail(fields["resources"], f"{key}.resources.{need}", "is required")
    cpu = ctx.mapping(res["cpu"], f"{key}.resources.cpu", {"units"})
    memory = ctx.mapping(res["memory"], f"{key}.resources.memory", {"size"})
    if "gpu" in res:
        gpu = ctx.mapping(res["gpu"], f"{key}.resources.gpu", {"units", "attributes"})
        if "units" in gpu and str(gpu["units"].value) not in ("0", "0.0"):
            raise ctx.fail(gpu["units"], f"{key}.resources.gpu.units", "GPUs are not sold on this network yet")
    storage: list[Volume] = []
    if "storage" in res:
        items = res["storage"].value if isinstance(res["storage"].value, list) else [res["storage"]]
        for i, item in enumerate(items):
            skey = f"{key}.resources.storage" + (f"[{i}]" if isinstance(res["storage"].value, list) else "")
            s = ctx.mapping(item, skey, {"size", "name", "attributes"})
            persistent = False
            if "attributes" in s:
                attrs = ctx.mapping(s["attributes"], f"{skey}.attributes", {"persistent", "class"})
                persistent = attrs.get("persistent") is not None and attrs["persistent"].value is True
            storage.append(Volume(ctx.text(s["name"], f"{skey}.name") if "name" in s else "default",
                                  ctx.size(s["size"], f"{skey}.size") if "size" in s else 1 << 30, persistent))
    return ComputeProfile(name, _cpu(ctx, cpu["units"], f"{key}.resources.cpu.units"),
                          ctx.size(memory["size"], f"{key}.resources.memory.size"), storage)


def _price(ctx: _Ctx, node: _Node, key: str) -> PriceCap:
    p = ctx.mapping(node, key, {"denom", "amount"})
    for need in ("denom", "amount"):
        if need not in p:
            raise ctx.fail(node, f"{key}.{need}", "is required")
    denom = ctx.text(p["denom"], f"{key}.denom").lower()
    try:
        amount = Decimal(str(p["amount"].value))
    except InvalidOperation:
        raise ctx.fail(p["amount"], f"{key}.amount", "must be a number") from None
    if not amount.is_finite() or amount < 0:
        raise ctx.fail(p["amount"], f"{key}.amount", "must be a number >= 0")
    if denom in NATIVE_DENOMS:
        return PriceCap(amount, denom, amount)
    rate = ctx.rates.get(denom)
    if rate is None:
        raise ctx.fail(p["denom"], f"{key}.denom", f"{denom!r} is not this network's token: give a rate "
                       f"(--rate {denom}=TOKENS per unit) to convert its per-block price, or price in glm/tglm "
                       "per hour")
    return PriceCap(amount * AKASH_BLOCKS_PER_HOUR * rate, denom, amount)


def _placement(ctx: _Ctx, name: str, node: _Node) -> Placement:
    key = f"profiles.placement.{name}"
    fields = ctx.mapping(node, key, {"attributes", "pricing"},
                         why={"signedBy": "provider audits (signedBy) are not part of this network; "
                                          "requestors keep their own reputation record instead"})
    attributes: dict[str, str] = {}
    if "attributes" in fields:
        for attr, value in ctx.mapping(fields["attributes"], f"{key}.attributes",
                                       set(fields["attributes"].value) if isinstance(fields["attributes"].value, dict)
                                       else set()).items():
            if not re.match(r"^[A-Za-z0-9_.-]{1,128}$", attr):
                raise ctx.fail(value, f"{key}.attributes.{attr}", "attribute names are letters, digits and ._-")
            attributes[attr] = ctx.text(value, f"{key}.attributes.{attr}")
    pricing: dict[str, PriceCap] = {}
    if "pricing" in fields:
        services = fields["pricing"].value if isinstance(fields["pricing"].value, dict) else {}
        for service, price in ctx.mapping(fields["pricing"], f"{key}.pricing", set(services)).items():
            pricing[service] = _price(ctx, price, f"{key}.pricing.{service}")
    return Placement(name, attributes, pricing)


def parse_manifest(text: str, *, source: str = "manifest", rates: Mapping[str, Decimal | str] | None = None) -> Manifest:
    """Parse and check a manifest; :class:`ManifestError` names the first problem (key and line)."""
    ctx = _Ctx(source, {k: Decimal(str(v)) for k, v in (rates or {}).items()})
    root = _load(text, source)
    top = ctx.mapping(root, "", {"version", "services", "profiles", "deployment"},
                      why={"endpoints": "leased IP endpoints need public ingress, which comes later"})
    for need in ("version", "services", "profiles", "deployment"):
        if need not in top:
            raise ctx.fail(root, need, "is required")
    version = str(top["version"].value)
    if version not in ("2.0", "2.1"):
        raise ctx.fail(top["version"], "version", f"{version!r}: this reads SDL 2.0 (and 2.1 without its IP leases)")
    services_node = top["services"]
    services_map = services_node.value if isinstance(services_node.value, dict) else None
    if not services_map:
        raise ctx.fail(services_node, "services", "must name at least one service")
    if len(services_map) > MAX_SERVICES:
        raise ctx.fail(services_node, "services", f"at most {MAX_SERVICES} services")
    services = {name: _service(ctx, name, node) for name, node in services_map.items()}
    profiles_node = ctx.mapping(top["profiles"], "profiles", {"compute", "placement"})
    for need in ("compute", "placement"):
        if need not in profiles_node:
            raise ctx.fail(top["profiles"], f"profiles.{need}", "is required")
    compute = profiles_node["compute"].value if isinstance(profiles_node["compute"].value, dict) else None
    if not compute:
        raise ctx.fail(profiles_node["compute"], "profiles.compute", "must name at least one profile")
    profiles = {name: _profile(ctx, name, node) for name, node in compute.items()}
    placement_map = profiles_node["placement"].value if isinstance(profiles_node["placement"].value, dict) else None
    if not placement_map:
        raise ctx.fail(profiles_node["placement"], "profiles.placement", "must name at least one placement")
    placements = {name: _placement(ctx, name, node) for name, node in placement_map.items()}
    deployments: list[Deployment] = []
    dep_map = top["deployment"].value if isinstance(top["deployment"].value, dict) else None
    if not dep_map:
        raise ctx.fail(top["deployment"], "deployment", "must deploy at least one service")
    for service, node in dep_map.items():
        dkey = f"deployment.{service}"
        if service not in services:
            raise ctx.fail(node, dkey, f"no service {service!r} in services")
        if not isinstance(node.value, dict) or not node.value:
            raise ctx.fail(node, dkey, "must map a placement to {profile, count}")
        for placement, spec in node.value.items():
            pkey = f"{dkey}.{placement}"
            if placement not in placements:
                raise ctx.fail(spec, pkey, f"no placement {placement!r} in profiles.placement")
            s = ctx.mapping(spec, pkey, {"profile", "count"})
            if "profile" not in s:
                raise ctx.fail(spec, f"{pkey}.profile", "is required")
            profile = ctx.text(s["profile"], f"{pkey}.profile")
            if profile not in profiles:
                raise ctx.fail(s["profile"], f"{pkey}.profile", f"no profile {profile!r} in profiles.compute")
            count = ctx.integer(s["count"], f"{pkey}.count", 1, MAX_REPLICAS) if "count" in s else 1
            deployments.append(Deployment(service, placement, profile, count))
    manifest = Manifest(version, services, profiles, placements, deployments, ctx.notes)
    if manifest.replicas() > MAX_REPLICAS:
        raise ctx.fail(top["deployment"], "deployment", f"at most {MAX_REPLICAS} replicas in all")
    return manifest
