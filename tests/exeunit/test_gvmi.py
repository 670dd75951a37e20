"""exeunit.gvmi: the .gvmi layout, its strict reader, and the round trip through a real Docker engine.

The layout tests build files by gvmkit-build's rules (crc32 LE, JSON, 8 decimal
digits after the squashfs), independently of our writer. With ``GVMKIT_BUILD``
set to gvmkit-build's binary (``pip download gvmkit-build==0.3.19 --no-deps``,
it is in the wheel's ``*.data/scripts``), or the binary on PATH, its own reader
checks a file we packed: it talks to a stub engine on a unix socket here, never
to the real one nor to any registry.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import shutil
import socketserver
import stat
import struct
import subprocess
import tarfile
import threading
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exeunit.errors import ExeUnitError, ImageError
from exeunit.gvmi import (
    MAX_METADATA,
    GvmiError,
    GvmiMetadata,
    _escapes,
    _tar_tree,
    config_from_image,
    docker_changes,
    encode_trailer,
    gvmi_to_docker,
    pack,
    read_metadata,
    sha3_224_file,
)

SESSION_LABELS = {"network.yagna.test-session": os.environ.get("YAGNA_TEST_SESSION", "none")}
HAVE_SQUASHFS = shutil.which("mksquashfs") is not None and shutil.which("unsquashfs") is not None
needs_squashfs = pytest.mark.skipif(not HAVE_SQUASHFS, reason="squashfs-tools not installed")

CONFIG = {
    "Hostname": "", "Domainname": "", "Env": ["PATH=/bin", "GREETING=hello world"],
    "Cmd": ["-c", "echo hi"], "Image": "ab" * 32, "Volumes": {"/golem/output": {}, "/golem/input": {}},
    "WorkingDir": "/golem/work", "Entrypoint": ["/bin/sh"], "Labels": {"org.example.v": "1"},
}
# What gvmkit-build 0.3.19 appended for local/busybox:1 (its ContainerConfig of a container
# made of the image: Hostname is that container's, User dropped, Labels empty).
GVMKIT_JSON = (b'{"Hostname":"1b1352953af2","Domainname":"","AttachStdin":false,"AttachStdout":false,'
               b'"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":["PATH=/bin"],'
               b'"Cmd":["/bin/sh"],"Image":"3f85bd95b99dfbde7a08e0e64eb2657032944617eac046b42e66585b9e73ef5e",'
               b'"WorkingDir":"/work","Labels":{}}')


def _superblock(bytes_used: int, *, comp: int = 3, block_log: int = 17, major: int = 4,
                magic: bytes = b"hsqs") -> bytes:
    sb = bytearray(96)
    sb[0:4] = magic
    struct.pack_into("<I", sb, 12, 1 << block_log)
    struct.pack_into("<6H", sb, 20, comp, block_log, 0, 1, major, 0)
    struct.pack_into("<Q", sb, 40, bytes_used)
    return bytes(sb)


def _fs(size: int = 4096, **kw: Any) -> bytes:
    """A stand-in squashfs region: a plausible superblock, padded to ``size``."""
    return _superblock(kw.pop("bytes_used", size - 100), **kw).ljust(size, b"\0")


def _gvmkit_trailer(meta: bytes) -> bytes:
    """The trailer by gvmkit-build's rules, written out here on its own."""
    return struct.pack("<I", zlib.crc32(meta)) + meta + b"%08d" % len(meta)


def _write(path: Path, *parts: bytes) -> Path:
    path.write_bytes(b"".join(parts))
    return path


# ---------------------------------------------------------------------------------------------
# Layout and reader


def test_metadata_round_trip(tmp_path: Path) -> None:
    f = _write(tmp_path / "a.gvmi", _fs(8192), encode_trailer(CONFIG))
    m = read_metadata(f)
    assert m.env == CONFIG["Env"]
    assert (m.entrypoint, m.cmd, m.working_dir) == (["/bin/sh"], ["-c", "echo hi"], "/golem/work")
    assert m.volumes == ["/golem/input", "/golem/output"]
    assert m.labels == {"org.example.v": "1"}
    assert (m.squashfs_offset, m.squashfs_length, m.compression) == (0, 8192, "lzo")
    assert m.image == "ab" * 32 and m.config == CONFIG


def test_our_trailer_is_gvmkit_layout_byte_for_byte() -> None:
    meta = json.dumps(CONFIG, separators=(",", ":")).encode()
    assert encode_trailer(CONFIG) == _gvmkit_trailer(meta)
    assert encode_trailer(CONFIG)[-8:] == b"%08d" % len(meta)


def test_reads_what_gvmkit_build_wrote(tmp_path: Path) -> None:
    m = read_metadata(_write(tmp_path / "g.gvmi", _fs(), _gvmkit_trailer(GVMKIT_JSON)))
    assert (m.env, m.cmd, m.entrypoint, m.working_dir, m.labels) == (["PATH=/bin"], ["/bin/sh"], None, "/work", {})
    assert m.image == "3f85bd95b99dfbde7a08e0e64eb2657032944617eac046b42e66585b9e73ef5e"


def test_config_from_image_is_gvmkit_metadata() -> None:
    inspect = {"Id": "sha256:" + "cd" * 32, "Config": {
        "Hostname": "", "Domainname": "x", "User": "1000:1000", "Env": ["A=1"], "Cmd": None, "Image": "",
        "Volumes": None, "WorkingDir": "/w", "Entrypoint": ["/e"], "OnBuild": None, "Labels": {"k": "v"},
        "NotInBollard": 1}}
    cfg = config_from_image(inspect)
    assert list(cfg) == ["Hostname", "Domainname", "Env", "Image", "WorkingDir", "Entrypoint", "Labels"]
    assert cfg["Domainname"] == "" and cfg["Image"] == "cd" * 32 and "User" not in cfg


def _variants(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    good = _fs() + encode_trailer(CONFIG)
    meta = json.dumps(CONFIG).encode()
    yield "empty", b""
    yield "tiny", b"0" * 40
    yield "random", os.urandom(9000)
    yield "last byte cut", good[:-1]
    yield "tail cut", good[:-20]
    yield "head cut", good[3000:]
    yield "crc flipped", good[: 4096] + bytes([good[4096] ^ 1]) + good[4097:]
    yield "length not digits", good[:-8] + b"0000 12a"
    yield "length signed", good[:-8] + b"+" + good[-7:]
    yield "length over 1 MiB", good[:-8] + b"%08d" % (MAX_METADATA + 1)
    yield "length past start", _fs(100, bytes_used=96) + _gvmkit_trailer(meta)[:-8] + b"00090000"
    yield "json array", _fs() + _gvmkit_trailer(b"[]")
    yield "json broken", _fs() + _gvmkit_trailer(b'{"Env": [')
    yield "json NaN", _fs() + _gvmkit_trailer(b'{"StopTimeout": NaN}')
    yield "json duplicate key", _fs() + _gvmkit_trailer(b'{"Cmd": ["a"], "Cmd": ["b"]}')
    yield "json deep", _fs() + _gvmkit_trailer(b"[" * 100_000 + b"]" * 100_000)
    yield "not utf-8", _fs() + _gvmkit_trailer(b'{"WorkingDir": "\xff"}')
    yield "env not list", _fs() + _gvmkit_trailer(b'{"Env": "A=1"}')
    yield "env no =", _fs() + _gvmkit_trailer(b'{"Env": ["A"]}')
    yield "cmd ints", _fs() + _gvmkit_trailer(b'{"Cmd": [1]}')
    yield "entrypoint string", _fs() + _gvmkit_trailer(b'{"Entrypoint": "/bin/sh"}')
    yield "labels not str", _fs() + _gvmkit_trailer(b'{"Labels": {"a": 1}}')
    yield "volumes list", _fs() + _gvmkit_trailer(b'{"Volumes": ["/a"]}')
    yield "workdir int", _fs() + _gvmkit_trailer(b'{"WorkingDir": 3}')
    yield "bad magic", _fs(magic=b"sqsh") + encode_trailer(CONFIG)
    yield "squashfs v3", _fs(major=3) + encode_trailer(CONFIG)
    yield "unknown compressor", _fs(comp=9) + encode_trailer(CONFIG)
    yield "bad block size", _fs(block_log=30) + encode_trailer(CONFIG)
    yield "squashfs longer than file", _fs(bytes_used=5000) + encode_trailer(CONFIG)


def test_truncated_and_garbage_files_give_gvmi_error(tmp_path: Path) -> None:
    seen = []
    for name, data in _variants(tmp_path):
        f = _write(tmp_path / "x.gvmi", data)
        with pytest.raises(GvmiError) as info:
            read_metadata(f)
        seen.append(name)
        assert str(info.value), name
    assert len(seen) == 29
    with pytest.raises(GvmiError, match="cannot read"):
        read_metadata(tmp_path / "missing.gvmi")


def test_gvmi_error_is_in_the_exeunit_tree() -> None:
    assert issubclass(GvmiError, ImageError) and issubclass(GvmiError, ExeUnitError)
    assert GvmiError("x").code == "bad-gvmi"


def test_sha3_224_file(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    f = _write(tmp_path / "d", data)
    assert sha3_224_file(f) == hashlib.sha3_224(data).hexdigest()


def test_changes_refuse_what_docker_import_cannot_carry() -> None:
    with pytest.raises(GvmiError, match="line break"):
        docker_changes(GvmiMetadata(env=["A=1\n2"]))
    with pytest.raises(GvmiError, match="line break"):
        docker_changes(GvmiMetadata(labels={"k": "a\rb"}))
    assert docker_changes(GvmiMetadata(env=['A=$x "q"'])) == ['ENV "A"="\\$x \\"q\\""']


@pytest.mark.parametrize(("rel", "target", "escapes"), [
    ("bin/sh", "busybox", False),
    ("usr/bin", "../bin", False),
    ("a/b/c", "../../x", False),
    ("a/b/c", "../../../x", True),
    ("x", "..", True),
    ("x", "/etc/passwd", False),  # absolute: the container's root, which it cannot leave
    ("a/l", "b/../../..", True),
    ("a/l", "./../a", False),
])
def test_symlink_escape_rule(rel: str, target: str, escapes: bool) -> None:
    assert _escapes(rel, target) is escapes


def test_tar_drops_specials_and_setuid_and_refuses_escapes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "su").write_bytes(b"x")
    (root / "bin" / "su").chmod(0o4755)
    (root / "bin" / "sh").symlink_to("su")
    (root / "abs").symlink_to("/etc/passwd")
    os.link(root / "bin" / "su", root / "hard")
    os.mkfifo(root / "fifo")
    out = tmp_path / "t.tar"
    _tar_tree(str(root), str(out), 1 << 20, 100)
    with tarfile.open(out) as tf:
        members = {m.name: m for m in tf.getmembers()}
    assert set(members) == {"bin", "bin/su", "bin/sh", "abs", "hard"}
    su = members["bin/su"] if members["bin/su"].isreg() else members["hard"]
    assert su.isreg() and stat.S_IMODE(su.mode) == 0o755
    assert members["abs"].linkname == "/etc/passwd"
    with pytest.raises(GvmiError, match="more than 0 bytes"):
        _tar_tree(str(root), str(out), 0, 100)
    with pytest.raises(GvmiError, match="more than 3 entries"):
        _tar_tree(str(root), str(out), 1 << 20, 3)
    (root / "bin" / "evil").symlink_to("../../outside")
    with pytest.raises(GvmiError, match="above the root"):
        _tar_tree(str(root), str(out), 1 << 20, 100)


# ---------------------------------------------------------------------------------------------
# With the Docker engine


@pytest.fixture(scope="module")
def packed(engine: Any, test_image: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, int]:
    if not HAVE_SQUASHFS:
        pytest.skip("squashfs-tools not installed")
    out = tmp_path_factory.mktemp("gvmi") / "busybox.gvmi"
    digest, size = pack(test_image, out, engine, container_labels=SESSION_LABELS)
    return out, digest, size


@pytest.fixture
def imported(engine: Any) -> Iterator[list[str]]:
    """Image ids a test imported: removed at its end."""
    ids: list[str] = []
    yield ids
    for image_id in ids:
        engine.api.remove_image(image_id, force=True)


def _tag() -> str:
    return f"local/gvmi-test-{uuid.uuid4().hex[:10]}:1"


def _run(engine: Any, image_id: str, argv: list[str]) -> bytes:
    out: bytes = engine.containers.run(image_id, argv, remove=True, labels=SESSION_LABELS, network_disabled=True)
    return out


def test_pack_then_back_to_docker_runs_echo(engine: Any, test_image: str, packed: tuple[Path, str, int],
                                            imported: list[str]) -> None:
    path, digest, size = packed
    assert size == path.stat().st_size and digest == sha3_224_file(path)
    m = read_metadata(path)
    assert m.compression == "lzo" and m.image == test_image.removeprefix("sha256:")
    assert (m.env, m.cmd, m.working_dir) == (["PATH=/bin"], ["/bin/sh"], "/work")
    image_id = gvmi_to_docker(path, engine, _tag())
    imported.append(image_id)
    assert _run(engine, image_id, ["echo", "hi"]) == b"hi\n"
    # The same tree: busybox's applet links and /work are there.
    assert _run(engine, image_id, ["sh", "-c", "readlink /bin/sh; test -d /work && echo ok"]) == b"busybox\nok\n"


def test_tricky_metadata_survives_docker_import(engine: Any, packed: tuple[Path, str, int], tmp_path: Path,
                                                imported: list[str]) -> None:
    path, _, _ = packed
    fs = path.read_bytes()[: read_metadata(path).squashfs_length]
    tricky = {
        "Env": ["PATH=/bin", "A=with space", 'B=quo"te', "C=$HOME and ${X}", "D=back\\slash", "E=", "F=a=b",
                "G='single'", "H=ünï"],
        "Entrypoint": ["/bin/sh", "-c"], "Cmd": ['echo "$0" $HOME', "z"],
        "WorkingDir": "/my dir/$x", "Volumes": {"/v$x": {}, "/a b": {}, "/q\"q'": {}},
        "Labels": {"my.label $x": 'v"al\\ue $y', "empty": ""},
    }
    f = _write(tmp_path / "tricky.gvmi", fs, encode_trailer(tricky))
    image_id = gvmi_to_docker(f, engine, _tag())  # checks the imported config itself
    imported.append(image_id)
    cfg = engine.api.inspect_image(image_id)["Config"]
    assert cfg["Env"] == tricky["Env"] and cfg["Cmd"] == tricky["Cmd"] and cfg["WorkingDir"] == "/my dir/$x"
    assert sorted(cfg["Volumes"]) == sorted(tricky["Volumes"]) and cfg["Labels"] == tricky["Labels"]


@needs_squashfs
def test_hostile_filesystem_is_refused_or_cleaned(engine: Any, tmp_path: Path, imported: list[str]) -> None:
    import docker.errors

    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    (src / "dev").mkdir()
    (src / "bin" / "x").write_bytes(b"data")
    sq = tmp_path / "fs.sqfs"
    base = ["mksquashfs", str(src), str(sq), "-noappend", "-quiet", "-no-progress", "-comp", "lzo"]
    # A device node and a setuid file: the device is never extracted, setuid is cleared.
    subprocess.run(base + ["-p", "dev/kmem c 640 0 0 1 2", "-p", "bin/su f 4755 0 0 echo suid"], check=True,
                   capture_output=True)
    f = _write(tmp_path / "ok.gvmi", sq.read_bytes(), encode_trailer({"Cmd": ["/bin/x"]}))
    image_id = gvmi_to_docker(f, engine, _tag())
    imported.append(image_id)
    cid = engine.api.create_container(image_id, labels=SESSION_LABELS)["Id"]
    try:
        bits, _ = engine.api.get_archive(cid, "/bin")
        with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as tf:
            names = {m.name: m for m in tf.getmembers()}
        assert stat.S_IMODE(names["bin/su"].mode) == 0o755
        with pytest.raises(docker.errors.NotFound):
            engine.api.get_archive(cid, "/dev/kmem")
    finally:
        engine.api.remove_container(cid, force=True)

    # A relative symlink above the root: refused, nothing imported.
    (src / "bin" / "evil").symlink_to("../../../etc/shadow")
    subprocess.run(base, check=True, capture_output=True)
    f = _write(tmp_path / "evil.gvmi", sq.read_bytes(), encode_trailer({}))
    before = {i["Id"] for i in engine.api.images(all=True)}
    with pytest.raises(GvmiError, match="above the root"):
        gvmi_to_docker(f, engine, _tag())
    assert {i["Id"] for i in engine.api.images(all=True)} <= before


def test_bounds_are_checked_before_extraction(engine: Any, packed: tuple[Path, str, int]) -> None:
    path, _, _ = packed
    with pytest.raises(GvmiError, match="more than 100000 bytes"):
        gvmi_to_docker(path, engine, _tag(), max_bytes=100_000)
    with pytest.raises(GvmiError, match="more than 50 entries"):
        gvmi_to_docker(path, engine, _tag(), max_entries=50)
    with pytest.raises(GvmiError, match="repository"):
        gvmi_to_docker(path, engine, "Bad Tag")


def test_pack_of_a_missing_image(engine: Any, tmp_path: Path) -> None:
    with pytest.raises(GvmiError, match="no such docker image"):
        pack(f"local/no-such-image-{uuid.uuid4().hex[:8]}:1", tmp_path / "x.gvmi", engine)
    assert not (tmp_path / "x.gvmi").exists()
    with pytest.raises(GvmiError, match="compression"):
        pack("local/busybox:1", tmp_path / "x.gvmi", engine, compression="bzip9")


# ---------------------------------------------------------------------------------------------
# gvmkit-build's own reader, against a stub engine


def _gvmkit_binary() -> str | None:
    pinned = Path(__file__).resolve().parents[2] / ".venv-golem" / "bin" / "gvmkit-build"  # make setup
    return os.environ.get("GVMKIT_BUILD") or (str(pinned) if pinned.exists() else None) or shutil.which("gvmkit-build")


class _StubEngine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Answers ``/version`` and any ``/images/<name>/json`` with ``image_id``; everything else 500."""

    daemon_threads = True

    def __init__(self, path: str, image_id: str) -> None:
        self.image_id = image_id
        self.requests: list[str] = []
        super().__init__(path, _StubHandler)


class _StubHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _StubEngine

    def address_string(self) -> str:
        return "unix"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        path = self.path.split("?")[0]
        self.server.requests.append(f"{self.command} {path}")
        if self.command == "GET" and path.endswith("/version"):
            body: dict[str, Any] | None = {"Version": "stub", "ApiVersion": "1.41"}
        elif self.command == "GET" and "/images/" in path and path.endswith("/json"):
            body = {"Id": self.server.image_id, "Size": 1000}
        else:
            body = None
        data = json.dumps(body or {"message": "stub engine"}).encode()
        self.send_response(200 if body else 500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _answer


def test_gvmkit_build_reads_what_we_packed(packed: tuple[Path, str, int], test_image: str, tmp_path: Path) -> None:
    binary = _gvmkit_binary()
    if binary is None:
        pytest.skip("gvmkit-build binary not available (set GVMKIT_BUILD)")
    path, digest, _ = packed
    sock = tmp_path / "docker.sock"
    server = _StubEngine(str(sock), test_image)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "DOCKER_HOST": f"unix://{sock}",
           "SQUASHFS_IMAGE_NAME": "local/stub-only:1", "RUST_LOG": "error"}

    def run(file: Path) -> str:
        proc = subprocess.run([binary, "local/busybox:1", "-o", str(file), "--hide-progress"], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=15)
        return proc.stdout + proc.stderr

    try:
        ours = tmp_path / "ours.gvmi"
        shutil.copyfile(path, ours)
        out = run(ours)
        assert "GVMI image already exists" in out, out  # its reader took our trailer, crc and JSON
        assert f"image link (for use in SDK): {digest}" in out, out  # and its sha3-224 is ours
        assert ours.read_bytes() == path.read_bytes()

        bad = tmp_path / "bad.gvmi"
        data = bytearray(path.read_bytes())
        data[-20] ^= 1  # inside the JSON: its crc no longer matches
        bad.write_bytes(bytes(data))
        assert "Failed to read metadata from GVMI image" in run(bad)
        assert not any(r.startswith(("POST /images/create", "POST /build")) for r in server.requests)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# ---------------------------------------------------------------------------------------------
# yagna image pack


def test_cli_image_pack(engine: Any, test_image: str, tmp_path: Path) -> None:
    if not HAVE_SQUASHFS:
        pytest.skip("squashfs-tools not installed")
    from click.testing import CliRunner

    from yagna.cli.image_cmd import image

    out = tmp_path / "bb.gvmi"
    result = CliRunner().invoke(image, ["pack", test_image, "-o", str(out), "--json", "--url", "http://h/bb.gvmi"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    digest = sha3_224_file(out)
    assert data == {"path": str(out), "size": out.stat().st_size, "sha3_224": digest,
                    "package": f"hash:sha3:{digest}:http://h/bb.gvmi"}
    result = CliRunner().invoke(image, ["pack", test_image, "-o", str(out)])
    assert result.exit_code == 0 and f"hash:sha3:{sha3_224_file(out)}" in result.output


@needs_squashfs
def test_corrupt_squashfs_behind_a_good_superblock(tmp_path: Path) -> None:
    f = _write(tmp_path / "c.gvmi", _fs(65536, bytes_used=60000)[:96] + os.urandom(65440), encode_trailer({}))
    with pytest.raises(GvmiError, match="unsquashfs"):
        gvmi_to_docker(f, None, "local/never:1")  # fails before the engine is needed
