"""Fuzz the network layer's own decoders: frames, request/response replies, peer exchange, multiaddrs."""

from __future__ import annotations

import trio
from hypothesis import example, given
from hypothesis import strategies as st

from yagna.core.errors import WireError
from yagna.core.wire import encode
from yagna.net import px
from yagna.net.errors import BadAddressError, BadResponse, FrameError, RemoteError
from yagna.net.framing import FrameDecoder, encode_frame, encode_varint, read_frame
from yagna.net.host import parse_multiaddr, parse_peer_addr
from yagna.net.reqresp import _parse_reply
from yagna.core.identity import NodeKey

from .strategies import FUZZ, cbor_values, garbage, mutated, only, texts

MAX = 64
FRAMES = encode_frame(b"hello") + encode_frame(b"") + encode_frame(b"x" * MAX)
NODE = NodeKey.from_seed(bytes(32)).node_id
ADDRS = ["/ip4/10.0.0.1/tcp/4001", "/ip6/::1/tcp/1", "/dns4/example.org/tcp/7"]


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


@FUZZ
@given(st.one_of(garbage(FRAMES), st.binary(max_size=12).map(lambda b: b"\xff" * 9 + b),
                 st.integers(0, 2**70).map(lambda n: encode_varint(n) + b"abc")),
       st.lists(st.integers(0, 400), max_size=8))
@example(b"\x80\x00", [])  # a non-minimal length
@example(b"\xff" * 11, [])  # a varint longer than 64 bits
def test_frame_decoder_raises_only_frame_error(data: bytes, cuts: list[int]) -> None:
    decoder = FrameDecoder(MAX)
    frames: list[bytes] = []
    try:
        for chunk in _chunks(data, cuts):
            decoder.feed(chunk)
            while (frame := decoder.next_frame()) is not None:
                frames.append(frame)
    except FrameError:
        return
    assert all(len(f) <= MAX for f in frames)
    assert decoder.buffered <= max(len(data), 0)


class _Stream:
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = list(chunks)

    async def read(self, n: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        return self._chunks.pop(0) if self._chunks else b""


@FUZZ
@given(garbage(FRAMES), st.lists(st.integers(0, 400), max_size=8))
def test_read_frame_raises_only_frame_error(data: bytes, cuts: list[int]) -> None:
    async def main() -> None:
        stream, decoder = _Stream(_chunks(data, cuts)), FrameDecoder(MAX)
        try:
            while (frame := await read_frame(stream, decoder)) is not None:
                assert len(frame) <= MAX
        except FrameError:
            pass

    trio.run(main)


@FUZZ
@given(st.one_of(garbage(encode({"ok": {"a": 1}}), encode({"err": {"code": "x", "msg": "y"}})),
                 mutated({"err": {"code": "x", "msg": "y"}}).map(encode)))
def test_reply_parser_raises_only_typed_errors(frame: bytes) -> None:
    only((BadResponse, RemoteError), _parse_reply, px.PX, NODE, frame)


@FUZZ
@given(st.one_of(cbor_values, mutated({"addrs": ADDRS})))
def test_px_request_parser_raises_only_wire_error(payload: object) -> None:
    only(WireError, px.parse_request, payload)


@FUZZ
@given(st.one_of(cbor_values, mutated({"peers": [{"id": NODE, "addrs": ADDRS}, {"id": NODE, "addrs": []}]})))
def test_px_response_parser_raises_only_wire_error(payload: object) -> None:
    only(WireError, px.parse_response, payload)


@FUZZ
@given(st.one_of(texts, st.lists(st.sampled_from(["ip4", "ip6", "tcp", "udp", "p2p", "dns4", "quic", "1.2.3.4", "::1",
                                                  "99999", "-1", NODE, "", "x"]), max_size=6)
                 .map(lambda parts: "/" + "/".join(parts))))
@example("/ip4/1.2.3.4/tcp/1/p2p/" + "1" * 60)
@example("/p2p/" + NODE)
def test_multiaddr_parsers_raise_only_bad_address(text: str) -> None:
    only(BadAddressError, parse_multiaddr, text)
    only(BadAddressError, parse_peer_addr, text)
