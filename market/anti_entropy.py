"""Anti-entropy for the offer market: digests of offer sets, what to pull, the wire shapes (sans-io).

Gossip loses offers (a dropped copy, a node that was busy, a catch-up that
timed out); nothing repaired that before the provider's re-announcement at
half the offer TTL. Anti-entropy does: every few seconds a node compares the
set of offers (and withdrawals) it holds in a subnet with one random
neighbour's and pulls what it lacks.

The set
    Every element is a *key*: the 64-hex-digit offer id followed by ``o``
    (a live offer) or ``w`` (a withdrawal, its tombstone). An offer id is the
    SHA-256 of the sealed offer, so it names one exact version; a
    re-announcement is a new key. Each key hashes to 64 bits
    (BLAKE2b); the set's *digest* is :data:`BUCKETS` buckets, keyed by the
    offer id's first byte, each the XOR of its keys' hashes, and its *root* the
    XOR of all of them plus the count. XOR lets the holder update a digest in
    O(1) on every add and remove (:class:`SetDigest`), so answering a digest
    costs no sort and no hashing of the book.

The exchange (initiator ``A`` asks neighbour ``B``)
    1. ``digest``: A sends its root and count (about 60 bytes). Equal sets:
       B answers ``equal`` and the round is over (one small message each way).
       Otherwise B answers with its 256 bucket hashes (2 KiB).
    2. ``list``: A names the buckets whose hashes differ (a 32-byte bitmap);
       B lists its keys in them with their expiry, at most
       :data:`MAX_LIST_ITEMS` a reply, with a cursor.
    3. ``pull``: A asks for the keys it lacks (:func:`plan_pull`: not held, not
       withdrawn here, not refused lately, not about to expire), at most
       :data:`MAX_PULL_KEYS` a request; B answers with the sealed objects, at
       most :data:`PULL_REPLY_BYTES`. A verifies each exactly as gossip does.

    A pulls only: what B lacks, B pulls in its own rounds. A withdrawal is an
    element too, so a node that missed a withdrawal pulls it, and a node that
    holds the tombstone never pulls the withdrawn offer back.

Every decoder here checks shape and size and raises only
:class:`AntiEntropyRejected` (the peer broke the protocol).
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from market.errors import MarketError
from market.offers import MAX_ID_LENGTH

__all__ = [
    "BUCKETS",
    "DIGEST_BYTES",
    "EXPIRY_MARGIN_MS",
    "KEY_LENGTH",
    "MAX_LIST_ITEMS",
    "MAX_LIST_PAGES",
    "MAX_PULL_KEYS",
    "MAX_WANT",
    "PULL_REPLY_BYTES",
    "AntiEntropyRejected",
    "DigestReply",
    "DigestRequest",
    "ListReply",
    "ListRequest",
    "PullReply",
    "PullRequest",
    "RecentlyRefused",
    "SetDigest",
    "bitmap_of",
    "buckets_of_bitmap",
    "decode_request",
    "differing_buckets",
    "is_key",
    "offer_key",
    "plan_pull",
    "withdrawal_key",
]

BUCKETS = 256
"""Buckets of a digest: the first byte of the offer id."""
BUCKET_HASH_BYTES = 8
DIGEST_BYTES = BUCKETS * BUCKET_HASH_BYTES
"""2 KiB: the bucket hashes B sends when the roots differ."""
ROOT_BYTES = 8
BITMAP_BYTES = BUCKETS // 8
KEY_LENGTH = 65
"""64 hex digits of the offer id + ``o`` or ``w``."""
MAX_LIST_ITEMS = 2048
"""Keys in one ``list`` reply (65 chars + expiry: about 150 KiB)."""
MAX_LIST_PAGES = 16
"""``list`` requests in one round: at most 32,768 keys compared a round."""
MAX_PULL_KEYS = 1024
"""Keys in one ``pull`` request (about 69 KiB of request; a reply of 735-byte offers fills at ~1,250)."""
PULL_REPLY_BYTES = 900 * 1024
"""Sealed bytes in one ``pull`` reply (the protocol's reply limit is 1 MiB)."""
MAX_WANT = 16_384
"""Keys pulled in one round at most (more: next round)."""
EXPIRY_MARGIN_MS = 5_000
"""Keys that expire within this are not pulled (the peer's copy may be gone by the time it arrives)."""
MAX_SUBNET = MAX_ID_LENGTH

_HEX = frozenset("0123456789abcdef")


class AntiEntropyRejected(MarketError):
    """A peer's anti-entropy message breaks the protocol (shape, size)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.code = "bad-request"


# -- keys -----------------------------------------------------------------------------------
def offer_key(offer_id: str) -> str:
    return offer_id + "o"


def withdrawal_key(offer_id: str) -> str:
    return offer_id + "w"


def is_key(value: object) -> bool:
    """A well-formed key: 64 lowercase hex digits then ``o`` or ``w``."""
    return (
        isinstance(value, str)
        and len(value) == KEY_LENGTH
        and value[-1] in "ow"
        and _HEX.issuperset(value[:64])
    )


def _hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=BUCKET_HASH_BYTES).digest(), "big")


def _bucket(key: str) -> int:
    return int(key[:2], 16)


# -- the digest ---------------------------------------------------------------------------
class SetDigest:
    """A set of keys with its bucket hashes, kept up to date on every add and remove.

    Also a sorted index of the keys, so that listing a bucket, or paging the
    offers after a cursor (the older catch-up protocol), costs a binary search
    and the page, never a sort of the whole set.
    """

    __slots__ = ("_keys", "_set", "_buckets", "_root", "_blob")

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._keys: list[str] = []
        self._set: set[str] = set()
        self._buckets = [0] * BUCKETS
        self._root = 0
        self._blob: bytes | None = None
        for key in keys:
            self.add(key)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._set

    def add(self, key: str) -> bool:
        if key in self._set:
            return False
        self._set.add(key)
        bisect.insort(self._keys, key)
        h = _hash(key)
        self._buckets[_bucket(key)] ^= h
        self._root ^= h
        self._blob = None
        return True

    def discard(self, key: str) -> bool:
        if key not in self._set:
            return False
        self._set.remove(key)
        i = bisect.bisect_left(self._keys, key)
        del self._keys[i]
        h = _hash(key)
        self._buckets[_bucket(key)] ^= h
        self._root ^= h
        self._blob = None
        return True

    @property
    def root(self) -> bytes:
        return self._root.to_bytes(ROOT_BYTES, "big")

    def buckets(self) -> bytes:
        """The :data:`DIGEST_BYTES` bucket hashes (cached until the set changes)."""
        if self._blob is None:
            self._blob = b"".join(b.to_bytes(BUCKET_HASH_BYTES, "big") for b in self._buckets)
        return self._blob

    def keys(self) -> list[str]:
        return list(self._keys)

    def keys_in(self, buckets: Iterable[int], *, after: str = "", limit: int = MAX_LIST_ITEMS) -> tuple[list[str], str | None]:
        """Keys in ``buckets`` greater than ``after``, in order, at most ``limit``; and the cursor to go on from.

        The cursor is the last key returned when more may follow, else None.
        """
        out: list[str] = []
        for b in sorted(set(buckets)):
            prefix = f"{b:02x}"
            lo = bisect.bisect_left(self._keys, prefix)
            hi = bisect.bisect_left(self._keys, f"{b + 1:02x}") if b + 1 < BUCKETS else len(self._keys)
            if after:
                if after[:2] > prefix:
                    continue
                lo = max(lo, bisect.bisect_right(self._keys, after))
            for i in range(lo, hi):
                if len(out) >= limit:
                    return out, out[-1]
                out.append(self._keys[i])
        return out, None

    def keys_after(self, after: str, *, kind: str = "o") -> Iterable[str]:
        """Keys of ``kind`` whose offer id is greater than ``after``, in order: the catch-up's cursor."""
        # a whole offer id: past both of its keys ("~" sorts after "o" and "w")
        i = bisect.bisect_right(self._keys, after + "~" if len(after) >= 64 else after)
        for key in self._keys[i:] if i else self._keys:
            if key[-1] == kind:
                yield key


def differing_buckets(mine: bytes, theirs: bytes) -> list[int]:
    """Indices of the buckets whose hashes differ (both :data:`DIGEST_BYTES` long)."""
    if len(mine) != DIGEST_BYTES or len(theirs) != DIGEST_BYTES:
        raise AntiEntropyRejected(f"a digest is {DIGEST_BYTES} bytes")
    n = BUCKET_HASH_BYTES
    return [b for b in range(BUCKETS) if mine[b * n:(b + 1) * n] != theirs[b * n:(b + 1) * n]]


def bitmap_of(buckets: Iterable[int]) -> bytes:
    bits = bytearray(BITMAP_BYTES)
    for b in buckets:
        bits[b // 8] |= 1 << (b % 8)
    return bytes(bits)


def buckets_of_bitmap(bitmap: bytes) -> list[int]:
    return [b for b in range(BUCKETS) if bitmap[b // 8] >> (b % 8) & 1]


# -- deciding what to pull ---------------------------------------------------------------
class RecentlyRefused:
    """Keys a pull brought that the book refused for good (superseded, withdrawn, forged ...).

    They are not pulled again for ``ttl_ms``, so that a peer that still holds
    an old copy costs one refusal, not one a round. At most ``max_keys``;
    the oldest entries go first.
    """

    def __init__(self, *, ttl_ms: int = 60_000, max_keys: int = 16_384) -> None:
        self.ttl_ms = ttl_ms
        self.max_keys = max_keys
        self._until: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._until)

    def add(self, key: str, now_ms: int) -> None:
        self._until.pop(key, None)
        while len(self._until) >= self.max_keys:
            del self._until[next(iter(self._until))]
        self._until[key] = now_ms + self.ttl_ms

    def __call__(self, key: str, now_ms: int) -> bool:
        until = self._until.get(key)
        if until is None:
            return False
        if until <= now_ms:
            del self._until[key]
            return False
        return True


def plan_pull(
    listed: Iterable[tuple[str, int]],
    *,
    holds: Callable[[str], bool],
    withdrawn: Callable[[str], bool],
    refused: Callable[[str, int], bool],
    now_ms: int,
    limit: int = MAX_WANT,
) -> list[str]:
    """The keys of ``listed`` (key, expires_at_ms) to pull, in order, at most ``limit``.

    Skipped: keys held already (``holds(key)``), offers whose id is withdrawn
    here (``withdrawn(offer_id)``), keys refused lately, and keys that expire
    within :data:`EXPIRY_MARGIN_MS`.
    """
    out: list[str] = []
    seen: set[str] = set()
    for key, expires in listed:
        if len(out) >= limit:
            break
        if key in seen or expires <= now_ms + EXPIRY_MARGIN_MS or holds(key) or refused(key, now_ms):
            continue
        if key[-1] == "o" and withdrawn(key[:64]):
            continue
        seen.add(key)
        out.append(key)
    return out


# -- the wire --------------------------------------------------------------------------------
#   {"op": "digest", "subnet": str, "root": bytes8, "n": int}
#       -> {"equal": true} | {"equal": false, "n": int, "buckets": bytes2048}
#   {"op": "list", "subnet": str, "buckets": bytes32, "after": str}
#       -> {"items": [[key, expires_at_ms], ...], "next": key | null}
#   {"op": "pull", "subnet": str, "keys": [key, ...]}
#       -> {"items": [sealed bytes, ...]}
@dataclass(frozen=True)
class DigestRequest:
    subnet: str
    root: bytes
    n: int

    def encode(self) -> dict[str, object]:
        return {"op": "digest", "subnet": self.subnet, "root": self.root, "n": self.n}


@dataclass(frozen=True)
class DigestReply:
    equal: bool
    n: int = 0
    buckets: bytes = b""

    def encode(self) -> dict[str, object]:
        if self.equal:
            return {"equal": True}
        return {"equal": False, "n": self.n, "buckets": self.buckets}

    @staticmethod
    def decode(msg: object) -> DigestReply:
        m = _map(msg)
        equal = _get(m, "equal", bool)
        if equal:
            return DigestReply(True)
        n = _count(m, "n")
        buckets = _get(m, "buckets", bytes)
        if len(buckets) != DIGEST_BYTES:
            raise AntiEntropyRejected(f"buckets must be {DIGEST_BYTES} bytes")
        return DigestReply(False, n, buckets)


@dataclass(frozen=True)
class ListRequest:
    subnet: str
    buckets: tuple[int, ...]
    after: str = ""

    def encode(self) -> dict[str, object]:
        return {"op": "list", "subnet": self.subnet, "buckets": bitmap_of(self.buckets), "after": self.after}


@dataclass(frozen=True)
class ListReply:
    items: tuple[tuple[str, int], ...]
    next: str | None

    def encode(self) -> dict[str, object]:
        return {"items": [list(item) for item in self.items], "next": self.next}

    @staticmethod
    def decode(msg: object, request: ListRequest) -> ListReply:
        """Check a reply against the request: well-formed keys, in the asked buckets, after the cursor, in order."""
        m = _map(msg)
        raw = _get(m, "items", list)
        if len(raw) > MAX_LIST_ITEMS:
            raise AntiEntropyRejected(f"at most {MAX_LIST_ITEMS} items")
        asked = set(request.buckets)
        items: list[tuple[str, int]] = []
        last = request.after
        for item in raw:
            if not (isinstance(item, list) and len(item) == 2 and is_key(item[0]) and _is_int(item[1])):
                raise AntiEntropyRejected("an item is [key, expires_at_ms]")
            key, expires = item
            if key <= last or _bucket(key) not in asked:
                raise AntiEntropyRejected("items must be in order, after the cursor, in the asked buckets")
            last = key
            items.append((key, expires))
        nxt = m.get("next")
        if nxt is not None and not (is_key(nxt) and nxt == last and items):
            raise AntiEntropyRejected("next must be null or the last key listed")
        return ListReply(tuple(items), nxt)


@dataclass(frozen=True)
class PullRequest:
    subnet: str
    keys: tuple[str, ...]

    def encode(self) -> dict[str, object]:
        return {"op": "pull", "subnet": self.subnet, "keys": list(self.keys)}


@dataclass(frozen=True)
class PullReply:
    items: tuple[bytes, ...]

    def encode(self) -> dict[str, object]:
        return {"items": list(self.items)}

    @staticmethod
    def decode(msg: object, request: PullRequest) -> PullReply:
        m = _map(msg)
        raw = _get(m, "items", list)
        if len(raw) > len(request.keys) or not all(isinstance(x, bytes) for x in raw):
            raise AntiEntropyRejected("items must be sealed objects, no more than the keys asked for")
        if sum(len(x) for x in raw) > PULL_REPLY_BYTES:
            raise AntiEntropyRejected(f"at most {PULL_REPLY_BYTES} bytes of items")
        return PullReply(tuple(raw))


AnyRequest = DigestRequest | ListRequest | PullRequest


def decode_request(msg: object) -> AnyRequest:
    """A request from a peer, checked; raises only :class:`AntiEntropyRejected`."""
    m = _map(msg)
    op = _get(m, "op", str)
    subnet = _get(m, "subnet", str)
    if len(subnet) > MAX_SUBNET:
        raise AntiEntropyRejected(f"subnet is at most {MAX_SUBNET} characters")
    if op == "digest":
        root = _get(m, "root", bytes)
        if len(root) != ROOT_BYTES:
            raise AntiEntropyRejected(f"root must be {ROOT_BYTES} bytes")
        return DigestRequest(subnet, root, _count(m, "n"))
    if op == "list":
        bitmap = _get(m, "buckets", bytes)
        if len(bitmap) != BITMAP_BYTES:
            raise AntiEntropyRejected(f"buckets must be a {BITMAP_BYTES}-byte bitmap")
        after = _get(m, "after", str)
        if after and not is_key(after):
            raise AntiEntropyRejected("after must be empty or a key")
        return ListRequest(subnet, tuple(buckets_of_bitmap(bitmap)), after)
    if op == "pull":
        keys = _get(m, "keys", list)
        if len(keys) > MAX_PULL_KEYS or not all(is_key(k) for k in keys):
            raise AntiEntropyRejected(f"keys: at most {MAX_PULL_KEYS} keys")
        return PullRequest(subnet, tuple(keys))
    raise AntiEntropyRejected("op must be digest, list or pull")


def _map(msg: object) -> Mapping[str, Any]:
    if not isinstance(msg, dict):
        raise AntiEntropyRejected("expected a map")
    return msg


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def _get(m: Mapping[str, Any], name: str, kind: type) -> Any:
    value = m.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise AntiEntropyRejected(f"field {name!r} must be {kind.__name__}")
    return value


def _count(m: Mapping[str, Any], name: str) -> int:
    value = m.get(name)
    if not _is_int(value):
        raise AntiEntropyRejected(f"field {name!r} must be a non-negative integer")
    assert isinstance(value, int)
    return value
