"""The libp2p network layer of the daemon (see docs/ARCHITECTURE.md).

Public surface: :class:`Network` and :class:`NetConfig` (the service),
:class:`ProtocolSpec` / :class:`Request` / :class:`RequestResponse` (framed CBOR
request/response), :class:`Gossip` / :class:`GossipMessage` (broadcast topics),
and the :mod:`yagna.net.errors` tree.
"""

# First: py-libp2p's package imports every transport (QUIC, TLS/ACME, ...);
# the stand-ins keep `import libp2p.<what we use>` to what we use.
from yagna.net.lean_libp2p import install as _install_lean_libp2p

_install_lean_libp2p()

from yagna.net.errors import (  # noqa: E402
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
from yagna.net.gossip import Gossip, GossipMessage  # noqa: E402
from yagna.net.network import NetConfig, Network  # noqa: E402
from yagna.net.reqresp import ProtocolSpec, Request, RequestResponse  # noqa: E402

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
