"""The dashboard's logins: one-time tokens and the session cookies they buy, in memory only.

``yagna dashboard`` asks the daemon (with the app key) for a token; the link
``/dashboard/login?token=...`` trades it, once and within its short life, for a
random session id that the browser keeps in an HttpOnly cookie. Both are kept
as SHA-256 digests (a lookup never compares secrets byte by byte), both expire,
and both are bounded in number: the oldest is dropped to make room. A restart
of the daemon ends every session.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

TOKEN_TTL_S = 60.0
"""A login link works this long after ``yagna dashboard`` asked for it (and once)."""
SESSION_TTL_S = 8 * 3600.0
"""A browser session lasts this long; then ``yagna dashboard`` again."""
MAX_TOKENS = 16
"""Login tokens kept at most (unused, or used and not yet expired); the oldest goes first."""
MAX_SESSIONS = 32
"""Browser sessions kept at most; the oldest goes first."""
MAX_SECRET_CHARS = 128
"""Longer tokens or cookies are not even hashed (ours are 43 characters)."""

Refusal = Literal["unknown", "expired", "used"]


class TokenRefused(Exception):
    """A login token that buys no session: ``unknown``, ``expired`` or ``used`` (already traded)."""

    def __init__(self, reason: Refusal) -> None:
        super().__init__(reason)
        self.reason: Refusal = reason


@dataclass
class _Token:
    expires_at: float
    used: bool = False


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class SessionStore:
    """Login tokens and sessions on an injected monotonic ``clock`` (seconds)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, token_ttl_s: float = TOKEN_TTL_S,
                 session_ttl_s: float = SESSION_TTL_S, max_tokens: int = MAX_TOKENS,
                 max_sessions: int = MAX_SESSIONS) -> None:
        self._clock = clock
        self.token_ttl_s = token_ttl_s
        self.session_ttl_s = session_ttl_s
        self._max_tokens = max_tokens
        self._max_sessions = max_sessions
        self._tokens: dict[bytes, _Token] = {}  # insertion order = age
        self._sessions: dict[bytes, float] = {}  # digest -> expires at

    def issue_token(self) -> str:
        """A new one-time login token, valid ``token_ttl_s``."""
        self._purge()
        token = secrets.token_urlsafe(32)
        self._tokens[_digest(token)] = _Token(self._clock() + self.token_ttl_s)
        while len(self._tokens) > self._max_tokens:
            del self._tokens[next(iter(self._tokens))]
        return token

    def redeem(self, token: str) -> str:
        """Trade a token for a new session id; :class:`TokenRefused` says why not."""
        if not token or len(token) > MAX_SECRET_CHARS:
            raise TokenRefused("unknown")
        entry = self._tokens.get(_digest(token))
        if entry is None:
            raise TokenRefused("unknown")
        if self._clock() >= entry.expires_at:
            raise TokenRefused("expired")
        if entry.used:
            raise TokenRefused("used")
        entry.used = True  # kept until it expires, to tell a second use apart from garbage
        self._purge()
        session = secrets.token_urlsafe(32)
        self._sessions[_digest(session)] = self._clock() + self.session_ttl_s
        while len(self._sessions) > self._max_sessions:
            del self._sessions[next(iter(self._sessions))]
        return session

    def check(self, session: str) -> bool:
        """Whether ``session`` is a live session id."""
        if not session or len(session) > MAX_SECRET_CHARS:
            return False
        expires_at = self._sessions.get(_digest(session))
        if expires_at is None:
            return False
        if self._clock() >= expires_at:
            del self._sessions[_digest(session)]
            return False
        return True

    def counts(self) -> tuple[int, int]:
        """(tokens, sessions) held now."""
        self._purge()
        return len(self._tokens), len(self._sessions)

    def _purge(self) -> None:
        now = self._clock()
        for digest in [d for d, t in self._tokens.items() if now >= t.expires_at]:
            del self._tokens[digest]
        for digest in [d for d, e in self._sessions.items() if now >= e]:
            del self._sessions[digest]
