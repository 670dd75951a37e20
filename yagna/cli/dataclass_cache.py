"""The compiled methods of dataclasses, cached across daemon starts (like ``.pyc`` files for them).

``@dataclass`` writes the source of ``__init__``, ``__repr__``, ``__eq__``,
``__setattr__``, ... for each class and compiles it with ``exec`` at import
time; CPython 3.11 caches none of it. The daemon imports ~260 dataclasses
(~140 of ours, the rest libp2p's, pydantic's, FastAPI's, ...): ~1,200
generated functions, and their compilation was ~150-190 ms of a ~800 ms start
(docs/decisions.md, "Start-up, continued"). :func:`install` makes
``dataclasses._create_fn`` take the compiled code of a text it has seen before
from a cache file (a marshalled ``{source text: code object}``, keyed by the
exact text, so a changed class simply misses) and :func:`finish` writes the
texts compiled since, once the node is up, and puts ``dataclasses`` back as it was. What runs is what ``exec(text)``
would have run: the same code compiled the same way (``"<string>"``, no
inherited ``__future__`` flags) and executed with the same globals and locals.

Only on the CPython whose ``_create_fn`` this mirrors (3.11); anywhere else,
or if the file is unreadable, dataclasses compile as usual. The file lives in
the user's cache directory (``$XDG_CACHE_HOME/yagna`` or ``~/.cache/yagna``,
mode 0600), like bytecode, not in a node's data dir: a node started on a fresh
data dir uses it too. ``YAGNA_DATACLASS_CACHE=0`` turns it off.
"""

from __future__ import annotations

import dataclasses
import marshal
import os
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

MAX_ENTRIES = 10_000
"""A cache grown beyond this (many versions of the code over time) starts afresh."""

_codes: dict[str, types.CodeType] = {}
_new = 0
_path: Path | None = None
_original: Any = None


def cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "yagna" / f"dataclass-code.{sys.implementation.cache_tag}.marshal"


def _supported() -> bool:
    if sys.implementation.name != "cpython" or sys.version_info[:2] != (3, 11):
        return False
    fn = getattr(dataclasses, "_create_fn", None)
    code = getattr(fn, "__code__", None)
    if code is None or code.co_varnames[:6] != ("name", "args", "body", "globals", "locals", "return_type"):
        return False
    return any(isinstance(c, str) and "def __create_fn__(" in c for c in code.co_consts)


def _create_fn(name: str, args: list[str], body: list[str], *, globals: Any = None, locals: Any = None,
               return_type: Any = dataclasses.MISSING) -> Any:
    """``dataclasses._create_fn`` of CPython 3.11, the compiled text taken from the cache when there."""
    global _new
    if locals is None:
        locals = {}
    return_annotation = ""
    if return_type is not dataclasses.MISSING:
        locals["_return_type"] = return_type
        return_annotation = "->_return_type"
    args_text = ",".join(args)
    body_text = "\n".join(f"  {b}" for b in body)
    txt = f" def {name}({args_text}){return_annotation}:\n{body_text}"
    local_vars = ", ".join(locals.keys())
    txt = f"def __create_fn__({local_vars}):\n{txt}\n return {name}"
    code = _codes.get(txt)
    if code is None:
        code = compile(txt, "<string>", "exec", dont_inherit=True)  # what exec(txt) compiles there
        _codes[txt] = code
        _new += 1
    ns: dict[str, Any] = {}
    exec(code, globals, ns)
    return ns["__create_fn__"](**locals)


def install(path: Path | None = None) -> bool:
    """Serve dataclass methods from the cache file; False (and nothing changed) where not supported."""
    global _path
    if os.environ.get("YAGNA_DATACLASS_CACHE", "1") == "0" or not _supported():
        return False
    if dataclasses._create_fn is _create_fn:  # type: ignore[attr-defined]
        return True
    _path = path or cache_file()
    try:
        loaded = marshal.loads(_path.read_bytes())
        if isinstance(loaded, dict) and len(loaded) <= MAX_ENTRIES:
            _codes.update((k, v) for k, v in loaded.items() if isinstance(k, str) and isinstance(v, types.CodeType))
    except (OSError, ValueError, EOFError, TypeError):  # absent, unreadable or from another build: compile
        pass
    global _original
    _original = dataclasses._create_fn  # type: ignore[attr-defined]
    dataclasses._create_fn = _create_fn  # type: ignore[attr-defined]
    return True


def finish() -> bool:
    """Once the node is up: write the cache if texts were compiled since it was read, then give
    ``dataclasses`` its own function back and drop the cache from memory (~1 MiB). True if written."""
    global _original
    try:
        return save()
    finally:
        if _original is not None:
            dataclasses._create_fn = _original  # type: ignore[attr-defined]
            _original = None
        _codes.clear()


def save() -> bool:
    """Write the cache if texts were compiled since it was read (atomically, mode 0600); True if written."""
    global _new
    if _path is None or _new == 0:
        return False
    try:
        _path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = marshal.dumps(dict(_codes))
        fd, tmp = tempfile.mkstemp(dir=_path.parent, prefix=".dataclass-code-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, _path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        return False  # a read-only home: the next start compiles again, nothing else changes
    _new = 0
    return True
