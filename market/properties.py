"""Properties: flat dotted names with typed values (Golem's model).

An offer or a demand describes itself with a flat mapping from dotted names
(``golem.inf.mem.gib``) to values. Properties travel inside signed CBOR
envelopes, so every value is a plain wire value; the richer types are
*interpretations* the constraint language applies when it compares:

==========  =====================================  ===============================
kind        Python value                           compared
==========  =====================================  ===============================
string      ``str``                                lexicographically (code points)
number      ``int`` or finite ``float``            numerically
bool        ``bool``                               ``=`` only
list        ``list``/``tuple`` of scalars          ``=`` means membership
version     ``str`` such as ``"1.2.3"``            semantically, with ``$v``
datetime    ``int`` milliseconds since the epoch   numerically (a constraint may
                                                   also write an ISO 8601 instant)
==========  =====================================  ===============================

Versions stay strings and datetimes stay ints on the wire because that is what
Golem puts there (``golem.runtime.version``, ``golem.srv.comp.expiration``) and
because canonical CBOR has no such types. Money is never a float (prices are
decimal strings or integer base units elsewhere), but hardware sizes such as
``golem.inf.mem.gib`` are.

A name ending in ``?`` is *negotiable*: it binds only when the other side
echoes it. Names are case-sensitive; Golem's are lower case.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import total_ordering

from yagna.core import encode
from yagna.core.errors import EncodeError

from market.errors import PropertyError

# -- standard names (golem-facts.md) ------------------------------------------------
INF_CPU_THREADS = "golem.inf.cpu.threads"
INF_CPU_CORES = "golem.inf.cpu.cores"
INF_CPU_ARCHITECTURE = "golem.inf.cpu.architecture"
INF_MEM_GIB = "golem.inf.mem.gib"
INF_STORAGE_GIB = "golem.inf.storage.gib"
RUNTIME_NAME = "golem.runtime.name"
RUNTIME_VERSION = "golem.runtime.version"
RUNTIME_CAPABILITIES = "golem.runtime.capabilities"
NODE_ID_NAME = "golem.node.id.name"
NODE_DEBUG_SUBNET = "golem.node.debug.subnet"
SRV_COMP_EXPIRATION = "golem.srv.comp.expiration"
SRV_COMP_TASK_PACKAGE = "golem.srv.comp.task_package"
SRV_CAPS_MULTI_ACTIVITY = "golem.srv.caps.multi-activity"
COM_SCHEME = "golem.com.scheme"
COM_PRICING_MODEL = "golem.com.pricing.model"
COM_PRICING_MODEL_LINEAR_COEFFS = "golem.com.pricing.model.linear.coeffs"
COM_USAGE_VECTOR = "golem.com.usage.vector"
COM_SCHEME_PAYU_DEBIT_NOTE_INTERVAL_SEC = "golem.com.scheme.payu.debit-note.interval-sec?"
COM_SCHEME_PAYU_PAYMENT_TIMEOUT_SEC = "golem.com.scheme.payu.payment-timeout-sec?"
COM_PAYMENT_DEBIT_NOTES_ACCEPT_TIMEOUT = "golem.com.payment.debit-notes.accept-timeout?"
USAGE_DURATION_SEC = "golem.usage.duration_sec"
USAGE_CPU_SEC = "golem.usage.cpu_sec"
USAGE_GIB = "golem.usage.gib"
USAGE_STORAGE_GIB = "golem.usage.storage_gib"

SCHEME_PAYU = "payu"
PRICING_LINEAR = "linear"


RUNTIME_GOLEM_VM = "yagna.runtime.golem-vm"
"""True in the offers of providers that run Golem VM packages (``.gvmi``) in their containers: Golem's
requestor API shows them as ``golem.runtime.name=vm`` (yagna/api/golem/market.py)."""

COM_PAYMENT_PROTOCOL_VERSION = "golem.com.payment.protocol.version"
"""Golem's payment protocol version, a string (``"3"``); Golem requestors demand ``>1``."""
PAYMENT_PROTOCOL_VERSION = "3"


def payment_platform_address(platform: str) -> str:
    """``golem.com.payment.platform.<platform>.address`` (e.g. ``erc20-polygon-glm``)."""
    return f"golem.com.payment.platform.{platform}.address"


# -- limits --------------------------------------------------------------------------
MAX_PROPERTIES = 256
"""Most properties in one set: Golem offers carry a few dozen."""
MAX_NAME_LENGTH = 256
MAX_STRING_LENGTH = 4096
MAX_LIST_LENGTH = 256
MAX_ENCODED_SIZE = 64 * 1024
"""Bound on the canonical CBOR of a whole set, so offers stay gossip-sized."""

NAME_RE = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\??")
"""Dotted segments of letters, digits, ``_`` and ``-``; an optional trailing ``?``."""

_INT_MIN = -(1 << 64)
_INT_MAX = (1 << 64) - 1

Scalar = str | int | float | bool
PropertyValue = Scalar | list[Scalar] | tuple[Scalar, ...]


def is_negotiable(name: str) -> bool:
    """A name ending in ``?`` binds only when the other side echoes it."""
    return name.endswith("?")


def lookup(properties: Mapping[str, object], name: str) -> object | None:
    """The value of ``name``, falling back to its negotiable form ``name?``.

    A constraint may name a negotiable property with or without its ``?``.
    Returns ``None`` when absent (``None`` is never a valid property value).
    """
    value = properties.get(name)
    if value is None and not name.endswith("?"):
        value = properties.get(name + "?")
    return value


def _check_scalar(name: str, value: object) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise PropertyError(f"property {name!r}: integer {value} does not fit in 64 bits")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PropertyError(f"property {name!r}: float must be finite, got {value!r}")
        return
    if isinstance(value, str):
        if len(value) > MAX_STRING_LENGTH:
            raise PropertyError(f"property {name!r}: string longer than {MAX_STRING_LENGTH} characters")
        return
    raise PropertyError(f"property {name!r}: unsupported value type {type(value).__name__}")


def validate_properties(properties: object, *, encoded_size_at_most: int | None = None) -> dict[str, PropertyValue]:
    """Check a property set and return it as a plain ``dict`` (lists as lists).

    Raises :class:`PropertyError` on a bad name, a value that is not a string,
    number, bool or list of those, or a set over the size caps. Accepts any
    object so it can be fed straight from decoded remote input.

    ``encoded_size_at_most``: a bound the caller knows on the set's canonical
    encoding (it was decoded from that many canonical bytes); within
    :data:`MAX_ENCODED_SIZE` the set is not re-encoded to measure it.
    """
    if not isinstance(properties, Mapping):
        raise PropertyError(f"properties must be a mapping, got {type(properties).__name__}")
    if len(properties) > MAX_PROPERTIES:
        raise PropertyError(f"too many properties: {len(properties)} > {MAX_PROPERTIES}")
    out: dict[str, PropertyValue] = {}
    for name, value in properties.items():
        if not isinstance(name, str):
            raise PropertyError(f"property name must be a string, got {type(name).__name__}")
        if len(name) > MAX_NAME_LENGTH:
            raise PropertyError(f"property name longer than {MAX_NAME_LENGTH} characters: {name[:40]!r}...")
        if not NAME_RE.fullmatch(name):
            raise PropertyError(f"invalid property name {name!r}: expected dotted segments of [A-Za-z0-9_-]")
        if isinstance(value, (list, tuple)):
            if len(value) > MAX_LIST_LENGTH:
                raise PropertyError(f"property {name!r}: list longer than {MAX_LIST_LENGTH}")
            for item in value:
                if isinstance(item, (list, tuple, dict)):
                    raise PropertyError(f"property {name!r}: lists may hold only scalars")
                _check_scalar(name, item)
            out[name] = list(value)
        else:
            _check_scalar(name, value)
            out[name] = value  # type: ignore[assignment]
    names = {n.rstrip("?") for n in out}
    if len(names) != len(out):
        raise PropertyError("a property is given both as negotiable ('name?') and not ('name')")
    if encoded_size_at_most is not None and encoded_size_at_most <= MAX_ENCODED_SIZE:
        return out
    try:
        size = len(encode(out))
    except EncodeError as exc:  # pragma: no cover - every value was checked above
        raise PropertyError(f"properties cannot be encoded: {exc}") from exc
    if size > MAX_ENCODED_SIZE:
        raise PropertyError(f"properties too large: {size} bytes encoded > {MAX_ENCODED_SIZE}")
    return out


# -- versions --------------------------------------------------------------------------
_VERSION_RE = re.compile(r"(\d{1,9}(?:\.\d{1,9}){0,3})(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z.-]+)?")


@total_ordering
@dataclass(frozen=True)
class Version:
    """A semantic version: ``1.2.3``, ``0.17``, ``1.0.0-rc.1`` (build metadata ignored).

    Missing release components count as zero (``1.2 == 1.2.0``); a
    pre-release sorts before its release, identifiers compared as in SemVer.
    """

    release: tuple[int, ...]
    pre: tuple[int | str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse ``text``; raises :class:`ValueError` if it is not a version."""
        m = _VERSION_RE.fullmatch(text.strip()) if isinstance(text, str) else None
        if m is None:
            raise ValueError(f"not a version: {text!r}")
        release = tuple(int(p) for p in m.group(1).split("."))
        pre: tuple[int | str, ...] = ()
        if m.group(2):
            pre = tuple(int(p) if p.isdigit() else p for p in m.group(2).split("."))
        return cls(release, pre)

    def _key(self) -> tuple[object, ...]:
        release = self.release + (0,) * (4 - len(self.release))
        # no pre-release sorts after any pre-release; numeric ids before alphanumeric
        pre = tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in self.pre)
        return (release, 1 if not self.pre else 0, pre)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __str__(self) -> str:
        text = ".".join(map(str, self.release))
        if self.pre:
            text += "-" + ".".join(map(str, self.pre))
        return text
