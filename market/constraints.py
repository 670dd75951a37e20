"""Golem's constraint language (LDAP-filter syntax): AST, parser, printer, evaluation.

Grammar (whitespace is allowed around filters and after ``(``, ``&``, ``|``, ``!``;
inside a comparison every character up to the closing ``)`` is part of it)::

    filter     := "(" ")"                      always true
                | "(" "&" filter* ")"          Kleene AND (empty: YES)
                | "(" "|" filter* ")"          Kleene OR  (empty: NO)
                | "(" "!" filter ")"           NOT
                | "(" attr "=*" ")"            presence
                | "(" attr ["$v"] op value ")"
    op         := "=" | "<" | "<=" | ">" | ">="
    value      := one or more characters; "\\(", "\\)", "\\*", "\\\\", "\\=" escape
                  (the printer escapes "=" only at a value's start);
                  an unescaped "*" is a wildcard, allowed with "=" only

The parser is hand-written recursive descent with a length and a nesting cap,
and raises nothing but :class:`ConstraintSyntaxError` whatever the input,
because constraints arrive from peers. :func:`format` prints the canonical
text (no whitespace, minimal escapes) and ``parse(format(c)) == c``.

Evaluation is three-valued (:class:`Tri`):

* a missing property is ``UNDEFINED``;
* a literal that cannot be read as the property's type (``(mem>=lots)`` on a
  number, ``$v`` on a non-version, ``<`` on a bool or list) is ``UNDEFINED``:
  the question cannot be answered, which is not the same as "no" (so
  ``!`` of it stays undefined and never turns into a match);
* ``&`` / ``|`` are Kleene AND / OR, ``!`` swaps YES and NO.

The literal is interpreted by the property's type: numbers numerically (an
int property against ``0.5`` compares as numbers; an int property also accepts
an ISO 8601 instant, read as ms since the epoch, for datetimes such as
``golem.srv.comp.expiration``), bools as ``true``/``false``, strings as
themselves (with ``*`` wildcards for ``=``), versions semantically with ``$v``.
``=`` on a list is membership: YES if some element equals, else NO.
"""

from __future__ import annotations

import builtins
import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache

from market.errors import ConstraintSyntaxError
from market.properties import Version, lookup

MAX_CONSTRAINT_LENGTH = 16 * 1024
"""Longest constraint text accepted (Golem demands are a few hundred characters)."""
MAX_DEPTH = 32
"""Deepest nesting of parentheses accepted; keeps recursion far from Python's limit."""


class Tri(enum.IntEnum):
    """Three-valued truth. Ordered NO < UNDEFINED < YES, so AND is min and OR is max."""

    NO = 0
    UNDEFINED = 1
    YES = 2


class Op(enum.Enum):
    """Comparison operators."""

    EQ = "="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="


# -- AST -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Empty:
    """``()``: always true."""


@dataclass(frozen=True)
class And:
    """``(&f...)``."""

    items: tuple[Constraint, ...]


@dataclass(frozen=True)
class Or:
    """``(|f...)``."""

    items: tuple[Constraint, ...]


@dataclass(frozen=True)
class Not:
    """``(!f)``."""

    item: Constraint


@dataclass(frozen=True)
class Present:
    """``(attr=*)``: the property exists."""

    attr: str


@dataclass(frozen=True)
class Compare:
    """``(attr op value)`` or, with ``version``, ``(attr$v op value)``.

    ``value`` is the unescaped literal (non-empty); it is typed only at
    evaluation, by the property it meets.
    """

    attr: str
    op: Op
    value: str
    version: bool = False


@dataclass(frozen=True)
class Like:
    """``(attr=a*b*c)``: string equality with wildcards; ``parts`` are the literal pieces.

    ``len(parts) >= 2``; ``("", "")`` is not a ``Like`` but :class:`Present`.
    """

    attr: str
    parts: tuple[str, ...]


Constraint = Empty | And | Or | Not | Present | Compare | Like

ATTR_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.?")
_ESCAPABLE = frozenset("()*\\=")
_WS = frozenset(" \t\r\n")


# -- parser ----------------------------------------------------------------------------
class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, expected: str, pos: int | None = None) -> ConstraintSyntaxError:
        p = self.pos if pos is None else pos
        found = self.text[p] if p < len(self.text) else None
        return ConstraintSyntaxError(p, expected, found)

    def skip_ws(self) -> None:
        text, n = self.text, len(self.text)
        while self.pos < n and text[self.pos] in _WS:
            self.pos += 1

    def peek(self) -> str | None:
        return self.text[self.pos] if self.pos < len(self.text) else None

    def filter(self, depth: int) -> Constraint:
        if self.peek() != "(":
            raise self.fail("'('")
        if depth > MAX_DEPTH:
            raise self.fail(f"nesting depth at most {MAX_DEPTH}")
        self.pos += 1
        self.skip_ws()
        c = self.peek()
        if c == ")":
            self.pos += 1
            return Empty()
        if c in ("&", "|"):
            kind = And if c == "&" else Or
            self.pos += 1
            items: list[Constraint] = []
            while True:
                self.skip_ws()
                c = self.peek()
                if c == ")":
                    self.pos += 1
                    return kind(tuple(items))
                if c != "(":
                    raise self.fail("'(' or ')'")
                items.append(self.filter(depth + 1))
        if c == "!":
            self.pos += 1
            self.skip_ws()
            item = self.filter(depth + 1)
            self.skip_ws()
            if self.peek() != ")":
                raise self.fail("')'")
            self.pos += 1
            return Not(item)
        return self.item()

    def item(self) -> Constraint:
        text, n = self.text, len(self.text)
        start = self.pos
        while self.pos < n and text[self.pos] in ATTR_CHARS:
            self.pos += 1
        if self.pos == start:
            raise self.fail("attribute name or one of '&', '|', '!', ')'")
        attr = text[start : self.pos]
        version = False
        if self.peek() == "$":
            self.pos += 1
            if self.peek() != "v":
                raise self.fail("'v' after '$'")
            self.pos += 1
            version = True
        c = self.peek()
        if c == "=":
            op = Op.EQ
        elif c in ("<", ">"):
            if self.pos + 1 < n and text[self.pos + 1] == "=":
                op = Op.LE if c == "<" else Op.GE
            else:
                op = Op.LT if c == "<" else Op.GT
        else:
            raise self.fail("operator ('=', '<', '<=', '>', '>=')")
        self.pos += len(op.value)
        value_start = self.pos
        parts, stars = self.value()
        if not stars and parts == [""]:
            raise self.fail("value", value_start)
        if stars:
            if version:
                raise self.fail("version without '*'", value_start + stars[0])
            if op is not Op.EQ:
                raise self.fail("value without unescaped '*' (wildcards need '=')", value_start + stars[0])
        self.pos += 1  # the ')' value() stopped at
        if stars:
            if parts == ["", ""]:
                return Present(attr)
            return Like(attr, tuple(parts))
        value = parts[0]
        if version:
            try:
                Version.parse(value)
            except ValueError:
                raise self.fail("version such as 1.2.3", value_start) from None
        return Compare(attr, op, value, version)

    def value(self) -> tuple[list[str], list[int]]:
        """Read up to the closing ``)``: literal pieces split at wildcards, and star offsets."""
        text, n = self.text, len(self.text)
        start = self.pos
        parts: list[str] = []
        stars: list[int] = []
        buf: list[str] = []
        while True:
            if self.pos >= n:
                raise self.fail("')'")
            c = text[self.pos]
            if c == ")":
                parts.append("".join(buf))
                return parts, stars
            if c == "(":
                raise self.fail("')' or an escaped '\\('")
            if c == "\\":
                nxt = text[self.pos + 1] if self.pos + 1 < n else None
                if nxt is None or nxt not in _ESCAPABLE:
                    raise self.fail("one of '(', ')', '*', '\\', '=' after '\\'", self.pos + 1)
                buf.append(nxt)
                self.pos += 2
                continue
            if c == "*":
                stars.append(self.pos - start)
                parts.append("".join(buf))
                buf = []
            else:
                buf.append(c)
            self.pos += 1


def parse(text: str) -> Constraint:
    """Parse a constraint; raises only :class:`ConstraintSyntaxError`."""
    if not isinstance(text, str):
        raise ConstraintSyntaxError(0, "a string", None)
    if len(text) > MAX_CONSTRAINT_LENGTH:
        raise ConstraintSyntaxError(MAX_CONSTRAINT_LENGTH, f"at most {MAX_CONSTRAINT_LENGTH} characters", text[MAX_CONSTRAINT_LENGTH])
    p = _Parser(text)
    p.skip_ws()
    result = p.filter(1)
    p.skip_ws()
    if p.pos != len(text):
        raise p.fail("end of input")
    return result


# -- printer ---------------------------------------------------------------------------
def _escape(text: str) -> str:
    """Escape specials; '=' only at the start, where ``(a<=x)`` would read as ``<=``."""
    out = "".join("\\" + c if c in "()*\\" else c for c in text)
    return "\\" + out if out.startswith("=") else out


def format(constraint: Constraint) -> str:  # noqa: A001 - the natural name, module-scoped
    """The canonical text of ``constraint``: no whitespace, minimal escapes."""
    if isinstance(constraint, Empty):
        return "()"
    if isinstance(constraint, And):
        return "(&" + "".join(format(i) for i in constraint.items) + ")"
    if isinstance(constraint, Or):
        return "(|" + "".join(format(i) for i in constraint.items) + ")"
    if isinstance(constraint, Not):
        return "(!" + format(constraint.item) + ")"
    if isinstance(constraint, Present):
        return f"({constraint.attr}=*)"
    if isinstance(constraint, Like):
        return f"({constraint.attr}=" + "*".join(_escape(p) for p in constraint.parts) + ")"
    if isinstance(constraint, Compare):
        tag = "$v" if constraint.version else ""
        return f"({constraint.attr}{tag}{constraint.op.value}{_escape(constraint.value)})"
    raise TypeError(f"not a constraint: {constraint!r}")


# -- evaluation ------------------------------------------------------------------------
Properties = Mapping[str, object]
Predicate = Callable[[Properties], Tri]

YES, NO, UNDEFINED = Tri.YES, Tri.NO, Tri.UNDEFINED

_INT_RE = re.compile(r"[+-]?\d{1,30}")
_FLOAT_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _as_number(text: str) -> int | float | None:
    """The literal as a number, an ISO 8601 instant as ms since the epoch, else None."""
    t = text.strip()
    if _INT_RE.fullmatch(t):
        return int(t)
    if len(t) <= 64 and _FLOAT_RE.fullmatch(t):
        value = float(t)
        return value if value not in (float("inf"), float("-inf")) else None
    if 8 <= len(t) <= 40 and t[:4].isdigit():
        try:
            when = datetime.fromisoformat(t.replace("Z", "+00:00"))
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
            return int(when.timestamp() * 1000)
        except (ValueError, OverflowError):
            return None
    return None


def _as_bool(text: str) -> bool | None:
    t = text.strip().lower()
    return True if t == "true" else False if t == "false" else None


def _ordered(op: Op) -> Callable[[object, object], bool]:
    if op is Op.EQ:
        return lambda a, b: a == b
    if op is Op.LT:
        return lambda a, b: a < b  # type: ignore[operator]
    if op is Op.LE:
        return lambda a, b: a <= b  # type: ignore[operator]
    if op is Op.GT:
        return lambda a, b: a > b  # type: ignore[operator]
    return lambda a, b: a >= b  # type: ignore[operator]


@lru_cache(maxsize=1024)
def _property_version(text: str) -> Version | None:
    """A property's version, cached: thousands of offers share a handful of versions."""
    try:
        return Version.parse(text)
    except ValueError:
        return None


def _scalar_compare(c: Compare) -> Callable[[object], Tri]:
    """A closure comparing one scalar property value with ``c``'s literal (typed once)."""
    literal = c.value
    cmp = _ordered(c.op)
    if c.version:
        ver = Version.parse(literal)

        def version(value: object) -> Tri:
            if not isinstance(value, str):
                return UNDEFINED
            have = _property_version(value)
            if have is None:
                return UNDEFINED
            return YES if cmp(have, ver) else NO

        return version
    number = _as_number(literal)
    boolean = _as_bool(literal)
    is_eq = c.op is Op.EQ

    def scalar(value: object) -> Tri:
        if isinstance(value, str):
            return YES if cmp(value, literal) else NO
        if isinstance(value, bool):
            if boolean is None or not is_eq:
                return UNDEFINED
            return YES if value is boolean else NO
        if isinstance(value, (int, float)):
            if number is None:
                return UNDEFINED
            return YES if cmp(value, number) else NO
        return UNDEFINED

    return scalar


def _like(parts: tuple[str, ...]) -> Callable[[str], bool]:
    """A wildcard matcher in linear time (a regex of many ``.*`` can backtrack for ages).

    The first and last pieces anchor the ends; each middle piece is taken at
    its leftmost place after the previous one, which is always a correct
    choice when ``*`` is the only metacharacter.
    """
    first, middle, last = parts[0], parts[1:-1], parts[-1]
    least = sum(len(p) for p in parts)

    def like(s: str) -> bool:
        if len(s) < least or not s.startswith(first) or not s.endswith(last):
            return False
        pos, end = len(first), len(s) - len(last)
        for piece in middle:
            i = s.find(piece, pos, end)
            if i < 0:
                return False
            pos = i + len(piece)
        return True

    return like


def compile(constraint: Constraint) -> Predicate:  # noqa: A001 - module-scoped
    """Turn ``constraint`` into a closure ``properties -> Tri`` (type the literals once)."""
    if isinstance(constraint, Empty):
        return lambda props: YES
    if isinstance(constraint, And):
        preds = tuple(compile(i) for i in constraint.items)
        if len(preds) == 1:
            return preds[0]

        def and_(props: Properties) -> Tri:
            result = YES
            for p in preds:
                r = p(props)
                if r is NO:
                    return NO
                if r is UNDEFINED:
                    result = UNDEFINED
            return result

        return and_
    if isinstance(constraint, Or):
        preds = tuple(compile(i) for i in constraint.items)
        if len(preds) == 1:
            return preds[0]

        def or_(props: Properties) -> Tri:
            result = NO
            for p in preds:
                r = p(props)
                if r is YES:
                    return YES
                if r is UNDEFINED:
                    result = UNDEFINED
            return result

        return or_
    if isinstance(constraint, Not):
        inner = compile(constraint.item)
        swap = {YES: NO, NO: YES, UNDEFINED: UNDEFINED}
        return lambda props: swap[inner(props)]
    attr = constraint.attr
    if isinstance(constraint, Present):
        return lambda props: NO if lookup(props, attr) is None else YES
    if isinstance(constraint, Like):
        match = _like(constraint.parts)

        def like_one(value: object) -> Tri:
            return (YES if match(value) else NO) if isinstance(value, str) else UNDEFINED

        one: Callable[[object], Tri] = like_one
    else:
        one = _scalar_compare(constraint)
    is_eq = isinstance(constraint, Like) or constraint.op is Op.EQ

    def leaf(props: Properties) -> Tri:
        value = props.get(attr)
        if value is None:
            value = lookup(props, attr)
            if value is None:
                return UNDEFINED
        if isinstance(value, (list, tuple)):
            if not is_eq:
                return UNDEFINED
            for v in value:
                if one(v) is YES:
                    return YES
            return NO
        return one(value)

    return leaf


@lru_cache(maxsize=1024)
def compile_text(text: str) -> Predicate:
    """Parse and compile, cached by text (offers from one provider share constraints)."""
    return compile(parse(text))


def evaluate(constraint: Constraint | str, properties: Properties) -> Tri:
    """Three-valued truth of ``constraint`` (an AST or its text) on ``properties``."""
    if isinstance(constraint, builtins.str):
        return compile_text(constraint)(properties)
    return compile(constraint)(properties)
