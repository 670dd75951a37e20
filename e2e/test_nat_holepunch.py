"""Hole punching across the NAT testbed (issue 13): nodes behind NATs that allow it end up on a
direct connection after meeting through a relay; behind a NAT that does not, they stay relayed.

The requestor sits behind an ``easy`` NAT (MASQUERADE, ports kept), provider-1 behind another
easy one and provider-2 behind a ``hard`` one (``--random-fully``: every mapping a new random
port). Neither private node can be dialed, so each first connection between them goes through a
public node's circuit relay; DCUtR (yagna/net/holepunch.py) then punches requestor <-> provider-1
and fails, as it must, for requestor <-> provider-2.

Root, Linux needed (CI has them); skipped with the reason elsewhere.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from e2e.natbed import NatNet, NatNode, nat_devnet
from yagna.netlab.topology import PUBLIC_NET


def _peer(node: NatNode, other: NatNode) -> dict[str, Any]:
    return {p["node_id"]: p for p in node.cli_json("net", "peers")}.get(other.node_id, {})


def _wait(pred: Any, what: str, timeout: float = 45.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def _punches(net: NatNet, *names: str) -> int:
    return sum(net[n].cli_json("net", "status")["hole_punching"]["succeeded"] for n in names)


def test_easy_nats_punch_to_direct_hard_nat_stays_relayed(tmp_path: Path) -> None:
    with nat_devnet(tmp_path, 2) as net:
        req, easy, hard = net["requestor"], net["provider-1"], net["provider-2"]
        # The market makes the requestor reach both providers (it asks them for offers);
        # wait until the easy one is direct and the hard one is connected at all.
        _wait(lambda: _peer(req, easy).get("connection") == "direct",
              f"requestor <-> provider-1 never went direct: {_peer(req, easy)}; "
              f"{req.cli_json('net', 'status')['hole_punching']}")
        view = _peer(req, easy)
        assert view["relay"] is None
        # the direct connection runs to provider-1's NAT's outside address (the relayed one may
        # linger for its grace period, new streams take the direct one)
        assert any(a.startswith(f"/ip4/{PUBLIC_NET}.") and "/p2p-circuit" not in a for a in view["remote_addrs"]), view
        assert _peer(easy, req).get("connection") == "direct", _peer(easy, req)
        assert _punches(net, "requestor", "provider-1") >= 1
        # new streams take the direct connection: what the requestor asks of provider-1 now
        # (offers, by anti-entropy every few seconds) keeps working after the punch
        time.sleep(4)
        assert _peer(req, easy)["connection"] == "direct"
        assert easy.node_id in {o["provider_id"] for o in req.cli_json("market", "offers")}
        # the hard NAT cannot be punched: that link stays relayed and keeps working
        _wait(lambda: _peer(req, hard).get("connection") == "relayed", f"no relayed link to provider-2: {_peer(req, hard)}")
        time.sleep(3)
        assert _peer(req, hard).get("connection") == "relayed", _peer(req, hard)
        offers = {o["provider_id"] for o in req.cli_json("market", "offers")}
        assert {easy.node_id, hard.node_id} <= offers
