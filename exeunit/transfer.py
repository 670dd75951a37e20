"""Content-addressed transfers: verify while receiving, plan chunked fetches, name blobs.

Files and images move between nodes as *blobs* named by their SHA-256, so the
receiver knows before the first byte what it must end up with. The rules:

* a :class:`Sha256Sink` refuses (``too-large``) at the first byte past the
  declared size or the limit — a peer cannot make us store more than agreed —
  and :meth:`Sha256Sink.finish` refuses (``hash-mismatch``) short or wrong
  content, so nothing unverified is ever moved into place or ``docker load``-ed;
* a blob id is ``file:<hex>`` or ``image:sha256:<hex>`` (lowercase hex, one
  spelling per blob); :func:`parse_blob_id` answers garbage with
  ``TransferRefused("not-found")``: a blob id arrives from a peer asking for a
  blob, and "no such blob" is the honest, uniform answer (a ScriptError would
  blame an exe-script that does not exist on that path).

The sink only hashes and counts; the caller writes the bytes (on a worker
thread), so this stays pure.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from exeunit.errors import TransferRefused

__all__ = [
    "BLOB_KINDS",
    "MAX_BLOB_ID_LEN",
    "ChunkPlan",
    "Sha256Sink",
    "blob_id_for",
    "check_range",
    "parse_blob_id",
    "sha256_file",
]

BLOB_KINDS = ("file", "image")
MAX_BLOB_ID_LEN = len("image:sha256:") + 64
"""``image:sha256:<64 hex>``: the longest valid blob id."""

_HEX64 = re.compile(r"[0-9a-f]{64}")
_BLOB_ID = re.compile(r"(file):([0-9a-f]{64})|(image):sha256:([0-9a-f]{64})")


class Sha256Sink:
    """Hash and count incoming bytes against a declared digest and size.

    ``max_bytes`` is the receiver's own cap (e.g. the agreement's storage); a
    declared size above it is refused at construction, before any byte is
    fetched. After a refusal the sink stays refused.
    """

    def __init__(self, expected_sha256: str, expected_size: int, *, max_bytes: int | None = None) -> None:
        if not isinstance(expected_sha256, str) or _HEX64.fullmatch(expected_sha256) is None:
            raise ValueError(f"expected_sha256 must be 64 lowercase hex digits, not {expected_sha256!r}")
        if isinstance(expected_size, bool) or not isinstance(expected_size, int) or expected_size < 0:
            raise ValueError(f"expected_size must be a non-negative int, not {expected_size!r}")
        if max_bytes is not None and expected_size > max_bytes:
            raise TransferRefused("too-large", f"declared size {expected_size} bytes exceeds the limit of {max_bytes} bytes")
        self.expected_sha256 = expected_sha256
        self.expected_size = expected_size
        self.max_bytes = max_bytes
        self.received = 0
        self._hash = hashlib.sha256()
        self._refused: TransferRefused | None = None
        self._finished = False

    def write(self, data: bytes) -> int:
        """Account for ``data``; returns its length. ``too-large`` past the declared size."""
        if self._refused is not None:
            raise self._refused
        if self._finished:
            raise ValueError("write after finish")
        received = self.received + len(data)
        if received > self.expected_size:
            self._refused = TransferRefused(
                "too-large", f"received more than the declared {self.expected_size} bytes (at least {received})"
            )
            raise self._refused
        self._hash.update(data)
        self.received = received
        return len(data)

    def finish(self) -> str:
        """Check size and digest; returns the hex digest. ``hash-mismatch`` if either differs."""
        if self._refused is not None:
            raise self._refused
        self._finished = True
        if self.received != self.expected_size:
            self._refused = TransferRefused(
                "hash-mismatch", f"received {self.received} of the declared {self.expected_size} bytes"
            )
            raise self._refused
        digest = self._hash.hexdigest()
        if digest != self.expected_sha256:
            self._refused = TransferRefused(
                "hash-mismatch", f"content has sha256 {digest}, expected {self.expected_sha256}"
            )
            raise self._refused
        return digest


@dataclass(frozen=True)
class ChunkPlan:
    """The ``(offset, length)`` chunks of a ``size``-byte blob; empty for size 0."""

    size: int
    chunk_size: int

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise ValueError(f"size must be a non-negative int, not {self.size!r}")
        if isinstance(self.chunk_size, bool) or not isinstance(self.chunk_size, int) or self.chunk_size <= 0:
            raise ValueError(f"chunk_size must be a positive int, not {self.chunk_size!r}")

    def __len__(self) -> int:
        return -(-self.size // self.chunk_size)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for offset in range(0, self.size, self.chunk_size):
            yield offset, min(self.chunk_size, self.size - offset)


def check_range(offset: object, length: object, *, size: int, max_chunk: int) -> tuple[int, int]:
    """Validate a peer's request for bytes ``[offset, offset+length)`` of a ``size``-byte blob.

    ``too-large`` if ``length`` exceeds ``max_chunk``; ``not-found`` if the range is
    malformed or not inside the blob (those bytes do not exist). A zero-length
    read at ``size`` is allowed (it is how an empty blob is fetched).
    """
    for name, value in (("offset", offset), ("length", length)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise TransferRefused("not-found", f"{name} must be a non-negative integer, not {value!r:.40}")
    offset, length = cast(int, offset), cast(int, length)
    if length > max_chunk:
        raise TransferRefused("too-large", f"a chunk is at most {max_chunk} bytes, {length} were asked for")
    if offset + length > size:
        raise TransferRefused("not-found", f"bytes {offset}..{offset + length} are past the end of a {size}-byte blob")
    return offset, length


def sha256_file(path: str | Path, *, chunk_size: int = 1024 * 1024) -> tuple[str, int]:
    """``(hex digest, size)`` of a file, read in chunks (blocking: call it on a thread)."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def blob_id_for(kind: str, digest: str) -> str:
    """``("file", hex) -> "file:<hex>"``, ``("image", hex or "sha256:<hex>") -> "image:sha256:<hex>"``.

    ``ValueError`` on a kind or digest of ours that is malformed (a bug, not input).
    """
    if kind == "image" and digest.startswith("sha256:"):
        digest = digest[len("sha256:") :]
    if _HEX64.fullmatch(digest) is None:
        raise ValueError(f"digest must be 64 lowercase hex digits, not {digest!r}")
    if kind == "file":
        return f"file:{digest}"
    if kind == "image":
        return f"image:sha256:{digest}"
    raise ValueError(f"blob kind must be one of {BLOB_KINDS}, not {kind!r}")


def parse_blob_id(blob_id: object) -> tuple[str, str]:
    """``"file:<hex>" -> ("file", hex)``, ``"image:sha256:<hex>" -> ("image", hex)``.

    Anything else (remote input) raises ``TransferRefused("not-found")``.
    """
    if not isinstance(blob_id, str) or len(blob_id) > MAX_BLOB_ID_LEN:
        raise TransferRefused("not-found", f"no such blob: {blob_id!r:.100}")
    m = _BLOB_ID.fullmatch(blob_id)
    if m is None:
        raise TransferRefused("not-found", f"no such blob: {blob_id!r} (blob ids are file:<hex> or image:sha256:<hex>)")
    if m.group(1):
        return "file", m.group(2)
    return "image", m.group(4)
