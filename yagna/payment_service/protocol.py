"""The payment protocol's spec and what both sides of an agreement derive from it.

The messages of ``/yagna/payment/1.0.0`` (typed, with their encoding and
decoding) live in :mod:`payments.messages`; a voucher travels one way only
(stored, then sent until the reply acknowledges it, the provider replying
only after its commit). Every signed object is a :mod:`payments` envelope
checked against the channel's terms.
"""

from __future__ import annotations

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
