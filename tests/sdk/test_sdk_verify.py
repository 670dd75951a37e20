"""Voting on redundant results (requestor_sdk.verify): examples and invariants."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from requestor_sdk.verify import decide, default_max_results, result_digest


def r(*digests: str) -> list[tuple[str, str]]:
    return [(f"p{i}", d) for i, d in enumerate(digests)]


def test_single_result_is_accepted_with_redundancy_one() -> None:
    d = decide(r("a"), 1)
    assert d.state == "accepted" and d.digest == "a" and d.winners == ("p0",) and d.losers == ()


def test_nothing_yet_needs_k() -> None:
    assert decide([], 3).needed == 3 and decide([], 3).state == "pending"


def test_k2_agreement_and_disagreement() -> None:
    assert decide(r("a"), 2).needed == 1
    assert decide(r("a", "a"), 2).state == "accepted"
    d = decide(r("a", "b"), 2)
    assert d.state == "pending" and d.needed == 1 and "disagreement" in d.reason
    d = decide(r("a", "b", "a"), 2)
    assert d.state == "accepted" and d.digest == "a" and d.losers == ("p1",) and d.winners == ("p0", "p2")


def test_k2_three_way_split_needs_two_more_then_fails_at_the_bound() -> None:
    assert decide(r("a", "b", "c"), 2).needed == 2
    assert decide(r("a", "b", "c", "a"), 2).needed == 1
    assert decide(r("a", "b", "c", "a", "a"), 2).state == "accepted"
    d = decide(r("a", "b", "c", "a", "b"), 2)
    assert d.state == "failed" and "no majority among 5" in d.reason and "at most 5" in d.reason


def test_k3_two_equal_results_already_win() -> None:
    d = decide(r("a", "a"), 3)
    assert d.state == "accepted" and d.winners == ("p0", "p1")


def test_k3_one_against_one_needs_one_more() -> None:
    assert decide(r("a", "b"), 3).needed == 1


def test_bound_defaults() -> None:
    assert default_max_results(1) == 1 and default_max_results(2) == 5 and default_max_results(3) == 7
    with pytest.raises(ValueError):
        decide([], 0)
    with pytest.raises(ValueError):
        decide([], 3, max_results=2)


def test_digest_covers_exit_code_stdout_and_outputs_in_any_order() -> None:
    base = result_digest(0, "s", {"a": "1", "b": "2"})
    assert base == result_digest(0, "s", {"b": "2", "a": "1"})
    assert base != result_digest(1, "s", {"a": "1", "b": "2"})
    assert base != result_digest(0, "t", {"a": "1", "b": "2"})
    assert base != result_digest(0, "s", {"a": "1", "b": "3"})
    assert base != result_digest(0, "s", {"a": "1"})


digests = st.lists(st.sampled_from("abcd"), min_size=0, max_size=12)


@given(digests, st.integers(1, 5), st.randoms())
def test_invariants(ds: list[str], k: int, rnd) -> None:  # type: ignore[no-untyped-def]
    bound = default_max_results(k)
    ds = ds[:bound]
    results = r(*ds)
    d = decide(results, k)
    shuffled = list(results)
    rnd.shuffle(shuffled)
    again = decide(shuffled, k)
    # Order never matters.
    assert (again.state, again.digest, again.needed, set(again.winners), set(again.losers)) == \
           (d.state, d.digest, d.needed, set(d.winners), set(d.losers))
    counts = Counter(ds)
    if d.state == "accepted":
        c = counts[d.digest]  # type: ignore[index]
        assert 2 * c > len(ds) and 2 * c > k  # a strict majority of all results and of k
        assert set(d.winners) | set(d.losers) == {p for p, _ in results}
        assert not set(d.winners) & set(d.losers)
    elif d.state == "pending":
        assert d.needed >= 1 and len(ds) + d.needed <= bound
        # Adding `needed` copies of the leader is enough to decide.
        leader = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0] if counts else "z"
        more = results + [(f"q{i}", leader) for i in range(d.needed)]
        assert decide(more, k).state == "accepted"
    else:
        # No digest could still win within the bound.
        assert all(2 * (c + bound - len(ds)) <= bound or 2 * (c + bound - len(ds)) <= k for c in counts.values())


@given(st.integers(1, 5), st.lists(st.sampled_from("ab"), min_size=1, max_size=30))
def test_a_stream_of_results_always_decides_within_the_bound(k: int, stream: list[str]) -> None:
    """Feeding results as `needed` asks, the vote ends (accepted or failed) after at most 2k+1 results."""
    results: list[tuple[str, str]] = []
    feed = iter(stream * 20)
    while True:
        d = decide(results, k)
        if d.state != "pending":
            break
        for _ in range(d.needed):
            results.append((f"p{len(results)}", next(feed)))
    assert len(results) <= default_max_results(k)
