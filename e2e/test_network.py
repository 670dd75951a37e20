"""Five daemons in five processes, each bootstrapped only with node 1."""

from __future__ import annotations

import json
import time
from pathlib import Path

from e2e.daemons import Daemon, run_cli, wait_until


def test_five_nodes_discover_gossip_and_survive_kill9(tmp_path: Path, daemons: list[Daemon]) -> None:
    first = Daemon(tmp_path / "node1", ["--px-interval", "2"]).start()
    daemons.append(first)
    t0 = time.monotonic()
    for i in range(2, 6):
        d = Daemon(tmp_path / f"node{i}", ["--bootstrap", first.p2p_addr, "--px-interval", "2"])
        daemons.append(d.start())
    ids = {d.node_id for d in daemons}
    assert len(ids) == 5

    # Within 10 s every node lists the other four in `net peers`.
    for d in daemons:
        wait_until(lambda d=d: d.connected_peers() >= ids - {d.node_id}, timeout=max(0.5, 10 - (time.monotonic() - t0)),
                   what=f"{d.data_dir.name} connected to all others")
    for d in daemons:
        peers = json.loads(run_cli("net", "peers", "--json", data_dir=d.data_dir).stdout)
        assert {p["node_id"] for p in peers} == ids - {d.node_id}
        assert all(p["addrs"] and p["remote_addrs"] for p in peers)

    # A gossip message published by node 5 reaches all others.
    topic = "user/e2e"
    for d in daemons:
        d.api("PUT", f"/net/gossip/{topic}/subscription")
    publisher = daemons[4]
    wait_until(lambda: _topic_has_all_peers(publisher, daemons, topic), timeout=10, what="topic mesh")
    run_cli("net", "publish", topic, "hello from node 5", data_dir=publisher.data_dir)
    for d in daemons[:4]:
        wait_until(lambda d=d: any(m["data"] == "hello from node 5" for m in d.api("GET", f"/net/gossip/{topic}/messages")),
                   timeout=10, what=f"gossip at {d.data_dir.name}")
        msgs = d.api("GET", f"/net/gossip/{topic}/messages")
        assert [m["origin"] for m in msgs if m["data"] == "hello from node 5"] == [publisher.node_id]
    assert publisher.api("GET", f"/net/gossip/{topic}/messages") == []  # own messages are not echoed

    # Node 3 killed with kill -9 and restarted: same id, rejoins.
    third = daemons[2]
    old_id = third.node_id
    third.kill()
    for d in daemons[:2] + daemons[3:]:
        wait_until(lambda d=d: old_id not in d.connected_peers(), timeout=15, what="peers notice node 3 is gone")
    third.start()
    assert third.node_id == old_id
    for d in daemons:
        wait_until(lambda d=d: d.connected_peers() >= ids - {d.node_id}, timeout=20,
                   what=f"{d.data_dir.name} reconnected to all after restart")


def _topic_has_all_peers(publisher: Daemon, daemons: list[Daemon], topic: str) -> bool:
    # The publisher is meshed once every other node announced the subscription.
    status = publisher.api("GET", "/net/status")
    return topic in status["gossip_topics"] and _all_subscribed(publisher, daemons, topic)


def _all_subscribed(publisher: Daemon, daemons: list[Daemon], topic: str) -> bool:
    peers = publisher.api("GET", f"/net/gossip/{topic}/peers")
    return {d.node_id for d in daemons} - {publisher.node_id} <= set(peers)
