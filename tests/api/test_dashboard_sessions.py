"""The dashboard's login tokens and sessions: single use, expiry on the clock, bounded counts."""

from __future__ import annotations

import pytest
import trio

from yagna.api.dashboard.sessions import MAX_SECRET_CHARS, SessionStore, TokenRefused


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _refused(store: SessionStore, token: str) -> str:
    with pytest.raises(TokenRefused) as info:
        store.redeem(token)
    return info.value.reason


def test_a_token_buys_one_session_once() -> None:
    store = SessionStore(clock=Clock())
    token = store.issue_token()
    session = store.redeem(token)
    assert store.check(session) and session != token
    assert _refused(store, token) == "used"
    assert not store.check(token)  # a token is no session


@pytest.mark.parametrize("token", ["", "x", "A" * 43, "é" * 10, "t" * (MAX_SECRET_CHARS + 1)])
def test_garbage_is_unknown(token: str) -> None:
    store = SessionStore(clock=Clock())
    store.issue_token()
    assert _refused(store, token) == "unknown"
    assert not store.check(token)


def test_token_expires_after_its_life() -> None:
    clock = Clock()
    store = SessionStore(clock=clock, token_ttl_s=60)
    early, late = store.issue_token(), store.issue_token()
    clock.now += 59.9
    store.redeem(early)
    clock.now += 0.1
    assert _refused(store, late) == "expired"
    clock.now += 1  # purged on the next issue: then it is garbage like any other
    store.issue_token()
    assert _refused(store, late) == "unknown"


def test_session_expires() -> None:
    clock = Clock()
    store = SessionStore(clock=clock, session_ttl_s=3600)
    session = store.redeem(store.issue_token())
    clock.now += 3599
    assert store.check(session)
    clock.now += 1
    assert not store.check(session)
    assert store.counts() == (0, 0)  # the used token went with its own life


def test_counts_are_bounded_oldest_first() -> None:
    store = SessionStore(clock=Clock(), max_tokens=3, max_sessions=2)
    tokens = [store.issue_token() for _ in range(5)]
    assert store.counts() == (3, 0)
    assert _refused(store, tokens[0]) == "unknown" and _refused(store, tokens[1]) == "unknown"
    sessions = [store.redeem(store.issue_token()) for _ in range(3)]
    assert store.counts()[1] == 2
    assert not store.check(sessions[0]) and store.check(sessions[1]) and store.check(sessions[2])


async def test_expiry_on_trio_virtual_clock(autojump_clock: trio.abc.Clock) -> None:
    store = SessionStore(clock=trio.current_time, token_ttl_s=60, session_ttl_s=8 * 3600)
    token = store.issue_token()
    await trio.sleep(61)
    assert _refused(store, token) == "expired"
    session = store.redeem(store.issue_token())
    await trio.sleep(8 * 3600 - 1)
    assert store.check(session)
    await trio.sleep(1)
    assert not store.check(session)
