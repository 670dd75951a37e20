"""The payer's signed promise that opens a channel: terms plus the deposit locked for them.

Sealed by the payer with domain ``yagna/channel-open/1``; the payload is the
positional list ``[network_id, driver, channel_id, agreement_id, payer, payee,
currency, deposit]``. The payee opens it against what it already knows (the
agreement's parties and network, its own driver) before accepting the deposit
through its driver; from then on those terms, not any later message, say what
a voucher must carry.
"""

from __future__ import annotations

from dataclasses import dataclass

from payments.errors import PaymentError
from yagna.core.envelope import open_signed, seal
from yagna.core.errors import WireError
from yagna.core.identity import NodeKey

CHANNEL_OPEN_DOMAIN = "yagna/channel-open/1"
MAX_CHANNEL_OPEN_SIZE = 2048
ID_MAX = 128


class ChannelOpenRejected(PaymentError):
    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(f"{code}: {message}")


@dataclass(frozen=True)
class ChannelOpen:
    network_id: str
    driver: str
    channel_id: str
    agreement_id: str
    payer: str
    payee: str
    currency: str
    deposit: int
    raw: bytes


def seal_channel_open(key: NodeKey, *, network_id: str, driver: str, channel_id: str, agreement_id: str,
                      payee: str, currency: str, deposit: int) -> bytes:
    if not isinstance(deposit, int) or isinstance(deposit, bool) or deposit <= 0:
        raise ValueError(f"deposit must be a positive int of base units, not {deposit!r}")
    payload = [network_id, driver, channel_id, agreement_id, key.node_id, payee, currency, deposit]
    return seal(key, CHANNEL_OPEN_DOMAIN, payload)


def open_channel_open(raw: bytes, *, network_id: str, payer: str, payee: str, agreement_id: str) -> ChannelOpen:
    """Verify a channel-open against what the payee knows; :class:`ChannelOpenRejected` names the problem."""
    if not isinstance(raw, bytes) or len(raw) > MAX_CHANNEL_OPEN_SIZE:
        raise ChannelOpenRejected("malformed", "not a channel-open message (or too large)")
    try:
        signed = open_signed(raw, domain=CHANNEL_OPEN_DOMAIN, max_size=MAX_CHANNEL_OPEN_SIZE, expected_signer=payer,
                             bignums=True)
    except WireError as exc:
        raise ChannelOpenRejected("bad-signature", f"not signed by the agreement's requestor: {exc}") from None
    p = signed.payload
    if not (isinstance(p, list) and len(p) == 8 and all(isinstance(x, str) for x in p[:7])
            and isinstance(p[7], int) and not isinstance(p[7], bool)):
        raise ChannelOpenRejected("malformed", "payload must be [network, driver, channel, agreement, payer, payee, currency, deposit]")
    opened = ChannelOpen(*p, raw=raw)  # type: ignore[arg-type,misc]  # eight fields, shapes checked above
    for name, want in (("network_id", network_id), ("agreement_id", agreement_id), ("payer", payer), ("payee", payee)):
        if getattr(opened, name) != want:
            raise ChannelOpenRejected(f"wrong-{name.split('_')[0]}", f"{name} is {getattr(opened, name)!r}, expected {want!r}")
    if not 0 < len(opened.channel_id) <= ID_MAX:
        raise ChannelOpenRejected("malformed", "bad channel id")
    if opened.deposit <= 0:
        raise ChannelOpenRejected("malformed", "deposit must be positive")
    return opened
