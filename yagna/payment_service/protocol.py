"""The payment protocol's spec and what both sides of an agreement derive from it.

The messages of ``/yagna/payment/1.0.0`` (typed, with their encoding and
decoding) live in :mod:`payments.messages`; a voucher travels one way only
(stored, then sent until the reply acknowledges it, the provider replying
only after its commit). Every signed object is a :mod:`payments` envelope
checked against the channel's terms.
"""

from __future__ import annotations

from dataclasses import dataclass

from market.agreement import Agreement
from market.pricing import LinearPricing
from market.properties import (
    COM_SCHEME_PAYU_DEBIT_NOTE_INTERVAL_SEC,
    COM_SCHEME_PAYU_PAYMENT_TIMEOUT_SEC,
    INF_CPU_THREADS,
)
from yagna.core import wire
from yagna.net.reqresp import ProtocolSpec
from payments.voucher import ChannelTerms

PAYMENT = ProtocolSpec("/yagna/payment/1.0.0", max_request_size=8 * 1024, max_response_size=8 * 1024, timeout=10.0)

CLOSE_MARGIN_MIN_S = 600
"""The provider closes a chain channel this long (at least) before the payer may take it back."""
MIN_CHANNEL_LIFE_S = 2 * CLOSE_MARGIN_MIN_S
"""A provider refuses a chain deposit that expires sooner than this from now."""


@dataclass(frozen=True)
class SettlementInfo:
    """Where a node settles when it is on a chain (None on the test-network ledger)."""

    binding: bytes
    """Its settlement binding (node id <-> 0x address, payments.evm.binding)."""
    chain_id: int
    contract: str


def close_margin(life_s: int) -> int:
    """How long before a channel's expiry its payee closes it: 10 % of its life, at least 10 minutes."""
    return max(CLOSE_MARGIN_MIN_S, life_s // 10)


def channel_expiry(now: int, lifetime_s: int) -> int:
    """The expiry a payer sets: the agreement's life plus twice the payee's closing margin."""
    return now + lifetime_s + 2 * close_margin(lifetime_s)


DEFAULT_INTERVAL_S = 120
DEFAULT_TIMEOUT_S = 120


def terms_bytes(terms: ChannelTerms) -> bytes:
    return wire.encode(terms.to_record())


def terms_from_bytes(raw: bytes) -> ChannelTerms:
    return ChannelTerms.from_record(wire.decode(raw, bignums=True))  # type: ignore[arg-type]  # deposits are 256-bit


def pricing_of(agreement: Agreement) -> LinearPricing:
    return LinearPricing.from_properties(agreement.offer_properties)


def threads_of(agreement: Agreement) -> int:
    threads = agreement.offer_properties.get(INF_CPU_THREADS, 1)
    return threads if isinstance(threads, int) and threads > 0 else 1


def payment_terms(agreement: Agreement) -> tuple[float, float]:
    """``(debit-note interval, payment timeout)`` in seconds, as settled in the agreement (Golem's defaults otherwise)."""
    def term(name: str, default: int) -> float:
        value = agreement.terms.get(name, agreement.offer_properties.get(name, default))
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else float(default)

    return (term(COM_SCHEME_PAYU_DEBIT_NOTE_INTERVAL_SEC, DEFAULT_INTERVAL_S),
            term(COM_SCHEME_PAYU_PAYMENT_TIMEOUT_SEC, DEFAULT_TIMEOUT_S))
