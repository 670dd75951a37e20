"""The blob stream (``/yagna/blob/2.0.0``): one stream per transfer, its checks and its bounds (issue 12)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from exeunit.errors import TransferRefused
from yagna.activity_service import blobs
from yagna.activity_service.blobs import BlobServer, fetch_blob
from yagna.activity_service.protocol import BLOB_PER_PEER, BLOB_STREAM, BLOB_TOTAL
from yagna.core.wire import encode
from yagna.net.bulk import ByteStream, bulk_for
from yagna.net.errors import RequestTimeout
from yagna.net.framing import encode_frame
from yagna.net.memory import MemoryHub


@asynccontextmanager
async def nodes() -> AsyncIterator[tuple[Any, Any, BlobServer]]:
    """(client rr, server rr, the server's BlobServer), running on the in-memory twin."""
    hub = MemoryHub()
    a, b = hub.node(), hub.node()
    server = BlobServer(b.rr)
    async with trio.open_nursery() as nursery:
        await nursery.start(bulk_for(a.rr).run)
        await nursery.start(server.run)
        yield a, b, server
        nursery.cancel_scope.cancel()


async def test_a_file_arrives_whole_and_hashed(tmp_path: Path) -> None:
    data = os.urandom(5 * 2**20 + 17)
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.write_bytes(data)
    async with nodes() as (a, b, server):
        digest = hashlib.sha256(data).hexdigest()
        server.offer_file(a.node_id, f"file:{digest}", src)
        got = await fetch_blob(a.rr, b.node_id, f"file:{digest}", dest, max_size=len(data), expected_size=len(data))
        assert got == (digest, len(data)) and dest.read_bytes() == data
        # only to the peer it was offered to
        server.offer_file("someone-else", "file:" + "cd" * 32, src)
        with pytest.raises(TransferRefused) as e:
            await fetch_blob(a.rr, b.node_id, "file:" + "cd" * 32, dest, max_size=len(data))
        assert e.value.code == "not-found" and not dest.exists()


async def test_an_oversize_blob_is_refused_before_its_data(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.write_bytes(b"x" * (2 * 2**20))
    async with nodes() as (a, b, server):
        server.offer_file(a.node_id, "file:" + "ab" * 32, src)
        for kw, code in (({"max_size": 2**20}, "too-large"), ({"max_size": 4 * 2**20, "expected_size": 2**20}, "too-large"),
                         ({"max_size": 4 * 2**20, "expected_size": 3 * 2**20}, "hash-mismatch")):
            with pytest.raises(TransferRefused) as e:
                await fetch_blob(a.rr, b.node_id, "file:" + "ab" * 32, dest, **kw)
            assert e.value.code == code and not dest.exists()


@pytest.mark.parametrize("answer", ["short", "long", "stall"])
async def test_a_lying_or_stalling_server_fails_the_fetch_with_bounded_memory(tmp_path: Path, answer: str,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blobs, "STALL_S", 0.5)
    dest = tmp_path / "dest"
    async with nodes() as (a, b, _):
        async def rogue(stream: ByteStream) -> None:
            while await stream.receive_some(4096):
                pass
            await stream.send_all(encode_frame(encode({"ok": {"size": 3 * 2**20}})))
            await stream.send_all(b"y" * (2**20 if answer != "long" else 3 * 2**20 + 1))
            if answer == "stall":
                await trio.sleep_forever()
            await stream.send_eof()

        bulk_for(b.rr).set_handler(BLOB_STREAM, rogue, per_peer=BLOB_PER_PEER, total=BLOB_TOTAL)
        expected: type[Exception] = RequestTimeout if answer == "stall" else TransferRefused
        with trio.fail_after(10), pytest.raises(expected) as e:
            await fetch_blob(a.rr, b.node_id, "file:" + "ab" * 32, dest, max_size=4 * 2**20)
        if answer != "stall":
            assert e.value.code == {"short": "hash-mismatch", "long": "too-large"}[answer]  # type: ignore[attr-defined]
        assert not dest.exists()


async def test_a_stream_that_never_asks_is_dropped_and_the_peer_bound_holds(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blobs, "HEADER_TIMEOUT_S", 0.3)
    async with nodes() as (a, b, _):
        bulk = bulk_for(a.rr)
        silent = [await bulk.open(b.node_id, BLOB_STREAM) for _ in range(BLOB_PER_PEER)]
        extra = await bulk.open(b.node_id, BLOB_STREAM)
        with trio.fail_after(5):
            from yagna.net.bulk import StreamFailed

            with pytest.raises(StreamFailed):  # over the per-peer bound: reset at once
                await extra.receive_some(10)
            for s in silent:  # no request within the header timeout: reset
                with pytest.raises(StreamFailed):
                    await s.receive_some(10)


async def test_a_staged_file_goes_after_its_full_read_only(tmp_path: Path) -> None:
    src, dest = tmp_path / "staged", tmp_path / "dest"
    data = os.urandom(3 * 2**20)
    src.write_bytes(data)
    gone: list[Path] = []

    async def on_gone(path: Path) -> None:
        gone.append(path)

    async with nodes() as (a, b, server):
        blob_id = f"file:{hashlib.sha256(data).hexdigest()}"
        await server.offer_staged(a.node_id, blob_id, src, owner="act", on_gone=on_gone)
        with pytest.raises(TransferRefused):  # refused after the header (over the limit): not a full read
            await fetch_blob(a.rr, b.node_id, blob_id, dest, max_size=2**20)
        assert gone == [] and len(server) == 1
        await fetch_blob(a.rr, b.node_id, blob_id, dest, max_size=len(data))
        with trio.fail_after(5):
            while not gone:
                await trio.sleep(0.01)
        assert gone == [src] and len(server) == 0


async def test_the_writer_gets_at_most_a_few_mib_at_once_however_slow_it_is(tmp_path: Path) -> None:
    """A slow writer (a busy engine behind an upload) lets the queue fill; what it is handed per call stays
    bounded (BATCH_MAX), so what an upload queues stays bounded too (it once got up to 16 MiB a call)."""
    import time as _time

    from yagna.activity_service.blobs import BATCH_MAX, PIECE, open_blob

    data = os.urandom(24 * 2**20)
    src = tmp_path / "src"
    src.write_bytes(data)
    sizes: list[int] = []

    def slow_write(pieces: list[bytes]) -> None:
        sizes.append(sum(map(len, pieces)))
        _time.sleep(0.05)

    async with nodes() as (a, b, server):
        digest = hashlib.sha256(data).hexdigest()
        server.offer_file(a.node_id, f"file:{digest}", src)
        async with open_blob(a.rr, b.node_id, f"file:{digest}", max_size=len(data)) as blob:
            assert await blob.copy(slow_write) == digest
    assert sum(sizes) == len(data)
    assert max(sizes) <= BATCH_MAX + PIECE, sizes
