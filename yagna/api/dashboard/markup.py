"""A tiny HTML builder that escapes by default.

Every value becomes text unless it is :class:`Html` already, i.e. built here:
offer properties, node names, reasons and log lines come from strangers, and
none of them can reach the page as markup. Tag and attribute names come from
our own code only.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable

VOID = frozenset({"meta", "link", "br", "hr", "img", "input"})
_NAME = re.compile(r"^[a-z][a-z0-9]*$")
_ATTR = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]*$")  # SVG's are case-sensitive (viewBox)


class Html(str):
    """Markup made by this module (its values escaped); any other ``str`` is text."""

    __slots__ = ()


def esc(value: object) -> Html:
    """``value`` as HTML text (``None`` is empty); :class:`Html` passes unchanged."""
    if isinstance(value, Html):
        return value
    return Html(html.escape("" if value is None else str(value), quote=True))


def join(parts: Iterable[object], sep: str = "") -> Html:
    """The parts escaped (unless Html) and joined; ``sep`` is our own markup."""
    return Html(sep.join(esc(p) for p in parts))


def tag(element: str, /, *children: object, **attrs: object) -> Html:
    """``<element attrs>children</element>``. ``class_`` is ``class``, ``_`` in a name is ``-``; a None or
    False attribute is left out, True is a bare attribute; values and children are escaped."""
    if not _NAME.match(element):
        raise ValueError(f"bad tag name {element!r}")
    out = [f"<{element}"]
    for key, value in attrs.items():
        if value is None or value is False:
            continue
        attr = key.rstrip("_").replace("_", "-")
        if not _ATTR.match(attr):
            raise ValueError(f"bad attribute name {attr!r}")
        out.append(f" {attr}" if value is True else f' {attr}="{esc(value)}"')
    out.append(">")
    if element in VOID:
        if children:
            raise ValueError(f"<{element}> takes no children")
        return Html("".join(out))
    out.append(join(children))
    out.append(f"</{element}>")
    return Html("".join(out))


def clip(value: object, limit: int = 80) -> str:
    """``value`` as text of at most ``limit`` characters (a stranger's long string stays short)."""
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
