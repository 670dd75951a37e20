"""Golem VM packages on a Docker provider: ``hash:sha3:<hex>:<url>`` -> a verified local image.

A requestor's ``deploy {"package": ...}`` names a ``.gvmi`` file by its sha3-224 and where to
get it. The provider downloads it (http or https, at most ``max_bytes``, redirects at most 5),
checks the sha3-224 of every byte before anything reads the file, turns it into a Docker image
(:func:`exeunit.gvmi.gvmi_to_docker`: bounded, hostile contents refused or neutered) recorded like
an image a requestor sent, and runs it in the same hardened container as any image. One download
per package at a time; a package already imported in this run is not fetched again. The image
is recorded like an image a requestor sent (collected when unused).
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import trio

from exeunit.errors import ImageError

log = logging.getLogger("yagna.activity.packages")

PACKAGE = re.compile(r"hash:sha3:([0-9a-f]{56}):(https?://.+)")
DOWNLOAD_TIMEOUT_S = 30.0
"""Per read of the download (connect, each chunk), not for the whole file."""
UNPACKED_FACTOR = 4
"""The unpacked root may be this many times the package's size (squashfs compresses ~2-3x)."""

Importer = Callable[..., Awaitable[str]]
"""``(path, sha3, *, max_bytes) -> image id``: the runtime's ``import_gvmi`` (recorded as a peer's image)."""


def _volumes_of(path: Path) -> list[str]:
    from exeunit.gvmi import GvmiError, read_metadata

    try:
        return sorted(read_metadata(path).volumes)
    except GvmiError as exc:
        raise ImageError(f"not a Golem VM image: {exc}") from None


def parse_package(package: str) -> tuple[str, str]:
    """``(sha3 hex, url)``; :class:`ImageError` for anything else."""
    match = PACKAGE.fullmatch(package)
    if match is None:
        raise ImageError(f"not a Golem package 'hash:sha3:<56 hex>:<http(s) URL>': {package[:80]!r}")
    return match.group(1), match.group(2)


class Packages:
    def __init__(self, importer: Importer, staging: Path, *, has_image: Callable[[str], Awaitable[bool]],
                 on_imported: Callable[[str], Awaitable[None]] | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 volumes_of: Callable[[Path], list[str]] | None = None,
                 finder: Callable[[str], Awaitable[tuple[str, list[str]] | None]] | None = None) -> None:
        self._import = importer
        self._staging = staging
        self._has_image = has_image
        self._on_imported = on_imported
        self._transport = transport
        self._volumes_of = volumes_of or _volumes_of
        self._find = finder
        self._known: dict[str, str] = {}
        self.volumes: dict[str, list[str]] = {}
        """image id -> its Golem volumes (each linked to ``/work/vol/<path>`` in the image)."""
        self._locks: dict[str, trio.Lock] = {}
        self.downloads = 0

    async def ensure(self, package: str, *, max_bytes: int) -> str:
        """The image id of ``package``, downloading and importing it if need be."""
        sha3, url = parse_package(package)
        lock = self._locks.setdefault(sha3, trio.Lock())
        async with lock:
            known = self._known.get(sha3)
            if known is not None and await self._has_image(known):
                return known
            found = await self._find(sha3) if self._find is not None else None
            if found is not None:  # imported before this run: the engine keeps it by its hash
                self._known[sha3], self.volumes[found[0]] = found
                if self._on_imported is not None:
                    await self._on_imported(found[0])
                return found[0]
            path = self._staging / f"gvmi-{sha3[:16]}-{secrets.token_hex(6)}.part"
            try:
                await self._download(url, path, sha3, max_bytes)
                volumes = await trio.to_thread.run_sync(self._volumes_of, path)
                image_id = await self._import(str(path), sha3, max_bytes=max_bytes * UNPACKED_FACTOR)
                self.volumes[image_id] = volumes
            finally:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(lambda: path.unlink(missing_ok=True))
            self._known[sha3] = image_id
            if self._on_imported is not None:
                await self._on_imported(image_id)
            log.info("Golem package %s... imported as %s", sha3[:16], image_id[:19])
            return image_id

    async def _download(self, url: str, path: Path, sha3: str, max_bytes: int) -> None:
        digest, size = hashlib.sha3_224(), 0
        self.downloads += 1
        try:
            async with httpx.AsyncClient(timeout=DOWNLOAD_TIMEOUT_S, follow_redirects=True, max_redirects=5,
                                         transport=self._transport) as client, \
                    client.stream("GET", url) as resp:
                if resp.status_code != 200:
                    raise ImageError(f"cannot download the package from {url[:200]}: HTTP {resp.status_code}")
                declared = resp.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                    raise ImageError(f"the package is {int(declared)} bytes, more than the {max_bytes} this "
                                     "agreement allows")
                async with await trio.open_file(path, "wb") as f:
                    async for chunk in resp.aiter_bytes(1 << 20):
                        size += len(chunk)
                        if size > max_bytes:
                            raise ImageError(f"the package is larger than the {max_bytes} bytes this agreement allows")
                        digest.update(chunk)
                        await f.write(chunk)
        except httpx.HTTPError as exc:
            raise ImageError(f"cannot download the package from {url[:200]}: {exc}") from None
        if digest.hexdigest() != sha3:
            raise ImageError(f"the package downloaded from {url[:200]} has sha3-224 {digest.hexdigest()}, "
                             f"not the {sha3} its name promises")
