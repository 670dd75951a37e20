"""A rogue node in its own process against real daemons (issue 11, rows 1 and 6).

Before the fix, one poisoned GossipSub message on the offers topic made every
daemon that received it exit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from e2e.daemons import Daemon, wait_until

OFFERS = "yagna/market/1/testnet/public/offers"


def rogue(*args: str, timeout: float = 60.0) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-m", "e2e.rogue", *args], capture_output=True, text=True,
                         timeout=timeout, check=True, stdin=subprocess.DEVNULL)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_poisoned_gossip_and_floods_leave_every_node_up(tmp_path: Path, daemons: list[Daemon]) -> None:
    provider = Daemon(tmp_path / "provider", ["--role", "provider", "--px-interval", "2"]).start()
    daemons.append(provider)
    requestor = Daemon(tmp_path / "requestor", ["--role", "requestor", "--bootstrap", provider.p2p_addr]).start()
    daemons.append(requestor)
    wait_until(lambda: provider.node_id in requestor.connected_peers(), timeout=15, what="connected")
    for d in daemons:
        d.api("PUT", "/net/gossip/user/chat/subscription")
    wait_until(lambda: len(requestor.api("GET", "/market/offers")) >= 1, timeout=20, what="provider's offer seen")

    for target in daemons:
        sent = rogue("poison-gossip", target.p2p_addr, "--topic", OFFERS, "--topic", "user/chat")
        assert sent["messages"]
        # a flood of validly signed, oversized user messages, then many small ones
        rogue("user-flood", target.p2p_addr, "--topic", "user/chat", "--size", "900000", "--count", "20")
        rogue("user-flood", target.p2p_addr, "--topic", "user/chat", "--size", "60000", "--count", "200")

    for d in daemons:
        assert d.proc is not None and d.proc.poll() is None, d.log.read_text()[-3000:]
        status = d.api("GET", "/net/status")
        assert status
        kept = d.api("GET", "/net/gossip/user/chat/messages")
        assert all(len(m["data"]) <= 64 * 1024 for m in kept)
        assert sum(len(m["data"]) for m in kept) <= 4 * 1024 * 1024
    # the honest network still works: a user message and the market go through
    wait_until(lambda: provider.node_id in requestor.connected_peers(), timeout=15, what="still connected")
    requestor.api("POST", "/net/gossip/user/chat/messages", json={"data": "still here"})
    wait_until(lambda: any(m["data"] == "still here" for m in provider.api("GET", "/net/gossip/user/chat/messages")),
               timeout=15, what="honest gossip after the attack")
    assert len(requestor.api("GET", "/market/offers")) >= 1
