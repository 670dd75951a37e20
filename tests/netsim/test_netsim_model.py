"""The network simulator (bench/netsim): mesh delivery with latency, loss, seen cache, determinism, a small run."""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

import pytest
import trio
import trio.testing

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from netsim import overlay  # noqa: E402
from netsim.network import SimNetwork  # noqa: E402
from netsim.scenario import Config, OfferSim, run  # noqa: E402

from yagna.net.errors import PeerUnreachable, RequestTimeout  # noqa: E402
from yagna.net.reqresp import ProtocolSpec  # noqa: E402

ECHO = ProtocolSpec("/test/echo/1", max_request_size=1024, max_response_size=1024, timeout=2.0)


def _virtual(fn):  # type: ignore[no-untyped-def]
    return trio.run(fn, clock=trio.testing.MockClock(autojump_threshold=0))


def test_mesh_is_regular_connected_and_seeded() -> None:
    adj = overlay.random_mesh(500, 8, random.Random(3))
    degrees = [len(a) for a in adj]
    assert min(degrees) >= 7 and max(degrees) <= 9
    assert all(i not in a for i, a in enumerate(adj))
    assert all(i in adj[b] for i, a in enumerate(adj) for b in a)  # symmetric
    assert overlay.is_connected(adj)
    assert adj == overlay.random_mesh(500, 8, random.Random(3))
    assert adj != overlay.random_mesh(500, 8, random.Random(4))


def test_dijkstra_on_a_line() -> None:
    from array import array
    adj = [array("I", [1]), array("I", [0, 2]), array("I", [1])]
    lats = [array("f", [0.5]), array("f", [0.5, 0.25]), array("f", [0.25])]
    assert overlay.shortest_times(adj, lats, 0) == [0.0, 0.5, 0.75]
    assert overlay.shortest_times(adj, lats, 0, bytearray([1, 0, 1]))[2] == math.inf


def _flood(net: SimNetwork, origin: int) -> dict[int, float]:
    """Publish one message from ``origin``; the virtual time at which each node accepted it."""
    arrived: dict[int, float] = {}

    def accept(node: int, msg: int, sender: int) -> bool:
        arrived[node] = trio.current_time()
        return True

    net.light_accept = accept

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(net.run)
            net.publish(origin, "t", b"x" * 10)
            while not net.idle():
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()

    _virtual(main)
    return arrived


def test_gossip_follows_the_mesh_with_link_latency_and_no_duplicates() -> None:
    net = SimNetwork(200, degree=6, seed=5, latency_s=(0.005, 0.080))
    arrived = _flood(net, 0)
    ideal = net.ideal_times(0)
    assert set(arrived) == set(range(1, 200))  # everyone but the origin, each once (a dict)
    for node, at in arrived.items():
        # along the fastest path of the mesh, rounded up to the tick at each hop (at most 20 hops here)
        assert ideal[node] - 1e-6 <= at <= ideal[node] + 20 * net.tick
    assert net.delivered == 199
    # each node forwards to its neighbours but the sender (and origin); every copy beyond the first is a duplicate
    assert net.duplicates == sum(net.gossip_sent) - 199 > 0


def test_a_node_that_is_down_neither_receives_nor_forwards() -> None:
    net = SimNetwork(3, degree=2, seed=1)  # a triangle
    net.adj = [net.adj[0][:0] + type(net.adj[0])("I", [1]), type(net.adj[0])("I", [0, 2]), type(net.adj[0])("I", [1])]
    net.lats = [type(net.lats[0])("f", [0.01]), type(net.lats[0])("f", [0.01, 0.01]), type(net.lats[0])("f", [0.01])]
    net.go_down(1)
    assert _flood(net, 0) == {}


def test_loss_drops_copies_at_the_rate_asked_and_reproducibly() -> None:
    lossy = SimNetwork(300, degree=4, seed=9, loss=0.5)
    arrived = _flood(lossy, 0)
    sent = sum(lossy.gossip_sent)
    assert 0.4 < lossy.lost / sent < 0.6
    assert len(arrived) < 299  # with half the copies gone and 4 links each, some nodes miss it
    again = SimNetwork(300, degree=4, seed=9, loss=0.5)
    assert _flood(again, 0) == arrived and again.lost == lossy.lost


def test_requests_take_a_round_trip_and_time_out_when_lost_or_unreachable() -> None:
    net = SimNetwork(2, degree=1, seed=2, latency_s=(0.05, 0.05))
    a, b = net.make_real(0), net.make_real(1)

    async def echo(request):  # type: ignore[no-untyped-def]
        return {"echo": request.payload, "from": request.peer}

    b.rr.register(ECHO, echo)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(net.run)
            t = trio.current_time()
            assert await a.rr.request("n1", ECHO, 7) == {"echo": 7, "from": "n0"}
            assert trio.current_time() - t == pytest.approx(0.1, abs=1e-6)
            net.loss = 0.999999
            t = trio.current_time()
            with pytest.raises(RequestTimeout):
                await a.rr.request("n1", ECHO, 8)
            assert trio.current_time() - t == pytest.approx(ECHO.timeout)
            net.loss = 0.0
            net.go_down(1)
            with pytest.raises(PeerUnreachable):
                await a.rr.request("n1", ECHO, 9)
            assert a.peers.connected_peers() == []
            nursery.cancel_scope.cancel()

    _virtual(main)


def test_rejoin_tells_both_ends() -> None:
    net = SimNetwork(2, degree=1, seed=2)
    a, b = net.make_real(0), net.make_real(1)
    seen: list[tuple[str, str]] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for node in (a, b):
                node.peers.on_connect(lambda peer, me=node.node_id: _note(seen, me, peer))
                await nursery.start(node.peers.run)
            net.go_down(1)
            net.come_up(1)
            await trio.sleep(1)
            nursery.cancel_scope.cancel()

    _virtual(main)
    assert sorted(seen) == [("n0", "n1"), ("n1", "n0")]


async def _note(seen: list[tuple[str, str]], me: str, peer: str) -> None:
    seen.append((me, peer))


def test_every_offer_reaches_every_node_without_loss() -> None:
    r = run(Config(nodes=60, degree=6, providers=15, real=12, duration=10.0, seed=4))
    assert r.real_count == 12
    assert r.pairs_expected == 60 * 15
    assert r.missing_settled == 0 and r.missing_end == 0
    assert sum(r.hist) == 59 * 15  # every (node, offer) pair but the provider's own, timed
    assert r.all_known_at == r.all_known_at  # a number, not NaN


def test_the_real_directories_hold_what_they_were_counted_as_knowing() -> None:
    sim = OfferSim(Config(nodes=40, degree=5, providers=10, real=8, duration=5.0, seed=6, loss=0.3))
    sim.build()
    _virtual(sim.main)
    for i, directory in sim.real_nodes.items():
        held = {oid for oid in sim.offer_ids if oid in directory.book}
        assert len(held) == sim.known[i]


def test_runs_are_reproducible_with_a_seed() -> None:
    cfg = dict(nodes=80, degree=4, providers=20, real=10, loss=0.3, churn=0.2, rejoin_at=3.0, duration=12.0)
    one, two = run(Config(seed=11, **cfg)), run(Config(seed=11, **cfg))  # type: ignore[arg-type]
    assert one.hist == two.hist and one.gossip_sent == two.gossip_sent and one.lost == two.lost
    assert (one.missing_settled, one.missing_end) == (two.missing_settled, two.missing_end)
    other = run(Config(seed=12, **cfg))  # type: ignore[arg-type]
    assert other.gossip_sent != one.gossip_sent


def test_churned_nodes_catch_up_when_they_come_back() -> None:
    r = run(Config(nodes=80, degree=6, providers=20, real=20, churn=0.25, rejoin_at=3.0, duration=15.0, seed=2))
    assert r.missing_settled > 0  # the nodes that were down missed the gossip ...
    assert r.missing_end == 0  # ... and the catch-up at connect (real code on the real sample) filled it in
    assert r.synced_real > 0


def test_without_repair_loss_persists_and_modelled_anti_entropy_fills_it() -> None:
    # 20%, not more: a modelled round (like the daemon's) needs 1-5 messages, each lost with this rate
    cfg = dict(nodes=120, degree=3, providers=30, real=0, loss=0.2, duration=60.0, seed=3)
    plain = run(Config(**cfg))  # type: ignore[arg-type]
    assert plain.missing_settled > 0 and plain.missing_end == plain.missing_settled
    repaired = run(Config(repair_interval=1.0, **cfg))  # type: ignore[arg-type]
    assert repaired.lost == plain.lost  # the same copies lost (same seed) ...
    assert 0 < repaired.missing_settled <= plain.missing_settled  # ... some pulled in while gossip still ran ...
    assert repaired.missing_end == 0 and repaired.repair_s > 0  # ... and the rest after it settled


def test_a_new_node_takes_every_offer_its_only_peer_holds_below_the_caps() -> None:
    from netsim.lone_peer import run_lone_peer

    lone = run_lone_peer(60, wait_s=10.0)
    assert (lone.taken, lone.refused, lone.peer_banned) == (60, 0, False)
    assert 0 < lone.took_s < 1.0  # one page: a round trip on a 5-80 ms link


def test_the_real_sample_repairs_lost_gossip_with_the_daemons_anti_entropy() -> None:
    cfg = dict(nodes=120, degree=3, providers=30, real=40, loss=0.15, duration=60.0, seed=3)
    plain = run(Config(**cfg))  # type: ignore[arg-type]
    assert plain.missing_settled_real > 0 and plain.missing_end_real == plain.missing_settled_real
    repaired = run(Config(repair_interval=1.0, **cfg))  # type: ignore[arg-type]
    assert repaired.missing_settled_real > 0 and repaired.missing_end_real == 0 and repaired.missing_end == 0
