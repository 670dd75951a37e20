"""The libp2p network layer of the daemon (see docs/ARCHITECTURE.md).

Public surface: :class:`Network` and :class:`NetConfig` (the service),
:class:`ProtocolSpec` / :class:`Request` / :class:`RequestResponse` (framed CBOR
request/response), :class:`Gossip` / :class:`GossipMessage` (broadcast topics),
and the :mod:`yagna.net.errors` tree.
"""

from yagna.net.errors import (
    BadAddressError,
    BadResponse,
    FrameError,
    GossipError,
    GossipInvalid,
    ListenError,
    NetError,
    PeerUnreachable,
    ProtocolNotSupported,
    RemoteError,
    RequestError,
    RequestRejected,
    RequestTimeout,
    RequestTooLarge,
)
from yagna.net.gossip import Gossip, GossipMessage
from yagna.net.network import NetConfig, Network
from yagna.net.reqresp import ProtocolSpec, Request, RequestResponse

__all__ = [
    "BadAddressError",
    "BadResponse",
    "FrameError",
    "Gossip",
    "GossipError",
    "GossipInvalid",
    "GossipMessage",
    "ListenError",
    "NetConfig",
    "NetError",
    "Network",
    "PeerUnreachable",
    "ProtocolNotSupported",
    "ProtocolSpec",
    "RemoteError",
    "Request",
    "RequestError",
    "RequestRejected",
    "RequestResponse",
    "RequestTimeout",
    "RequestTooLarge",
]
