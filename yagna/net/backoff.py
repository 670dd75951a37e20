"""Reconnection backoff (pure): exponential, capped, with jitter."""

from __future__ import annotations

import random


def redial_delay(
    failures: int, *, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None
) -> float:
    """Seconds to wait before the next dial after ``failures`` failed attempts.

    ``failures == 0`` (a peer that just dropped) waits ``base``; each failure
    doubles it up to ``cap``. Jitter of +-20 % keeps a network that lost one
    node from redialing it in lockstep.
    """
    delay = min(cap, base * (2 ** min(failures, 32)))
    jitter = (rng or random).uniform(0.8, 1.2)
    return min(cap, delay * jitter)
