"""Bulk transfers over a relayed connection: the relay and its limit are named (issue 13)."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from exeunit.errors import TransferRefused
from yagna.activity_service import blobs
from yagna.core import wire
from yagna.net import bulk
from yagna.net.bulk import RELAYED_STREAM_LIMIT, StreamFailed, relay_note, stream_relay
from yagna.net.framing import encode_frame

RELAY = "12D3KooWAYL8Ey3tgtNKNn4bGRuc6LLJEDFdWhGbaDPhKQQ1xpMh"
PEER = "12D3KooWS1WHBWQ7aq2wsS4ZtBFGdcvm9eXW6rnR2KuoG5WCpE4y"


class _Muxed:
    peer_id = PEER


class _Conn:
    def __init__(self, muxed: object, *addrs: str) -> None:
        self.muxed_conn, self.addrs = muxed, addrs

    def get_transport_addresses(self) -> list[str]:
        return list(self.addrs)


class _Host:
    def __init__(self, *conns: _Conn) -> None:
        self.connections = {PEER: list(conns)}

    def get_network(self) -> _Host:
        return self


class _Raw:
    def __init__(self, muxed: object) -> None:
        self.muxed_conn = muxed


def test_stream_relay_finds_the_relay_of_the_streams_own_connection() -> None:
    relayed, direct = _Muxed(), _Muxed()
    host = _Host(_Conn(direct, "/ip4/198.18.0.4/tcp/4001"),
                 _Conn(relayed, f"/p2p/{RELAY}/p2p-circuit/p2p/{PEER}"))
    assert stream_relay(host, _Raw(relayed)) == RELAY
    assert stream_relay(host, _Raw(direct)) is None
    assert stream_relay(host, object()) is None  # no connection: treated as direct


def test_relay_note_names_the_relay_the_bytes_and_the_limit() -> None:
    note = relay_note(RELAY, 268_435_456)
    assert RELAY in note and "268435456 bytes" in note and "256 MiB" in note and "600 s" in note
    assert relay_note(None, 5) == ""


async def test_a_reset_relayed_stream_fails_with_the_relay_named() -> None:
    from libp2p.network.stream.exceptions import StreamReset

    class _Reset:
        async def write(self, data: bytes) -> None:
            raise StreamReset("reset")

    stream = bulk._Libp2pStream(_Reset(), PEER, RELAY)
    with pytest.raises(StreamFailed, match=f"through relay {RELAY} after 0 bytes"):
        await stream.send_all(b"x")


class _HeaderStream:
    """Answers a blob request with its size header, like a provider's blob server."""

    def __init__(self, size: int, relay: str | None) -> None:
        self.peer, self.relay = PEER, relay
        self._reply = encode_frame(wire.encode({"ok": {"size": size}}))
        self.reset_called = False

    async def send_all(self, data: bytes) -> None:
        pass

    async def send_eof(self) -> None:
        pass

    async def receive_some(self, max_bytes: int) -> bytes:
        out, self._reply = self._reply[:max_bytes], self._reply[max_bytes:]
        return out

    async def reset(self) -> None:
        self.reset_called = True


class _Bulk:
    def __init__(self, stream: _HeaderStream) -> None:
        self.stream = stream

    async def open(self, peer: str, protocol: str) -> _HeaderStream:
        return self.stream


@pytest.mark.parametrize(("relay", "size", "refused"), [
    (RELAY, RELAYED_STREAM_LIMIT + 1, True),
    (RELAY, RELAYED_STREAM_LIMIT, False),
    (None, RELAYED_STREAM_LIMIT + 1, False),
])
async def test_a_blob_bigger_than_a_relayed_connection_carries_is_refused_before_its_data(
        monkeypatch: pytest.MonkeyPatch, relay: str | None, size: int, refused: bool) -> None:
    stream = _HeaderStream(size, relay)
    monkeypatch.setattr(blobs, "bulk_for", lambda rr: _Bulk(stream))
    opened: list[Any] = []
    try:
        async with blobs.open_blob(object(), PEER, "file:abc", max_size=1 << 40) as blob:
            opened.append(blob)
    except TransferRefused as exc:
        assert refused and exc.code == "relay-limit"
        assert RELAY in str(exc) and "256 MiB" in str(exc) and "docs/behind-nat.md" in str(exc)
        assert stream.reset_called
    else:
        assert not refused and opened[0].size == size
    await trio.lowlevel.checkpoint()
