"""The exception tree of ``yagna.net``.

::

    NetError(YagnaError)
    ├── ListenError            cannot listen on the configured address (port in use, ...)
    ├── BadAddressError        a multiaddr given by the user is malformed or unusable
    ├── FrameError             a peer sent a bad frame: bad varint, oversized, truncated
    └── RequestError           a request/response exchange failed
        ├── PeerUnreachable        no connection could be made to the peer
        ├── ProtocolNotSupported   the peer does not speak the protocol
        ├── RequestTimeout         no complete response within the deadline
        ├── RequestTooLarge        our own request is over the protocol's size limit
        ├── BadResponse            the response was malformed (a remote fault)
        └── RemoteError            the peer answered with an error (code, message)
    RequestRejected            raised by a request handler: answer with an error
    GossipError                a local publish cannot be made
    GossipInvalid              raised by a topic validator: drop, charge the forwarder

Exceptions of py-libp2p are mapped to this tree once, at the I/O boundary
(``reqresp``, ``peers``); nothing above ``yagna.net`` sees a libp2p exception.
"""

from yagna.core.errors import YagnaError


class NetError(YagnaError):
    """Root of the network layer's errors."""


class ListenError(NetError):
    """The host cannot listen on the requested address."""


class BadAddressError(NetError):
    """A multiaddr is malformed or cannot be used (e.g. lacks /p2p/<node id>)."""


class FrameError(NetError):
    """A peer sent a malformed, oversized or truncated frame."""


class RequestError(NetError):
    """A request/response exchange failed."""


class PeerUnreachable(RequestError):
    """No connection could be made to the peer."""


class ProtocolNotSupported(RequestError):
    """The peer does not speak the requested protocol."""


class RequestTimeout(RequestError):
    """The peer did not answer completely within the deadline."""


class RequestTooLarge(RequestError):
    """Our own request exceeds the protocol's request size limit."""


class BadResponse(RequestError):
    """The peer's response was malformed."""


class RemoteError(RequestError):
    """The peer handled the request and answered with an error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class RequestRejected(NetError):
    """Raised by a request handler to answer with an error (code, message).

    The peer receives it as :class:`RemoteError` with the same code and message.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class GossipError(NetError):
    """A local publish cannot be made (message too large, unknown topic, ...)."""


class GossipInvalid(NetError):
    """Raised by a topic validator: drop the message and charge its forwarder.

    ``penalty`` is how much the peer that handed us the message is charged
    (0 for things an honest relay may do, e.g. relay an offer that expired in
    flight; high for what no honest node relays, e.g. a forged signature).
    """

    def __init__(self, reason: str, penalty: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.penalty = penalty
