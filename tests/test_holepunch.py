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
