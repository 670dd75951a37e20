"""Hole punching policy (yagna/net/holepunch.py): who initiates, what a peer can make us do."""

from __future__ import annotations

import pytest

from yagna.net.holepunch import PunchLimits, PunchPolicy, dialable

A, B = "12D3KooWA", "12D3KooWB"


def test_exactly_one_side_initiates() -> None:
    a, b = PunchPolicy(A), PunchPolicy(B)
    assert a.should_initiate(B, 0.0) != b.should_initiate(A, 0.0)
    assert a.initiator(B) and not b.initiator(A)


def test_one_session_per_peer_then_retry_spacing_and_budget() -> None:
    p = PunchPolicy(A, PunchLimits(attempts_per_window=3, window=600.0, retry_after=5.0))
    assert p.should_initiate(B, 0.0)
    p.started(B, 0.0)
    assert not p.should_initiate(B, 1.0)  # in progress
    p.finished(B, ok=False)
    assert not p.should_initiate(B, 4.0)  # too soon
    assert p.should_initiate(B, 5.0)
    p.started(B, 5.0)
    p.finished(B, ok=False)
    p.started(B, 10.0)
    p.finished(B, ok=False)
    assert not p.should_initiate(B, 20.0)  # three within the window: done for now
    assert p.should_initiate(B, 601.0)  # the first one left the window


def test_success_stops_attempts_until_the_peer_disconnects() -> None:
    p = PunchPolicy(A)
    p.started(B, 0.0)
    p.finished(B, ok=True)
    assert not p.should_initiate(B, 100.0)
    p.disconnected(B)
    assert p.should_initiate(B, 100.0)


def test_inbound_only_over_relay_only_links_one_at_a_time_and_budgeted() -> None:
    p = PunchPolicy(B, PunchLimits(attempts_per_window=2))
    assert not p.admit_inbound(A, 0.0, relayed_only=False)  # already direct, or not relayed: nothing to punch
    assert p.admit_inbound(A, 0.0, relayed_only=True)
    p.started(A, 0.0)
    assert not p.admit_inbound(A, 0.5, relayed_only=True)  # one session per peer
    p.finished(A, ok=False)
    assert p.admit_inbound(A, 1.0, relayed_only=True)
    p.started(A, 1.0)
    p.finished(A, ok=False)
    assert not p.admit_inbound(A, 2.0, relayed_only=True)  # over its budget


def test_sessions_at_once_are_bounded() -> None:
    p = PunchPolicy("0", PunchLimits(max_sessions=2))
    for peer in ("1", "2"):
        assert p.should_initiate(peer, 0.0)
        p.started(peer, 0.0)
    assert not p.should_initiate("3", 0.0)
    assert not p.admit_inbound("3", 0.0, relayed_only=True)
    p.finished("1", ok=False)
    assert p.should_initiate("3", 0.0)


def test_histories_are_forgotten_after_the_window() -> None:
    p = PunchPolicy(A, PunchLimits(window=10.0))
    for i in range(100):
        p.started(f"peer{i}", 0.0)
        p.finished(f"peer{i}", ok=False)
    p.forget_idle(11.0)
    assert not p._history


@pytest.mark.parametrize(
    ("addr", "ok"),
    [
        ("/ip4/198.18.0.4/tcp/4001", True),
        ("/ip4/10.1.0.2/tcp/4001", True),  # a LAN peer may punch on its LAN
        ("/ip6/2001:db8::1/tcp/4001", True),
        ("/ip4/127.0.0.1/tcp/4001", False),
        ("/ip4/0.0.0.0/tcp/4001", False),
        ("/ip4/224.0.0.1/tcp/4001", False),
        ("/ip4/169.254.1.1/tcp/4001", False),
        ("/ip4/198.18.0.4/udp/4001/quic-v1", False),
        ("/ip4/198.18.0.4/tcp/0", False),
        ("/ip4/198.18.0.2/tcp/4001/p2p/12D3KooWA/p2p-circuit", False),
        ("/dns4/example.com/tcp/4001", False),
        ("garbage", False),
    ],
)
def test_dialable_connect_addresses(addr: str, ok: bool) -> None:
    assert dialable(addr) is ok


def test_may_punch_soon_is_true_only_while_a_session_is_under_way_or_due() -> None:
    a, b = PunchPolicy(A), PunchPolicy(B)  # A initiates towards B
    assert a.may_punch_soon(B, 0.0) and b.may_punch_soon(A, 0.0)  # fresh pair: A is about to start
    a.started(B, 0.0)
    b.started(A, 0.0)
    assert a.may_punch_soon(B, 0.1) and b.may_punch_soon(A, 0.1)
    a.finished(B, ok=False)
    b.finished(A, ok=False)
    # a failed session: the responder no longer waits; the initiator only when its retry is due
    assert not b.may_punch_soon(A, 1.0)
    assert not a.may_punch_soon(B, 1.0) and a.may_punch_soon(B, 6.0)


class _Conn:
    def __init__(self, *addrs: str) -> None:
        self.addrs = addrs

    def get_transport_addresses(self) -> list[str]:
        return list(self.addrs)


class _Host:
    def __init__(self, me: str) -> None:
        self.me = me
        self.connections: dict[object, list[_Conn]] = {}

    def get_id(self) -> object:
        from libp2p.peer.id import ID

        return ID.from_base58(self.me)

    def get_network(self) -> "_Host":
        return self


ME = "12D3KooWRjMpSqpvHyCfsL3KpQR5MgjZ3M6Yd1Sx7mE3oaDM8VQ9"
PEER = "12D3KooWS1WHBWQ7aq2wsS4ZtBFGdcvm9eXW6rnR2KuoG5WCpE4y"
RELAYED = f"/p2p/12D3KooWAYL8Ey3tgtNKNn4bGRuc6LLJEDFdWhGbaDPhKQQ1xpMh/p2p-circuit/p2p/{PEER}"


async def test_prefer_direct_waits_for_a_punch_under_way_and_not_for_a_relay_only_peer(autojump_clock: object) -> None:
    import trio
    from libp2p.peer.id import ID

    from yagna.net.holepunch import HolePunchService

    host = _Host(ME)
    pid = ID.from_base58(PEER)
    service = HolePunchService(host)
    service._proto = object()  # running
    host.connections[pid] = [_Conn(RELAYED)]
    # a session is under way: the direct connection appears after 0.5 s
    service.policy.started(PEER, trio.current_time())

    async def punched() -> None:
        await trio.sleep(0.5)
        host.connections[pid].append(_Conn("/ip4/198.18.0.4/tcp/4001"))
        service.policy.finished(PEER, ok=True)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(punched)
        start = trio.current_time()
        assert await service.prefer_direct(PEER, timeout=3.0)
        assert 0.5 <= trio.current_time() - start < 1.0
    # the hard-NAT case: the session failed, nothing more is due: no wait at all
    host.connections[pid] = [_Conn(RELAYED)]
    service.policy.disconnected(PEER)
    service.policy._done.discard(PEER)
    service.policy.started(PEER, trio.current_time())
    service.policy.finished(PEER, ok=False)
    start = trio.current_time()
    assert not await service.prefer_direct(PEER, timeout=3.0)
    assert trio.current_time() == start
    # a direct connection: at once
    host.connections[pid] = [_Conn("/ip4/198.18.0.4/tcp/4001")]
    assert await service.prefer_direct(PEER)
