"""The reachability state machine, candidate choice and the dial-back protocol's rules (sans-io)."""

from __future__ import annotations

import ipaddress

import pytest
import trio
import trio.testing

from yagna.core.errors import WireError
from yagna.net import dialback
from yagna.net.errors import RequestRejected
from yagna.net.reachability import (
    Reachability,
    ReachabilityState,
    Status,
    can_judge,
    candidates,
    pick_servers,
)
from yagna.net.reqresp import Request

ip = ipaddress.ip_address
CAND = ("/ip4/198.51.100.9/tcp/4000",)


def state() -> ReachabilityState:
    s = ReachabilityState(confirmations=2, result_ttl=1000.0, recheck_interval=600.0, retry_interval=30.0)
    s.set_candidates(CAND)
    return s


def test_public_after_two_successes_from_distinct_ips() -> None:
    s = state()
    assert s.status is Status.UNKNOWN
    assert not s.record("a", ip("8.8.8.8"), True, CAND, 0.0)
    assert not s.record("a2", ip("8.8.8.8"), True, CAND, 1.0)  # the same IP again: one witness
    assert s.status is Status.UNKNOWN
    assert s.record("b", ip("9.9.9.9"), True, CAND, 2.0)
    assert s.status is Status.PUBLIC
    assert s.verified(3.0) == list(CAND)


def test_private_after_two_failures_and_no_success() -> None:
    s = state()
    s.record("a", ip("8.8.8.8"), False, (), 0.0)
    assert s.status is Status.UNKNOWN
    assert s.record("b", ip("9.9.9.9"), False, (), 1.0)
    assert s.status is Status.PRIVATE
    assert s.verified(1.0) == []


def test_one_success_among_failures_is_undecided() -> None:
    s = state()
    s.record("a", ip("8.8.8.8"), False, (), 0.0)
    s.record("b", ip("9.9.9.9"), True, CAND, 0.0)
    s.record("c", ip("7.7.7.7"), False, (), 0.0)
    assert s.status is Status.UNKNOWN and not s.decided(0.0)


def test_a_verdict_is_sticky_across_an_address_change_until_new_evidence() -> None:
    s = state()
    s.record("a", ip("8.8.8.8"), True, CAND, 0.0)
    s.record("b", ip("9.9.9.9"), True, CAND, 0.0)
    assert s.set_candidates(("/ip4/198.51.100.10/tcp/4000",))
    assert s.status is Status.PUBLIC and s.results == {}
    assert s.due(1.0)
    s.record("a", ip("8.8.8.8"), False, (), 2.0)
    s.record("b", ip("9.9.9.9"), False, (), 2.0)
    assert s.status is Status.PRIVATE


def test_no_candidates_means_unknown() -> None:
    s = state()
    s.record("a", ip("8.8.8.8"), False, (), 0.0)
    s.record("b", ip("9.9.9.9"), False, (), 0.0)
    assert s.status is Status.PRIVATE
    s.set_candidates(())
    assert s.status is Status.UNKNOWN and not s.due(0.0)


def test_results_expire_and_the_status_is_kept_until_replaced() -> None:
    s = state()
    s.record("a", ip("8.8.8.8"), True, CAND, 0.0)
    s.record("b", ip("9.9.9.9"), True, CAND, 0.0)
    assert not s.expire(2000.0)
    assert s.results == {} and s.status is Status.PUBLIC
    assert s.verified(2000.0) == []


def test_due_retries_fast_while_undecided_and_slowly_once_decided() -> None:
    s = state()
    assert s.due(0.0)
    s.start_round(0.0)
    assert not s.due(29.0) and s.due(30.0)
    s.record("a", ip("8.8.8.8"), True, CAND, 0.0)
    s.record("b", ip("9.9.9.9"), True, CAND, 0.0)
    assert not s.due(599.0) and s.due(600.0)
    s.start_round(600.0)  # a periodic re-check asks the same servers again
    assert s.asked() == set()


def test_results_are_bounded() -> None:
    s = state()
    for i in range(100):
        s.record(f"p{i}", ip(f"11.0.0.{i}"), False, (), float(i))
    assert len(s.results) <= 16


def test_candidates_are_public_addresses_and_observed_ips_with_listen_ports() -> None:
    listen = ["/ip4/127.0.0.1/tcp/4000", "/ip4/10.0.0.2/tcp/4000", "/ip4/203.0.113.5/tcp/4000"]
    out = candidates(listen, ["/ip4/198.51.100.9/tcp/51234", "/ip4/10.1.1.1/tcp/1"], [ip("198.51.100.9"), ip("10.1.1.1")])
    assert out == ["/ip4/203.0.113.5/tcp/4000", "/ip4/198.51.100.9/tcp/51234", "/ip4/198.51.100.9/tcp/4000"]
    assert candidates(["/ip4/127.0.0.1/tcp/4000"], [], []) == []  # a loopback devnet: nothing to ask about
    many = candidates([f"/ip4/203.0.113.{i}/tcp/1" for i in range(10)], [], [])
    assert len(many) == 4


def test_only_peers_that_reach_us_over_the_internet_judge_and_one_per_ip() -> None:
    assert not can_judge(ip("127.0.0.1")) and not can_judge(ip("192.168.1.1")) and not can_judge(None)
    assert can_judge(ip("8.8.8.8"))
    peers = [("lo", ip("127.0.0.1")), ("lan", ip("10.0.0.3")), ("a", ip("8.8.8.8")), ("a2", ip("8.8.8.8")),
             ("relayed", None), ("b", ip("9.9.9.9")), ("c", ip("7.7.7.7"))]
    assert pick_servers(peers, set(), 2) == [("a", ip("8.8.8.8")), ("b", ip("9.9.9.9"))]
    assert pick_servers(peers, {"8.8.8.8", "9.9.9.9"}, 4) == [("c", ip("7.7.7.7"))]


async def test_wait_change_returns_on_a_transition(autojump_clock: trio.testing.MockClock) -> None:
    r = Reachability(state())
    got: list[Status] = []

    async def waiter() -> None:
        got.append(await r.wait_change())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.sleep(1)
        r.notify()  # a spurious wake-up: no change, keeps waiting
        await trio.sleep(1)
        assert got == []
        r.state.record("a", ip("8.8.8.8"), True, CAND, 0.0)
        r.state.record("b", ip("9.9.9.9"), True, CAND, 0.0)
        r.notify()
    assert got == [Status.PUBLIC]
    assert str(Status.PUBLIC) == "public"


# -- dial-back protocol ------------------------------------------------------------------------
def test_dialback_messages_are_validated() -> None:
    assert dialback.parse_request(dialback.make_request(list(CAND))) == list(CAND)
    for bad in [None, {}, {"addrs": []}, {"addrs": ["x"]}, {"addrs": [RELAY := CAND[0] + "/p2p-circuit"]},
                {"addrs": ["/ip4/1.2.3.4/tcp/1"] * 5}, {"addrs": [1]}, {"addrs": ["/ip4/1.2.3.4/tcp/1"], "x": 1},
                {"addrs": ["/ip4/1.2.3.4/tcp/1/ws"]}, {"addrs": ["/ip4/1.2.3.4/tcp/01"]}]:
        with pytest.raises(WireError):
            dialback.parse_request(bad)
    assert RELAY
    assert dialback.parse_response({"reached": [CAND[0], "other"], "failed": []}, list(CAND)) == ([CAND[0]], [])
    for bad_reply in [None, {"reached": []}, {"reached": "x", "failed": []}, {"reached": [1], "failed": []}]:
        with pytest.raises(WireError):
            dialback.parse_response(bad_reply, list(CAND))


def test_the_server_dials_only_the_requesters_own_ip() -> None:
    addrs = ["/ip4/198.51.100.9/tcp/1", "/ip4/198.51.100.10/tcp/1", "/ip4/198.51.100.9/tcp/0", "/ip6/::ffff:198.51.100.9/tcp/2"]
    assert dialback.dialable_for(addrs, ip("198.51.100.9")) == ["/ip4/198.51.100.9/tcp/1"]
    assert dialback.dialable_for(addrs, None) == []


def test_rate_limit_per_peer_per_minute_and_bounded_memory() -> None:
    limit = dialback.RateLimit(per_minute=4, max_peers=10)
    assert [limit.allow("p", float(t)) for t in range(5)] == [True] * 4 + [False]
    assert limit.allow("q", 5.0)
    assert not limit.allow("p", 59.9) and limit.allow("p", 60.0)
    for i in range(100):
        limit.allow(f"x{i}", 61.0)
    assert len(limit._seen) == 10  # noqa: SLF001 - the bound itself


async def test_server_refuses_third_party_relayed_and_too_frequent_requests(autojump_clock: trio.testing.MockClock) -> None:
    dialed: list[tuple[str, str]] = []

    async def dial(node_id: str, addr: str) -> bool:
        dialed.append((node_id, addr))
        await trio.sleep(1)
        return addr.endswith("/1")

    relayed = {"r"}
    server = dialback.DialbackServer(
        dial, lambda peer: ip("198.51.100.9"), relayed=lambda peer: peer in relayed, limit=dialback.RateLimit(per_minute=2)
    )
    ask = {"addrs": ["/ip4/198.51.100.9/tcp/1", "/ip4/198.51.100.9/tcp/2", "/ip4/203.0.113.1/tcp/1"]}
    reply = await server.handle(Request("p", dialback.DIALBACK.name, ask))
    assert isinstance(reply, dict) and reply["reached"] == ["/ip4/198.51.100.9/tcp/1"] and reply["failed"] == ["/ip4/198.51.100.9/tcp/2"]
    assert ("p", "/ip4/203.0.113.1/tcp/1") not in dialed  # a third party is never dialed
    with pytest.raises(RequestRejected, match="refused"):
        await server.handle(Request("p", dialback.DIALBACK.name, {"addrs": ["/ip4/203.0.113.1/tcp/1"]}))
    with pytest.raises(RequestRejected, match="rate_limited"):
        await server.handle(Request("p", dialback.DIALBACK.name, ask))
    with pytest.raises(RequestRejected, match="relayed"):
        await server.handle(Request("r", dialback.DIALBACK.name, ask))
    with pytest.raises(RequestRejected, match="bad_request"):
        await server.handle(Request("q", dialback.DIALBACK.name, {"addrs": "nope"}))


async def test_a_hanging_dial_counts_as_a_failure_after_the_timeout(autojump_clock: trio.testing.MockClock) -> None:
    async def dial(node_id: str, addr: str) -> bool:
        await trio.sleep_forever()
        return True  # pragma: no cover

    server = dialback.DialbackServer(dial, lambda peer: ip("198.51.100.9"))
    start = trio.current_time()
    reply = await server.handle(Request("p", dialback.DIALBACK.name, {"addrs": ["/ip4/198.51.100.9/tcp/1"]}))
    assert reply == {"reached": [], "failed": ["/ip4/198.51.100.9/tcp/1"]}
    assert trio.current_time() - start == pytest.approx(dialback.DIAL_TIMEOUT)
