"""Test networks only: top the requestor's free balance up to what a job needs (:func:`ensure_funds`)."""

from __future__ import annotations

import logging

from requestor_sdk.budget import parse_tokens, tokens
from requestor_sdk.client import Api
from yagna.core.money import UNIT

__all__ = ["ensure_funds", "shortfall"]

log = logging.getLogger("requestor_sdk")


def shortfall(free: int, needed: int) -> int:
    """What to fund so that ``free >= needed``: whole tokens, at least one; 0 when nothing is missing."""
    if free >= needed:
        return 0
    return max(UNIT, -(-(needed - free) // UNIT) * UNIT)


async def ensure_funds(api: Api, needed: int) -> tuple[int, int]:
    """On a test network (tokens of no value), fund the node's account when its free balance is below
    ``needed`` base units; returns ``(funded, free_before)`` in base units (``funded`` 0: nothing done).

    On a network with real money nothing is funded: a deposit the balance cannot back fails later, with
    the daemon's message."""
    status = await api.payment_status()
    free = parse_tokens(str(status["balance"]["free"]), "free balance")
    missing = shortfall(free, needed)
    if not missing or not status.get("test_network"):
        return 0, free
    await api.fund(tokens(missing))
    log.info("funded %s test tokens: the free balance (%s) was below %s", tokens(missing), tokens(free), tokens(needed))
    return missing, free
