"""Redundant execution: which result wins, pure and deterministic.

A task runs on ``k`` distinct providers (its *redundancy*). Each successful
run yields a *digest* (:func:`result_digest`: the exit code, the SHA-256 of
stdout and of every downloaded output). :func:`decide` looks at the digests
so far and says what to do:

- **accepted** when one digest has a strict majority of the ``k`` wanted
  (more than ``k / 2``) *and* of every result so far: with ``k = 3`` two
  equal results already win, the third cannot change that;
- **pending** with ``needed`` = how many more results are needed at the very
  least: ``k`` minus the results so far, or after a disagreement enough for
  the leading digest to reach a majority of all results
  (``n - 2c + 1`` for ``n`` results whose leader has ``c``);
- **failed** when no digest can reach a majority within ``max_results``
  (by default ``2k + 1``) results, with an explanation listing the digests.

The decision depends on the multiset of results only, never on their order.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["Decision", "decide", "default_max_results", "result_digest"]


def default_max_results(k: int) -> int:
    """The bound on results (distinct providers) for redundancy ``k``: ``2k + 1``, 1 for ``k = 1``."""
    return 1 if k <= 1 else 2 * k + 1


def result_digest(exit_code: int | None, stdout_sha256: str, outputs: Mapping[str, str]) -> str:
    """One hex digest for everything a run produced: exit code, stdout, and each output file's SHA-256."""
    body = json.dumps({"exit_code": exit_code, "stdout": stdout_sha256, "outputs": dict(sorted(outputs.items()))},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True)
class Decision:
    state: Literal["accepted", "pending", "failed"]
    digest: str | None = None
    """The accepted digest."""
    winners: tuple[str, ...] = ()
    """Providers whose result is the accepted one."""
    losers: tuple[str, ...] = ()
    """Providers whose result lost the vote (report them as ``disagreement``)."""
    needed: int = 0
    """Pending: at least this many more results are needed."""
    reason: str = ""


def decide(results: Sequence[tuple[str, str]], k: int, max_results: int | None = None) -> Decision:
    """Decide on ``results`` = ``[(provider_id, digest), ...]`` for redundancy ``k``."""
    if k < 1:
        raise ValueError(f"redundancy must be >= 1, got {k}")
    bound = default_max_results(k) if max_results is None else max_results
    if bound < k:
        raise ValueError(f"max_results ({bound}) must be >= redundancy ({k})")
    n = len(results)
    if n == 0:
        return Decision("pending", needed=k, reason=f"waiting for {k} result(s)")
    counts = Counter(d for _, d in results)
    digest, c = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if 2 * c > k and 2 * c > n:
        winners = tuple(p for p, d in results if d == digest)
        losers = tuple(p for p, d in results if d != digest)
        how = f"{c} of {n} result(s) agree" + (f"; {len(losers)} disagreed" if losers else "")
        return Decision("accepted", digest=digest, winners=winners, losers=losers, reason=how)
    needed = max(k - n, n - 2 * c + 1)
    if n + needed > bound:
        spread = ", ".join(f"{d[:12]} x{cnt}" for d, cnt in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        return Decision("failed", reason=f"no majority among {n} result(s) from distinct providers "
                                         f"(at most {bound} allowed): {spread}")
    if len(counts) > 1:
        reason = f"disagreement ({len(counts)} different results of {n}); {needed} more needed"
    else:
        reason = f"{n} of {k} result(s); {needed} more needed"
    return Decision("pending", needed=needed, reason=reason)
