"""The exception tree of ``market``.

::

    YagnaError                      (yagna.core) root of everything we raise on purpose
    └── MarketError                 root of the market's errors
        ├── ConstraintSyntaxError   a constraint text does not parse; carries
        │                           ``.position`` and ``.expected``
        └── PropertyError           a property set is invalid (name, type, size)

Both leaf errors are raised on *remote* input (offers and demands arrive from
peers), so they must be the only exceptions the parsers and validators raise.
"""

from __future__ import annotations

from yagna.core.errors import YagnaError


class MarketError(YagnaError):
    """Root of every error the market raises on purpose."""


class ConstraintSyntaxError(MarketError):
    """A constraint text is not valid LDAP-filter syntax.

    ``position`` is the 0-based index into the text where parsing stopped and
    ``expected`` says, in words, what would have been accepted there; both are
    meant for a message the user can act on.
    """

    def __init__(self, position: int, expected: str, found: str | None = None) -> None:
        self.position = position
        self.expected = expected
        self.found = found
        where = "end of input" if found is None else repr(found)
        super().__init__(f"constraint syntax error at position {position}: expected {expected}, found {where}")


class PropertyError(MarketError):
    """A property set is invalid: bad name, unsupported value type, or too large."""
