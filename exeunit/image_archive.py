"""Offline verification of a ``docker save`` archive against the image id it claims.

An image reaches a provider from the requestor over libp2p, named by its image
id ``sha256:<hex>``. Before ``docker load`` sees a byte of it,
:func:`verify_image_archive` checks, on the file alone:

1. every member name is a plain relative path (no absolute name, no ``..``,
   no duplicate) and every member is a regular file or a directory (no
   symlink, hardlink or device: nothing in the archive may point elsewhere);
2. ``manifest.json`` lists exactly one image, and no tags (a ``docker load``
   would otherwise re-point any local tag, e.g. ``ubuntu:latest``, at the
   stranger's image; images here are named by id) — nor does a legacy
   ``repositories`` file;
3. the config blob the manifest names is present and its sha256 *is* the
   expected id (the image id of Docker is the digest of its config);
4. the config's ``rootfs.diff_ids`` match the manifest's layers one to one, and
   each layer member's sha256 — taken on the decompressed tar when the layer is
   gzip-compressed — equals its diff id. The config thus pins every byte of the
   filesystem that will be loaded.

Both layouts of ``docker save`` pass: the legacy one (``<hex>.json`` config,
``<dir>/layer.tar`` layers) and the OCI one of Docker 25+ (``blobs/sha256/<hex>``).
Every failure is an :class:`~exeunit.errors.ImageError` naming what is wrong.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import posixpath
import re
import tarfile
import zlib
from dataclasses import dataclass
from typing import IO, Any

from exeunit.errors import ImageError

_ID_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_CHUNK = 1024 * 1024
_MAX_JSON = 16 * 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@dataclass(frozen=True)
class VerifiedArchive:
    image_id: str
    layers: list[str]
    """The layer member names, bottom first."""
    diff_ids: list[str]


def check_image_id(image_id: str) -> str:
    """``sha256:<64 lowercase hex>`` or ImageError."""
    if not isinstance(image_id, str) or not _ID_RE.match(image_id):
        raise ImageError(f"not an image id (sha256:<64 hex>): {image_id!r}")
    return image_id


def _check_name(name: str) -> str:
    """The member name normalized (``./a`` -> ``a``), or ImageError if it could escape."""
    if not name or "\x00" in name or "\\" in name:
        raise ImageError(f"image archive: bad member name {name!r}")
    if name.startswith("/"):
        raise ImageError(f"image archive: absolute member name {name!r}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise ImageError(f"image archive: member name with '..': {name!r}")
    return "/".join(parts)


def _sha256_stream(f: IO[bytes]) -> str:
    h = hashlib.sha256()
    while chunk := f.read(_CHUNK):
        h.update(chunk)
    return "sha256:" + h.hexdigest()


def _layer_diff_id(tf: tarfile.TarFile, member: tarfile.TarInfo) -> str:
    """sha256 of the layer's uncompressed tar."""
    f = tf.extractfile(member)
    if f is None:  # pragma: no cover - regular files always have a stream
        raise ImageError(f"image archive: cannot read layer {member.name!r}")
    with f:
        magic = f.read(4)
        f.seek(0)
        if magic[:2] == _GZIP_MAGIC:
            try:
                with gzip.GzipFile(fileobj=f, mode="rb") as g:
                    return _sha256_stream(g)  # type: ignore[arg-type]  # GzipFile is a binary IO; typeshed disagrees
            except (OSError, EOFError, zlib.error) as e:  # zlib.error: a corrupt deflate stream
                raise ImageError(f"image archive: layer {member.name!r} is not valid gzip: {e}") from e
        if magic == _ZSTD_MAGIC:
            raise ImageError(f"image archive: layer {member.name!r} is zstd-compressed (not supported)")
        return _sha256_stream(f)


def _read_json(tf: tarfile.TarFile, member: tarfile.TarInfo, what: str) -> tuple[bytes, Any]:
    if member.size > _MAX_JSON:
        raise ImageError(f"image archive: {what} is too large ({member.size} bytes)")
    f = tf.extractfile(member)
    if f is None:  # pragma: no cover
        raise ImageError(f"image archive: cannot read {what}")
    with f:
        raw = f.read()
    try:
        return raw, json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ImageError(f"image archive: {what} is not JSON: {e}") from e
    except RecursionError:  # json nests by recursion: "[[[[..." deeper than the stack
        raise ImageError(f"image archive: {what} is nested too deeply") from None


def verify_image_archive(path: str, expected_id: str) -> VerifiedArchive:
    """Check the ``docker save`` tar at ``path`` holds exactly the image ``expected_id``.

    Raises :class:`ImageError` on the first problem found; reads each layer once.
    """
    check_image_id(expected_id)
    try:
        tf = tarfile.open(path, mode="r:")  # uncompressed, seekable: what docker save writes
    except (OSError, tarfile.TarError) as e:
        raise ImageError(f"image archive: not a readable tar: {e}") from e
    with tf:
        members: dict[str, tarfile.TarInfo] = {}
        try:
            all_members = tf.getmembers()
        except (tarfile.TarError, OSError, EOFError) as e:
            raise ImageError(f"image archive: corrupt tar: {e}") from e
        for m in all_members:
            name = _check_name(m.name)
            if m.issym() or m.islnk():
                raise ImageError(f"image archive: link member {m.name!r} -> {m.linkname!r} refused")
            if not (m.isfile() or m.isdir()):
                raise ImageError(f"image archive: special member {m.name!r} refused")
            if not name:
                continue  # "./" itself
            if name in members:
                raise ImageError(f"image archive: duplicate member {name!r}")
            members[name] = m

        def regular(name: str, what: str) -> tarfile.TarInfo:
            try:
                norm = _check_name(name)
            except ImageError as e:
                raise ImageError(f"image archive: {what} path {name!r} refused: {e}") from e
            m = members.get(norm)
            if m is None or not m.isfile():
                raise ImageError(f"image archive: {what} {name!r} is missing")
            return m

        _, manifest = _read_json(tf, regular("manifest.json", "manifest.json"), "manifest.json")
        if not isinstance(manifest, list) or len(manifest) != 1 or not isinstance(manifest[0], dict):
            raise ImageError("image archive: manifest.json must list exactly one image")
        entry = manifest[0]
        if entry.get("RepoTags"):
            raise ImageError(f"image archive: carries tags {entry['RepoTags']!r}; images travel by id, untagged")
        if "repositories" in members:
            _, repos = _read_json(tf, members["repositories"], "repositories")
            if repos:
                raise ImageError("image archive: its 'repositories' file would tag images; refused")
        config_name = entry.get("Config")
        layer_names = entry.get("Layers")
        if not isinstance(config_name, str) or not isinstance(layer_names, list):
            raise ImageError("image archive: manifest.json entry lacks Config or Layers")
        if not all(isinstance(x, str) for x in layer_names):
            raise ImageError("image archive: manifest.json Layers must be paths")

        config_member = regular(config_name, "config")
        raw, config = _read_json(tf, config_member, "config")
        actual = "sha256:" + hashlib.sha256(raw).hexdigest()
        if actual != expected_id:
            raise ImageError(f"image archive: config digest {actual} is not the expected image id {expected_id}")
        rootfs = config.get("rootfs") if isinstance(config, dict) else None
        if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
            raise ImageError("image archive: config has no rootfs of type 'layers'")
        diff_ids = rootfs.get("diff_ids")
        if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
            raise ImageError("image archive: config rootfs.diff_ids missing")
        if len(diff_ids) != len(layer_names):
            raise ImageError(
                f"image archive: config names {len(diff_ids)} layers, the manifest {len(layer_names)}"
            )
        for i, (name, diff_id) in enumerate(zip(layer_names, diff_ids, strict=True)):
            member = regular(name, f"layer {i}")
            got = _layer_diff_id(tf, member)
            if got != diff_id:
                raise ImageError(f"image archive: layer {i} ({name}) has digest {got}, the config says {diff_id}")
        return VerifiedArchive(
            image_id=expected_id,
            layers=[posixpath.normpath(n) for n in layer_names],
            diff_ids=list(diff_ids),
        )
