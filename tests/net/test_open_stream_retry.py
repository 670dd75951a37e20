"""open_stream: "not supported" is final; a negotiation that broke off is tried once more
(it was taken for "not supported" before: a task failed for good when a relayed leg closed)."""

from __future__ import annotations

import pytest
from libp2p.host.exceptions import StreamFailure
from libp2p.protocol_muxer.exceptions import MultiselectClientError

from yagna.net.errors import PeerUnreachable, ProtocolNotSupported
from yagna.net.reqresp import open_stream

PEER = "12D3KooWS1WHBWQ7aq2wsS4ZtBFGdcvm9eXW6rnR2KuoG5WCpE4y"


class _Host:
    def __init__(self, *outcomes: object) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    async def new_stream(self, peer: object, protocols: object) -> object:
        self.calls += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def _failure(cause: str) -> StreamFailure:
    try:
        try:
            raise MultiselectClientError(cause)
        except MultiselectClientError as inner:
            raise StreamFailure(f"failed to open a stream to peer {PEER}") from inner
    except StreamFailure as exc:
        return exc


async def test_a_broken_off_negotiation_is_tried_once_more() -> None:
    host = _Host(_failure("stream reset during negotiation"), "stream")
    assert await open_stream(host, PEER, "/x/1") == "stream"  # type: ignore[arg-type]
    assert host.calls == 2


async def test_twice_broken_off_is_unreachable_not_unsupported() -> None:
    host = _Host(_failure("connection closed"), _failure("connection closed"))
    with pytest.raises(PeerUnreachable, match="connection closed"):
        await open_stream(host, PEER, "/x/1")  # type: ignore[arg-type]


async def test_not_supported_is_final_at_once() -> None:
    host = _Host(_failure("protocols not supported: tried ['/x/1'], response='na'"), "never")
    with pytest.raises(ProtocolNotSupported):
        await open_stream(host, PEER, "/x/1")  # type: ignore[arg-type]
    assert host.calls == 1
