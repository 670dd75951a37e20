"""Golem VM images (``.gvmi``): read one into Docker, pack one from a Docker image.

The layout is the one gvmkit-build 0.3.x writes (``add_metadata_outside``) and
reads back (``read_metadata_outside``); learned from its source, no code taken::

    offset 0   squashfs filesystem      the image's root filesystem (magic "hsqs")
               crc32, 4 bytes LE        CRC-32/ISO-HDLC (zlib.crc32) of the JSON
               metadata JSON            Docker's ContainerConfig (Env, Cmd, Entrypoint,
                                        WorkingDir, Volumes, Labels, Image, ...), the
                                        engine API's PascalCase keys, nulls left out
    end - 8    length, 8 ASCII digits   the JSON's byte length, decimal, zero-padded

gvmkit-build compresses the squashfs with lzo by default (``mksquashfs -comp lzo
-noappend``) and takes the metadata from a container made of the image, with
``User`` dropped and ``Domainname`` emptied (Golem VMs run as root). Golem names
an image by the sha3-224 of the whole file: ``hash:sha3:<hex>:<url>``.

Both directions shell out to Debian's squashfs-tools (``mksquashfs``,
``unsquashfs``) and take a docker-py client from the caller; they block, so
trio code calls them through ``trio.to_thread.run_sync``. docker-py is imported
only inside them (importing :mod:`exeunit` must not need it).

A ``.gvmi`` may come from a stranger, so reading it is bounded and careful: the
trailer and the superblock are checked before any tool sees the file; the
listing is summed against ``max_bytes``/``max_entries`` before anything is
extracted; extraction goes to a private (0700) directory without xattrs and
without device nodes, fifos or sockets; the tar handed to ``docker import`` is
built from ``lstat`` (no link is ever followed), drops special files, clears
setuid/setgid bits and refuses relative symlinks that climb above the root.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import posixpath
import re
import shutil
import stat
import struct
import subprocess
import tarfile
import tempfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from exeunit.errors import ImageError, RuntimeFailure
from yagna.core.links import climbs_out

MAX_METADATA = 1024 * 1024
"""The largest metadata JSON we read or write (gvmkit-build's trailer could say 99,999,999)."""
DEFAULT_MAX_BYTES = 8 * 1024**3
"""Default bound on the extracted root filesystem (sum of regular file sizes)."""
DEFAULT_MAX_ENTRIES = 500_000
"""Default bound on the number of entries (files, dirs, links) in a root filesystem."""
DEFAULT_TIMEOUT = 1800.0
"""Seconds any one squashfs tool may run."""

_LEN_DIGITS = 8
_CRC_BYTES = 4
_SUPERBLOCK = 96
_SQUASHFS_MAGIC = b"hsqs"
_CHUNK = 1024 * 1024
_MAX_CHANGES = 256 * 1024
"""``docker import`` takes its changes in the URL (Go's server reads at most 1 MiB of head)."""
_COMPRESSORS = {1: "gzip", 2: "lzma", 3: "lzo", 4: "xz", 5: "lz4", 6: "zstd"}
PACK_COMPRESSIONS = ("lzo", "gzip", "lz4", "zstd", "xz")
"""What ``pack`` offers: gvmkit-build's choices (lzo its default), all in Debian's mksquashfs."""

# The fields of bollard's ContainerConfig, in its order: gvmkit-build serializes that struct,
# so these keys in this order (None left out) are what its files carry.
_CONFIG_KEYS = (
    "Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr", "ExposedPorts",
    "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck", "ArgsEscaped", "Image", "Volumes",
    "WorkingDir", "Entrypoint", "NetworkDisabled", "MacAddress", "OnBuild", "Labels", "StopSignal",
    "StopTimeout", "Shell",
)
_ENV_NAME = re.compile(r"^[^=\x00\n\r]+$")
_TAG = re.compile(r"^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$")


class GvmiError(ImageError):
    """A ``.gvmi`` file is malformed or truncated, its metadata cannot be carried into
    Docker, it is over a bound, or a squashfs tool failed on it."""

    code = "bad-gvmi"


@dataclass
class GvmiMetadata:
    """What a ``.gvmi`` says besides its filesystem. ``None``: not set in the image."""

    env: list[str] = field(default_factory=list)
    """``NAME=value`` entries."""
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    working_dir: str = ""
    volumes: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    squashfs_offset: int = 0
    squashfs_length: int = 0
    """Bytes from ``squashfs_offset`` up to the trailer (the filesystem and its padding)."""
    compression: str = ""
    """The squashfs compressor named by the superblock (``lzo``, ``xz``, ...)."""
    image: str | None = None
    """The source Docker image id (hex) gvmkit-build records; informative only."""
    config: dict[str, Any] = field(default_factory=dict)
    """The whole metadata object as read."""


# ---------------------------------------------------------------------------------------------
# The file format


def encode_trailer(config: Mapping[str, Any]) -> bytes:
    """The bytes appended after the squashfs: crc32 LE, the JSON, its length in 8 digits.

    The JSON is compact UTF-8 with the keys in ``config``'s order, as serde_json writes it."""
    data = json.dumps(dict(config), separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    if len(data) > MAX_METADATA:
        raise GvmiError(f"metadata is {len(data)} bytes, over the {MAX_METADATA} allowed")
    return zlib.crc32(data).to_bytes(_CRC_BYTES, "little") + data + f"{len(data):0{_LEN_DIGITS}d}".encode()


def config_from_image(inspect: Mapping[str, Any]) -> dict[str, Any]:
    """gvmkit-build's metadata for an image, from ``docker image inspect``: its Config with
    ``User`` dropped, ``Domainname`` empty and ``Image`` the image id's hex, in bollard's key
    order, nulls left out."""
    cfg = inspect.get("Config") or {}
    image_id = str(inspect.get("Id", ""))
    out: dict[str, Any] = {}
    for key in _CONFIG_KEYS:
        if key == "User":
            continue
        value = cfg.get(key)
        if key == "Domainname":
            value = ""
        elif key == "Image":
            value = image_id.removeprefix("sha256:") or None
        if value is not None:
            out[key] = value
    return out


def read_metadata(path: str | os.PathLike[str]) -> GvmiMetadata:
    """Read and check a ``.gvmi``'s trailer and squashfs superblock (GvmiError if anything is off)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            return _read_metadata(f, size)
    except OSError as e:
        raise GvmiError(f"cannot read {os.fspath(path)!r}: {e.strerror or e}") from e


def _read_metadata(f: IO[bytes], size: int) -> GvmiMetadata:
    overhead = _CRC_BYTES + _LEN_DIGITS
    if size < _SUPERBLOCK + overhead + 2:
        raise GvmiError(f"file of {size} bytes is too small to be a .gvmi")
    f.seek(size - _LEN_DIGITS)
    digits = f.read(_LEN_DIGITS)
    if len(digits) != _LEN_DIGITS or not digits.isdigit():
        raise GvmiError(f"no .gvmi trailer: last {_LEN_DIGITS} bytes are {digits!r}, not decimal digits")
    meta_len = int(digits)
    if not 2 <= meta_len <= MAX_METADATA:
        raise GvmiError(f"metadata length {meta_len} out of bounds (2..{MAX_METADATA})")
    sq_len = size - overhead - meta_len
    if sq_len < _SUPERBLOCK:
        raise GvmiError(f"truncated: metadata of {meta_len} bytes leaves {max(sq_len, 0)} bytes for the filesystem")
    f.seek(sq_len)
    crc = f.read(_CRC_BYTES)
    data = f.read(meta_len)
    if len(crc) != _CRC_BYTES or len(data) != meta_len:
        raise GvmiError("truncated while reading the metadata")
    if zlib.crc32(data) != int.from_bytes(crc, "little"):
        raise GvmiError("metadata CRC mismatch (corrupt or not a .gvmi)")
    config = _parse_json(data)
    f.seek(0)
    compression = _check_superblock(f.read(_SUPERBLOCK), sq_len)
    return _metadata_from_config(config, sq_len, compression)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise GvmiError(f"metadata: duplicate key {k!r}")
        out[k] = v
    return out


def _bad_constant(name: str) -> Any:
    raise GvmiError(f"metadata: {name} is not JSON")


def _parse_json(data: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_bad_constant)
    except UnicodeDecodeError as e:
        raise GvmiError(f"metadata is not UTF-8: {e.reason}") from e
    except json.JSONDecodeError as e:
        raise GvmiError(f"metadata is not JSON: {e.msg} at byte {e.pos}") from e
    except RecursionError as e:
        raise GvmiError("metadata JSON nests too deep") from e
    if not isinstance(obj, dict):
        raise GvmiError(f"metadata is a JSON {type(obj).__name__}, not an object")
    return obj


def _check_superblock(sb: bytes, sq_len: int) -> str:
    """Squashfs 4.0 superblock sanity; returns the compressor's name."""
    if len(sb) < _SUPERBLOCK or sb[:4] != _SQUASHFS_MAGIC:
        raise GvmiError("no squashfs filesystem at the start of the file (bad magic)")
    block_size, = struct.unpack_from("<I", sb, 12)
    comp, block_log, _flags, _ids, major, _minor = struct.unpack_from("<6H", sb, 20)
    bytes_used, = struct.unpack_from("<Q", sb, 40)
    if major != 4:
        raise GvmiError(f"squashfs major version {major}, only 4 is supported")
    if comp not in _COMPRESSORS:
        raise GvmiError(f"squashfs compressor id {comp} is unknown")
    if not (12 <= block_log <= 20 and block_size == 1 << block_log):
        raise GvmiError(f"squashfs block size {block_size} (log {block_log}) is invalid")
    if not _SUPERBLOCK <= bytes_used <= sq_len:
        raise GvmiError(f"squashfs says it has {bytes_used} bytes, the file has {sq_len} before its metadata")
    return _COMPRESSORS[comp]


def _str_list(config: Mapping[str, Any], key: str) -> list[str] | None:
    value = config.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise GvmiError(f"metadata: {key} must be a list of strings")
    return value


def _str_map(config: Mapping[str, Any], key: str, *, values: type) -> dict[str, Any]:
    value = config.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, values) for v in value.values()):
        raise GvmiError(f"metadata: {key} must be an object of {values.__name__}")
    return value


def _metadata_from_config(config: dict[str, Any], sq_len: int, compression: str) -> GvmiMetadata:
    env = _str_list(config, "Env") or []
    for item in env:
        name, eq, _ = item.partition("=")
        if not eq or not _ENV_NAME.match(name):
            raise GvmiError(f"metadata: Env entry {item[:80]!r} is not NAME=value")
    working_dir = config.get("WorkingDir")
    if working_dir is not None and not isinstance(working_dir, str):
        raise GvmiError("metadata: WorkingDir must be a string")
    image = config.get("Image")
    if image is not None and not isinstance(image, str):
        raise GvmiError("metadata: Image must be a string")
    return GvmiMetadata(
        env=env,
        entrypoint=_str_list(config, "Entrypoint"),
        cmd=_str_list(config, "Cmd"),
        working_dir=working_dir or "",
        volumes=sorted(_str_map(config, "Volumes", values=dict)),
        labels=_str_map(config, "Labels", values=str),
        squashfs_offset=0,
        squashfs_length=sq_len,
        compression=compression,
        image=image,
        config=config,
    )


def sha3_224_file(path: str | os.PathLike[str]) -> str:
    """The hex sha3-224 of a whole file, read in chunks (Golem's ``hash:sha3:<hex>``)."""
    h = hashlib.sha3_224()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Docker "changes": the metadata as Dockerfile instructions


def _quoted(s: str) -> str:
    """A double-quoted Dockerfile word: backslash before ``\\``, ``"`` and ``$`` (no expansion)."""
    return '"' + re.sub(r'([\\"$])', r"\\\1", s) + '"'


def _json_words(items: list[str]) -> str:
    """A JSON array whose elements survive the word processing VOLUME applies to each one."""
    return json.dumps([re.sub(r"([\\\"$'])", r"\\\1", s) for s in items])


LABEL_GOLEM_VOLUMES = "network.yagna.golem-volumes"
"""Label of an image imported with ``volume_root``: its Golem volumes (JSON list of paths)."""


def docker_changes(meta: GvmiMetadata, *, volumes_as_label: bool = False) -> list[str]:
    """The metadata as ``docker import`` changes (ENV, ENTRYPOINT, CMD, WORKDIR, VOLUME, LABEL).

    ``volumes_as_label``: no VOLUME (Docker would back it with an unbounded anonymous volume);
    the paths go into :data:`LABEL_GOLEM_VOLUMES` instead.
    A value with a line break or NUL cannot be written as a change: GvmiError."""
    for value in [*meta.env, *(meta.entrypoint or []), *(meta.cmd or []), meta.working_dir, *meta.volumes,
                  *meta.labels, *meta.labels.values()]:
        if any(c in value for c in "\n\r\x00"):
            raise GvmiError(f"metadata value {value[:80]!r} has a line break or NUL: docker import cannot carry it")
    changes = []
    for item in meta.env:
        name, _, value = item.partition("=")
        changes.append(f"ENV {_quoted(name)}={_quoted(value)}")
    # CMD/ENTRYPOINT in exec form are not expanded: plain JSON.
    if meta.entrypoint is not None:
        changes.append("ENTRYPOINT " + json.dumps(meta.entrypoint))
    if meta.cmd is not None:
        changes.append("CMD " + json.dumps(meta.cmd))
    if meta.working_dir:
        changes.append("WORKDIR " + _quoted(meta.working_dir))
    if meta.volumes and not volumes_as_label:
        changes.append("VOLUME " + _json_words(meta.volumes))
    if meta.volumes and volumes_as_label:
        changes.append(f"LABEL {LABEL_GOLEM_VOLUMES}={_quoted(json.dumps(sorted(meta.volumes)))}")
    for key, value in meta.labels.items():
        changes.append(f"LABEL {_quoted(key)}={_quoted(value)}")
    if sum(len(c) for c in changes) > _MAX_CHANGES:
        raise GvmiError(f"metadata too large for docker import changes (over {_MAX_CHANGES} bytes)")
    return changes


# ---------------------------------------------------------------------------------------------
# .gvmi -> Docker image


def gvmi_to_docker(
    path: str | os.PathLike[str],
    engine_client: Any,
    tag: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    timeout: float = DEFAULT_TIMEOUT,
    tmp_dir: str | None = None,
    volume_root: str | None = None,
    extra_labels: Mapping[str, str] | None = None,
) -> str:
    """Import a ``.gvmi`` into the engine as image ``tag`` with its metadata; its id (``sha256:...``).

    ``volume_root`` (e.g. ``/work/vol``): each Golem volume ``V`` of the image becomes a symlink
    ``V -> <volume_root>/V`` in the root filesystem (whatever the image had there is dropped) and is
    listed in :data:`LABEL_GOLEM_VOLUMES`, not declared as a Docker VOLUME: a read-only container
    then writes its volumes inside its own bounded work directory.

    ``engine_client``: a ``docker.DockerClient`` (or its ``APIClient``). ``max_bytes`` bounds the
    sum of the regular files' sizes, ``max_entries`` their number; both are checked on the
    listing before extraction and again on what was extracted. Needs ``tmp_dir`` room for the
    extracted tree and its tar (about 2 x the root filesystem). Blocking."""
    if not _TAG.match(tag):
        raise GvmiError(f"not a repository[:tag] to import as: {tag!r}")
    meta = read_metadata(path)
    if extra_labels:  # ours (e.g. the package's hash), beside the image's own
        meta = dataclasses.replace(meta, labels={**meta.labels, **extra_labels})
    changes = docker_changes(meta, volumes_as_label=volume_root is not None)
    links = {_volume_rel(v): posixpath.join(volume_root, _volume_rel(v)) for v in meta.volumes} if volume_root else {}
    unsquashfs = _tool("unsquashfs")
    src = os.fspath(path)
    with tempfile.TemporaryDirectory(prefix="yagna-gvmi-", dir=tmp_dir) as work:
        os.chmod(work, 0o700)
        special = _list_squashfs(unsquashfs, src, max_bytes, max_entries, timeout)
        root = os.path.join(work, "root")
        cmd = [unsquashfs, "-no-xattrs", "-no-progress", "-quiet", "-dest", root]
        if special:
            exclude = os.path.join(work, "exclude")
            with open(exclude, "w", encoding="utf-8", errors="surrogateescape") as f:
                f.write("".join(name + "\n" for name in special))
            cmd += ["-exclude-file", exclude, "-no-wildcards"]
        _run(cmd + [src], timeout, "unsquashfs")
        tar_path = os.path.join(work, "rootfs.tar")
        _tar_tree(root, tar_path, max_bytes, max_entries, links)
        repository, _, version = tag.partition(":")
        api = _api(engine_client)
        with open(tar_path, "rb") as data:
            out = _engine(lambda: api.import_image_from_data(data, repository=repository, tag=version or "latest",
                                                             changes=changes))
    image_id = _import_result(out)
    _verify_imported(api, image_id, meta, volumes_as_label=volume_root is not None)
    return image_id


def _volume_rel(volume: str) -> str:
    """A volume path relative to the root, normalised; GvmiError for the root itself or ``..``."""
    rel = posixpath.normpath("/" + volume).lstrip("/")
    if not rel or rel == "." or rel.startswith("..") or any(c in rel for c in "\n\r\x00"):
        raise GvmiError(f"volume {volume[:80]!r} is not a directory below the root")
    return rel


def _list_squashfs(unsquashfs: str, src: str, max_bytes: int, max_entries: int, timeout: float) -> list[str]:
    """Sum the listing (``unsquashfs -lln``) against the bounds; the special files' paths.

    Every entry's line starts with its mode, owner and size, so a crafted name can add
    lines to the listing but not hide a file's size."""
    special: list[str] = []
    total = entries = 0
    with _running([unsquashfs, "-lln", "-no-progress", src], "unsquashfs -lln (listing the filesystem)", timeout,
                  stdout=subprocess.PIPE, stdin=subprocess.DEVNULL) as proc:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "surrogateescape").rstrip("\n")
            kind = line[:1]
            if kind not in "-dlcbps" or not line:
                continue
            entries += 1
            if entries > max_entries:
                raise GvmiError(f"the filesystem has more than {max_entries} entries")
            if kind == "-":
                parts = line.split(None, 5)
                if len(parts) == 6 and parts[2].isdigit():
                    total += int(parts[2])
                    if total > max_bytes:
                        raise GvmiError(f"the filesystem holds more than {max_bytes} bytes")
            elif kind in "cbps":
                parts = line.split(None, 6 if kind in "cb" else 5)
                name = parts[-1].split("/", 1)
                if len(name) == 2 and name[1]:
                    special.append(name[1])
    return special


@contextlib.contextmanager
def _running(cmd: list[str], what: str, timeout: float, **popen: Any) -> Iterator[subprocess.Popen[bytes]]:
    """A tool's process for the caller to feed or read; then waited for (at most ``timeout``), killed
    if still running, and a non-zero exit is a GvmiError with the tail of its stderr."""
    with tempfile.TemporaryFile() as err, subprocess.Popen(cmd, stderr=err, **popen) as proc:
        try:
            yield proc
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise GvmiError(f"{what} ran over {timeout:g}s") from e
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc.returncode != 0:
            err.seek(0)
            raise GvmiError(f"{what} failed ({proc.returncode}): {_tail(err.read())}")


def _escapes(rel: str, target: str) -> bool:
    """Does a relative symlink at ``rel`` (from the root) climb above the root?"""
    if target.startswith("/"):
        return False  # resolved against the container's root, which it cannot leave
    return climbs_out(rel, target)


def _walk(root: str) -> Iterator[tuple[str, str]]:
    """(host path, archive name) of everything under ``root``, parents first; links not followed."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            yield full, os.path.relpath(full, root)


def _tar_tree(root: str, tar_path: str, max_bytes: int, max_entries: int,
              links: Mapping[str, str] | None = None) -> None:
    """The tree as a tar; each ``links`` path (relative) becomes a symlink to its absolute target and
    nothing below it is carried."""
    links = dict(links or {})
    total = entries = 0
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
        made: set[str] = set()
        for rel, target in sorted(links.items()):
            for parent in _parents(rel):  # the link's directory, if the image has none (once)
                if parent not in made and not os.path.lexists(os.path.join(root, parent)):
                    made.add(parent)
                    d = tarfile.TarInfo(parent)
                    d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o755, 0
                    tar.addfile(d)
            link = tarfile.TarInfo(rel)
            link.type, link.linkname, link.mode, link.mtime = tarfile.SYMTYPE, target, 0o777, 0
            tar.addfile(link)
        for full, rel in _walk(root):
            if any(rel == v or rel.startswith(v + "/") for v in links):
                continue
            st = os.lstat(full)
            entries += 1
            if entries > max_entries:
                raise GvmiError(f"the filesystem has more than {max_entries} entries")
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                continue  # devices, fifos, sockets: never carried into the image
            info = tar.gettarinfo(full, arcname=rel)
            info.uname = info.gname = ""
            info.mode &= ~(stat.S_ISUID | stat.S_ISGID)
            if info.issym() and _escapes(rel, info.linkname):
                raise GvmiError(f"symlink {rel!r} -> {info.linkname!r} points above the root")
            if info.isreg():
                total += info.size
                if total > max_bytes:
                    raise GvmiError(f"the filesystem holds more than {max_bytes} bytes")
                with open(full, "rb", opener=_nofollow) as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)


def _parents(rel: str) -> list[str]:
    parts = rel.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def _nofollow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW)


def _import_result(out: Any) -> str:
    """The image id from ``import_image_from_data``'s answer (JSON lines, the last ``status``)."""
    text = out.decode() if isinstance(out, bytes) else str(out)
    for line in reversed(text.strip().splitlines()):
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(msg, dict) and "error" in msg:
            raise GvmiError(f"docker import failed: {msg['error']}")
        status = msg.get("status") if isinstance(msg, dict) else None
        if isinstance(status, str) and status.startswith("sha256:"):
            return status
    raise GvmiError(f"docker import gave no image id: {text[-200:]!r}")


def _verify_imported(api: Any, image_id: str, meta: GvmiMetadata, *, volumes_as_label: bool = False) -> None:
    """The imported image's config must say what the .gvmi says; else remove it, GvmiError."""
    cfg = _engine(lambda: api.inspect_image(image_id)).get("Config") or {}
    wd = meta.working_dir
    env: dict[str, str] = {}
    for item in meta.env:  # a repeated name: ENV replaces the value where it first stood
        name, _, value = item.partition("=")
        env[name] = value
    want = {
        "Env": [f"{k}={v}" for k, v in env.items()],
        "Entrypoint": meta.entrypoint or None,
        "Cmd": meta.cmd or None,
        "WorkingDir": wd if not wd or wd.startswith("/") else "/" + wd,
        "Volumes": [] if volumes_as_label else sorted(meta.volumes),
        "Labels": {**meta.labels, LABEL_GOLEM_VOLUMES: json.dumps(sorted(meta.volumes))}
        if volumes_as_label and meta.volumes else meta.labels,
    }
    got = {
        "Env": cfg.get("Env") or [],
        "Entrypoint": cfg.get("Entrypoint") or None,
        "Cmd": cfg.get("Cmd") or None,
        "WorkingDir": cfg.get("WorkingDir") or "",
        "Volumes": sorted(cfg.get("Volumes") or {}),
        "Labels": cfg.get("Labels") or {},
    }
    wrong = [k for k in want if want[k] != got[k]]
    if wrong:
        try:
            api.remove_image(image_id, force=True)
        except Exception:  # noqa: BLE001 - best effort; the mismatch is the error to report
            pass
        raise GvmiError(f"docker import did not keep {', '.join(wrong)}: wanted {[want[k] for k in wrong]!r}, "
                        f"got {[got[k] for k in wrong]!r}")


# ---------------------------------------------------------------------------------------------
# Docker image -> .gvmi


def pack(
    docker_image: str,
    out_path: str | os.PathLike[str],
    engine_client: Any,
    *,
    compression: str = "lzo",
    container_labels: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> tuple[str, int]:
    """Build ``out_path`` from a local Docker image as gvmkit-build does; (sha3-224 hex, size).

    The image's filesystem is exported from a container made of it (never started; removed
    after, and labelled ``container_labels`` meanwhile), piped into ``mksquashfs -tar`` and
    the metadata appended. The file appears only when complete. Blocking."""
    if compression not in PACK_COMPRESSIONS:
        raise GvmiError(f"compression {compression!r} is not one of {', '.join(PACK_COMPRESSIONS)}")
    mksquashfs = _tool("mksquashfs")
    api = _api(engine_client)
    info = _engine(lambda: api.inspect_image(docker_image), image=docker_image)
    trailer = encode_trailer(config_from_image(info))
    out = Path(out_path)
    part = out.with_name(f".{out.name}.part-{os.getpid()}")
    cfg = info.get("Config") or {}
    # A container needs a command to exist; this one never runs.
    command = None if cfg.get("Cmd") or cfg.get("Entrypoint") else ["/nonexistent"]
    container = _engine(lambda: api.create_container(
        info["Id"], command=command, labels=dict(container_labels or {}), network_disabled=True,
    ))
    cid = container["Id"]
    try:
        _squash_export(api, cid, mksquashfs, compression, str(part), timeout)
        with open(part, "ab") as f:
            f.write(trailer)
            f.flush()
            os.fsync(f.fileno())
        digest = sha3_224_file(part)
        size = part.stat().st_size
        os.replace(part, out)
    finally:
        part.unlink(missing_ok=True)
        try:
            api.remove_container(cid, force=True, v=True)
        except Exception:  # noqa: BLE001 - never started; a failed removal must not hide the real error
            pass
    return digest, size


def _squash_export(api: Any, cid: str, mksquashfs: str, compression: str, dest: str, timeout: float) -> None:
    # -tar changes some defaults; -exports -no-tailends put back those of gvmkit-build's
    # directory source, and the root (absent from a docker export) gets the usual 0755 root:root.
    cmd = [mksquashfs, "-", dest, "-tar", "-noappend", "-comp", compression, "-quiet", "-no-progress",
           "-exports", "-no-tailends", "-root-mode", "0755", "-root-uid", "0", "-root-gid", "0"]
    if compression == "lz4":
        cmd.append("-Xhc")  # as gvmkit-build: plain lz4 gains nothing over lzo
    with _running(cmd, "mksquashfs", timeout, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL) as proc:
        assert proc.stdin is not None
        stdin = proc.stdin

        def feed() -> None:
            try:
                for chunk in api.export(cid, chunk_size=_CHUNK):
                    stdin.write(chunk)
            except BrokenPipeError:
                pass  # mksquashfs quit: its exit status and stderr say why

        try:
            _engine(feed)
        finally:
            try:
                stdin.close()
            except BrokenPipeError:
                pass


# ---------------------------------------------------------------------------------------------
# Tools and the engine


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise GvmiError(f"{name} not found: install squashfs-tools (apt-get install squashfs-tools)")
    return found


def _run(cmd: list[str], timeout: float, what: str) -> None:
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        raise GvmiError(f"{what} ran over {timeout:g}s") from e
    if proc.returncode != 0:
        raise GvmiError(f"{what} failed ({proc.returncode}): {_tail(proc.stderr)}")


def _tail(data: bytes, limit: int = 500) -> str:
    return data.decode("utf-8", "replace").strip()[-limit:]


def _api(engine_client: Any) -> Any:
    """The low-level API client of a ``docker.DockerClient`` (or the APIClient itself)."""
    return getattr(engine_client, "api", engine_client)


def _engine(fn: Any, *, image: str | None = None) -> Any:
    """Call docker-py, its errors mapped: no such image -> GvmiError, else RuntimeFailure."""
    import docker.errors
    import requests.exceptions

    try:
        return fn()
    except docker.errors.ImageNotFound as e:
        raise GvmiError(f"no such docker image: {image or e.explanation}") from e
    except docker.errors.APIError as e:
        if e.status_code == 400:
            raise GvmiError(f"the engine refused: {e.explanation}") from e
        raise RuntimeFailure(f"docker engine error: {e.explanation or e}", code="engine-error") from e
    except (docker.errors.DockerException, requests.exceptions.RequestException, ConnectionError) as e:
        raise RuntimeFailure(f"docker engine unreachable: {e}", code="engine-unavailable") from e
