"""Offers converge whatever gossip loses (issue 13): real daemons, one of which hears no offer gossip at all.

The requestor runs with ``--test-fault drop-offer-gossip`` (its market ignores
every offer and withdrawal that gossip brings from peers, as if each copy were
lost in the network). A new offer, a re-announced one and a withdrawal still
reach it: by anti-entropy with one random neighbour every ~3 s.
"""

from __future__ import annotations

import json
from pathlib import Path

from e2e.daemons import Daemon, run_cli, wait_until


def _offers(d: Daemon) -> dict[str, str]:
    """offer id -> provider id, as the node's market lists them."""
    return {o["offer_id"]: o["provider_id"] for o in json.loads(run_cli("market", "offers", "--json",
                                                                         data_dir=d.data_dir).stdout)}


def _status(d: Daemon) -> dict:  # type: ignore[type-arg]
    return json.loads(run_cli("market", "status", "--json", data_dir=d.data_dir).stdout)


def test_a_node_that_loses_all_offer_gossip_still_converges(tmp_path: Path, daemons: list[Daemon]) -> None:
    p1 = Daemon(tmp_path / "p1", ["--role", "provider", "--px-interval", "2", "--max-threads", "2"]).start()
    daemons.append(p1)
    wait_until(lambda: len(_offers(p1)) == 1, timeout=20, what="p1's own offer")
    deaf = Daemon(tmp_path / "deaf", ["--role", "requestor", "--bootstrap", p1.p2p_addr, "--px-interval", "2",
                                      "--test-fault", "drop-offer-gossip"]).start()
    daemons.append(deaf)
    wait_until(lambda: _offers(deaf) == _offers(p1), timeout=20, what="deaf catches up with p1 when it connects")

    # A provider that comes up later: its offer is gossiped (and lost at deaf), or caught up at connect.
    p2 = Daemon(tmp_path / "p2", ["--role", "provider", "--bootstrap", p1.p2p_addr, "--px-interval", "2",
                                  "--max-threads", "2"]).start()
    daemons.append(p2)
    wait_until(lambda: len(_offers(p1)) == 2 and p1.node_id in deaf.connected_peers() and
               p2.node_id in deaf.connected_peers(), timeout=30, what="p2 connected and its offer at p1")
    wait_until(lambda: _offers(deaf) == _offers(p1), timeout=20, what="deaf knows p2's offer")

    # Once everyone is connected, a re-announcement (new terms) reaches deaf only by anti-entropy.
    before = set(_offers(p1))
    # Counted before the re-announcement: a round may pull it before this test sees p1 hold it (a CI run
    # read the counter after that, and found it unchanged although deaf had the offer).
    pulled = _status(deaf)["anti_entropy"]["pulled"]
    run_cli("provider", "preset", "update", "default", "--threads", "1", data_dir=p1.data_dir)
    wait_until(lambda: set(_offers(p1)) != before and len(_offers(p1)) == 2, timeout=20,
               what="p1 re-announces its offer")
    took = wait_until(lambda: _offers(deaf) == _offers(p1), timeout=20,
                      what="deaf learns the re-announced offer without gossip")
    print(f"re-announced offer reached the node that loses all gossip {took:.2f} s after p1 held it")
    status = _status(deaf)
    assert status["anti_entropy"]["pulled"] > pulled
    assert status["refused"] == 0 and status["penalties"] == {}

    # A withdrawal lost by gossip is pulled too.
    run_cli("provider", "preset", "delete", "default", data_dir=p2.data_dir)
    wait_until(lambda: p2.node_id not in _offers(p1).values(), timeout=20, what="p1 drops p2's withdrawn offer")
    took = wait_until(lambda: p2.node_id not in _offers(deaf).values(), timeout=20,
                      what="deaf drops p2's withdrawn offer without gossip")
    print(f"withdrawal reached the node that loses all gossip {took:.2f} s after p1 applied it")
    assert _offers(deaf) == _offers(p1)
