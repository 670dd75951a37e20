"""Streaming a file into a container (``Runtime.upload``) and the copy-out's own tar reader (issue 12)."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest
import trio

from exeunit.docker.files import _Chunks, _first_member
from exeunit.errors import TransferRefused

pytestmark = pytest.mark.usefixtures("test_image")


async def sh(rt, cid: str, script: str):  # type: ignore[no-untyped-def]
    return await rt.exec(cid, ["sh", "-c", script], env={}, workdir="/work", timeout_s=20)


async def _feed(upload, data: bytes, piece: int = 300_000) -> None:  # type: ignore[no-untyped-def]
    for off in range(0, len(data), piece):
        await trio.to_thread.run_sync(upload.write, [data[off:off + piece]])


async def test_an_upload_commits_what_arrived(docker_runtime, make_container) -> None:
    cid = await make_container()
    for size in (0, 1, 3 * 2**20 + 17):
        data = os.urandom(size)
        async with docker_runtime.upload(cid, "/work/in/deep/x.bin", size) as upload:
            await _feed(upload, data)
        r = await sh(docker_runtime, cid, "sha256sum /work/in/deep/x.bin | cut -d' ' -f1; touch /work/in/deep/ok && echo ok")
        assert r.stdout.decode().split() == [hashlib.sha256(data).hexdigest(), "ok"]


async def test_an_aborted_upload_changes_nothing_it_is_not_told_to(docker_runtime, make_container) -> None:
    """The caller's error (a wrong sha256) cuts the archive before its last byte: the engine refuses it.
    On the work volume what was extracted of it stays (the provider removes it, see provider.py), the
    file never has the full, unverified content."""
    cid = await make_container()
    data = os.urandom(2 * 2**20)
    with pytest.raises(ValueError, match="wrong sha256"):
        async with docker_runtime.upload(cid, "/work/in/x.bin", len(data)) as upload:
            await _feed(upload, data)
            raise ValueError("wrong sha256")
    r = await sh(docker_runtime, cid, "wc -c < /work/in/x.bin 2>/dev/null || echo none")
    got = r.stdout.decode().strip()
    assert got == "none" or int(got) < len(data)


async def test_an_upload_refuses_more_bytes_than_announced_and_bad_paths(docker_runtime, make_container) -> None:
    cid = await make_container()
    with pytest.raises(TransferRefused) as e:
        async with docker_runtime.upload(cid, "/work/y.bin", 10) as upload:
            await trio.to_thread.run_sync(upload.write, [b"x" * 11])
    assert e.value.code == "too-large"
    for bad in ("/etc/passwd", "/work/../etc/passwd", "/work"):
        with pytest.raises(TransferRefused) as e:
            async with docker_runtime.upload(cid, bad, 1):
                pass
        assert e.value.code == "bad-path"


async def test_an_upload_over_the_work_size_is_refused(docker_runtime, make_container) -> None:
    from exeunit.runtime import ContainerLimits

    cid = await make_container(ContainerLimits(cpu_threads=1, memory_bytes=64 * 2**20, storage_bytes=2**20, pids=64))
    with pytest.raises(TransferRefused) as e:
        async with docker_runtime.upload(cid, "/work/big.bin", 2 * 2**20) as upload:
            await _feed(upload, b"\1" * (2 * 2**20))
    assert e.value.code == "too-large"


async def test_get_file_hashes_while_it_copies(docker_runtime, make_container, tmp_path: Path) -> None:
    cid = await make_container()
    data = os.urandom(5 * 2**20 + 3)
    async with docker_runtime.upload(cid, "/work/out/a-rather-long-name-" + "n" * 120 + ".bin", len(data)) as upload:
        await _feed(upload, data)
    digest = hashlib.sha256()
    dest = tmp_path / "got.bin"
    n = await docker_runtime.get_file(cid, "/work/out/a-rather-long-name-" + "n" * 120 + ".bin", str(dest),
                                      max_bytes=len(data), digest=digest)
    assert n == len(data) and dest.read_bytes() == data and digest.hexdigest() == hashlib.sha256(data).hexdigest()


def _tar(*members: tuple[tarfile.TarInfo, bytes], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _file(name: str, data: bytes, **kw: object) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in kw.items():
        setattr(info, k, v)
    return info, data


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
@pytest.mark.parametrize("name", ["x.bin", "d/" + "long" * 60 + ".bin", "ünï.bin"])
def test_the_tar_reader_finds_the_first_member_in_any_chunking(fmt: int, name: str) -> None:
    if fmt == tarfile.USTAR_FORMAT and (len(name) > 100 or not name.isascii()):
        return
    data = os.urandom(70_000)
    raw = _tar(_file(name, data, pax_headers={"comment": "x" * 600} if fmt == tarfile.PAX_FORMAT else {}), fmt=fmt)
    for size in (1, 511, 512, 4096, 1 << 20):
        reader = _Chunks(raw[i:i + size] for i in range(0, len(raw), size))
        n = _first_member(reader, "/work/x")
        assert n == len(data)
        assert b"".join(reader.take(n)) == data


def test_the_tar_reader_refuses_what_is_not_a_regular_file() -> None:
    link = tarfile.TarInfo("l")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    d = tarfile.TarInfo("d")
    d.type = tarfile.DIRTYPE
    for raw in (_tar((link, b"")), _tar((d, b"")), b"", b"\0" * 1024, b"garbage" * 100):
        with pytest.raises(TransferRefused) as e:
            _first_member(_Chunks([raw]), "/work/x")
        assert e.value.code == "bad-path"


def test_an_upload_holds_a_bounded_queue_and_gives_up_on_a_stalled_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nobody reads the body (a stuck engine): the writer blocks after UPLOAD_QUEUE writes and, after
    UPLOAD_STALL_S without progress, aborts instead of holding its memory forever."""
    import time as _time

    from exeunit.docker import files

    monkeypatch.setattr(files, "UPLOAD_STALL_S", 0.3)
    upload = files.Upload([b"h" * 512], 100 * 2**20)
    t0 = _time.monotonic()
    accepted = 0
    with pytest.raises(files._Aborted):
        for _ in range(100):
            upload.write([b"x" * 2**20])
            accepted += 1
    assert accepted == files.UPLOAD_QUEUE and _time.monotonic() - t0 < 2
    # and an engine that reads a body whose writer went away stops too
    body = iter(upload)
    assert next(body) == b"h" * 512
    with pytest.raises(files._Aborted):
        list(body)
