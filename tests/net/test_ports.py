"""Both implementations of each network port match its Protocol, member by member.

mypy checks the same in CI (the annotated assignments below); this test also
fails at run time when an implementation drifts from its port.
"""

from __future__ import annotations

import inspect
import os

import pytest

from yagna.net import Network
from yagna.net.memory import MemoryHub
from yagna.net.network import NetConfig
from yagna.net.ports import GossipPort, PeersPort, RequestResponsePort


def _members(port: type) -> list[str]:
    return [n for n, v in vars(port).items() if callable(v) and not n.startswith("_")]


def _params(fn: object) -> list[tuple[str, object]]:
    return [(p.name, p.kind) for p in inspect.signature(fn).parameters.values() if p.name != "self"]  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["libp2p", "memory"])
def test_implementations_match_their_ports(kind: str) -> None:
    if kind == "libp2p":
        net = Network(os.urandom(32), NetConfig())
        rr: RequestResponsePort = net.rr
        gossip: GossipPort = net.gossip
        peers: PeersPort = net.peers
    else:
        node = MemoryHub().node()
        rr, gossip, peers = node.rr, node.gossip, node.peers
    for port, impl in ((RequestResponsePort, rr), (GossipPort, gossip), (PeersPort, peers)):
        names = _members(port)
        assert names
        for name in names:
            expected = getattr(port, name)
            got = getattr(impl, name)
            assert _params(got) == _params(expected), f"{type(impl).__name__}.{name}"
            assert inspect.iscoroutinefunction(got) == inspect.iscoroutinefunction(expected), name
