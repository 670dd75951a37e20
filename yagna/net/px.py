"""Peer exchange (``/yagna/px/1.0.0``): how a node that knows one bootstrap peer
learns every other node.

On every new connection, and every ``px_interval`` to a few connected peers, a
node sends its own addresses that this partner can dial and receives the peers
its partner knows with those of their addresses it can dial
(:mod:`yagna.net.addresses`); an address is a TCP address, or a relay address
``<relay's TCP address>/p2p/<relay id>/p2p-circuit``. Addresses are only hints:
dialing a wrong address for a node id fails the Noise handshake, so a lying
peer cannot impersonate anybody (docs/decisions.md, "Peer discovery").

This module is the sans-io part: message shapes and their validation.
"""

from __future__ import annotations

from dataclasses import dataclass

from yagna.core.errors import WireError
from yagna.core.identity import public_key_from_node_id
from yagna.net.addresses import is_relay_addr, parse_relay
from yagna.net.reqresp import ProtocolSpec

PX = ProtocolSpec(
    "/yagna/px/1.0.0", max_request_size=8 * 1024, max_response_size=128 * 1024, timeout=5.0
)
MAX_ADDRS_PER_PEER = 8
MAX_PEERS_PER_REPLY = 64
MAX_ADDR_LEN = 200


@dataclass(frozen=True)
class PeerHint:
    node_id: str
    addrs: tuple[str, ...]


def _check_addrs(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > MAX_ADDRS_PER_PEER:
        raise WireError(f"addrs must be a list of at most {MAX_ADDRS_PER_PEER} strings")
    out = []
    for addr in value:
        if not isinstance(addr, str) or not addr.startswith("/") or len(addr) > MAX_ADDR_LEN:
            raise WireError(f"bad address {addr!r}")
        if is_relay_addr(addr):
            relay = parse_relay(addr)
            if relay is None:
                raise WireError(f"bad relay address {addr!r}: must be <tcp address>/p2p/<relay id>/p2p-circuit")
            public_key_from_node_id(relay.relay_id)  # raises WireError for anything but an ed25519 id
        elif "/p2p/" in addr:
            raise WireError(f"address {addr!r} must not carry a peer id")
        out.append(addr)
    return tuple(out)


def make_request(my_addrs: list[str]) -> dict[str, object]:
    return {"addrs": list(my_addrs[:MAX_ADDRS_PER_PEER])}


def parse_request(payload: object) -> tuple[str, ...]:
    if not isinstance(payload, dict) or set(payload) != {"addrs"}:
        raise WireError("px request must be {addrs: [...]}")
    return _check_addrs(payload["addrs"])


def make_response(hints: list[PeerHint]) -> dict[str, object]:
    return {
        "peers": [
            {"id": h.node_id, "addrs": list(h.addrs[:MAX_ADDRS_PER_PEER])}
            for h in hints[:MAX_PEERS_PER_REPLY]
        ]
    }


def parse_response(payload: object) -> list[PeerHint]:
    if not isinstance(payload, dict) or not isinstance(payload.get("peers"), list):
        raise WireError("px response must be {peers: [...]}")
    peers = payload["peers"]
    if len(peers) > MAX_PEERS_PER_REPLY:
        raise WireError(f"px response lists more than {MAX_PEERS_PER_REPLY} peers")
    hints = []
    for entry in peers:
        if not isinstance(entry, dict) or set(entry) != {"id", "addrs"}:
            raise WireError("px peer entry must be {id, addrs}")
        node_id = entry["id"]
        if not isinstance(node_id, str):
            raise WireError("px peer id must be a string")
        public_key_from_node_id(node_id)  # raises WireError for anything but an ed25519 id
        hints.append(PeerHint(node_id, _check_addrs(entry["addrs"])))
    return hints
