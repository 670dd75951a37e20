"""The compiled methods of dataclasses, cached across daemon starts (like ``.pyc`` files for them).

``@dataclass`` writes the source of ``__init__``, ``__repr__``, ``__eq__``,
``__setattr__``, ... for each class and compiles it with ``exec`` at import
time; CPython 3.11 caches none of it. The daemon imports ~260 dataclasses
(~140 of ours, the rest libp2p's, pydantic's, FastAPI's, ...): ~1,200
generated functions, and their compilation was ~150-190 ms of a ~800 ms start
(docs/decisions.md, "Start-up, continued"). :func:`install` makes
``dataclasses._create_fn`` take the compiled code of a text it has seen before
from a cache file (marshalled code objects with an index by the blake2b of the
source text, so a changed class simply misses; the file is mapped, not read, and
a code object is unmarshalled only when used) and :func:`finish` writes the
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
import hashlib
import marshal
import mmap
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

MAX_ENTRIES = 10_000
"""A cache grown beyond this (many versions of the code over time) starts afresh."""

_index: dict[bytes, int] = {}  # blake2b(text) -> offset << 32 | length of its marshalled code in the file
_mm: mmap.mmap | None = None  # the file, mapped: a code object is unmarshalled only when used
_blob = 0  # where the marshalled codes start in it
_added: dict[bytes, bytes] = {}  # compiled in this process: key -> marshalled code
_path: Path | None = None
_lock = threading.Lock()
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
    key = hashlib.blake2b(txt.encode(), digest_size=20).digest()
    with _lock:  # finish() may unmap the file from another thread meanwhile
        packed = _index.get(key)
        cached = _added.get(key)
        if packed is not None and _mm is not None:
            at = _blob + (packed >> 32)
            cached = _mm[at:at + (packed & 0xFFFFFFFF)]
    if cached is not None:
        code = marshal.loads(cached)
    else:
        code = compile(txt, "<string>", "exec", dont_inherit=True)  # what exec(txt) compiles there
        with _lock:
            _added[key] = marshal.dumps(code)
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
    _load(_path)
    global _original
    _original = dataclasses._create_fn  # type: ignore[attr-defined]
    dataclasses._create_fn = _create_fn  # type: ignore[attr-defined]
    return True


def _load(path: Path) -> None:
    """Map the file: 8 bytes (the index's length), the marshalled index, then the marshalled codes."""
    global _mm, _blob
    try:
        with open(path, "rb") as f:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):  # absent or empty: compile
        return
    try:
        n = int.from_bytes(mm[:8], "little")
        index = marshal.loads(mm[8:8 + n])
        if not isinstance(index, dict) or len(index) > MAX_ENTRIES or 8 + n > len(mm):
            raise ValueError("not a cache index")
        blob = 8 + n
        if any(not isinstance(k, bytes) or not isinstance(v, int) or blob + (v >> 32) + (v & 0xFFFFFFFF) > len(mm)
               for k, v in index.items()):
            raise ValueError("an entry beyond the file")
    except (ValueError, EOFError, TypeError):  # damaged or from another build: compile, rewrite it
        mm.close()
        return
    _index.update(index)
    _mm, _blob = mm, blob


def finish() -> bool:
    """Once the node is up: write the cache if texts were compiled since it was read, then give
    ``dataclasses`` its own function back and drop the cache (unmapped). True if written."""
    global _original, _mm
    with _lock:
        try:
            return save()
        finally:
            if _original is not None:
                dataclasses._create_fn = _original  # type: ignore[attr-defined]
                _original = None
            _index.clear()
            _added.clear()
            if _mm is not None:
                _mm.close()
                _mm = None


def save() -> bool:
    """Write the cache if texts were compiled since it was read (atomically, mode 0600); True if written."""
    if _path is None or not _added:
        return False
    entries: dict[bytes, bytes] = {}
    if _mm is not None:
        for key, packed in _index.items():
            at = _blob + (packed >> 32)
            entries[key] = _mm[at:at + (packed & 0xFFFFFFFF)]
    entries.update(_added)
    index: dict[bytes, int] = {}
    offset = 0
    for key, code in entries.items():
        index[key] = offset << 32 | len(code)
        offset += len(code)
    head = marshal.dumps(index)
    try:
        _path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=_path.parent, prefix=".dataclass-code-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(len(head).to_bytes(8, "little"))
                f.write(head)
                for code in entries.values():
                    f.write(code)
            os.replace(tmp, _path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        return False  # a read-only home: the next start compiles again, nothing else changes
    _added.clear()
    return True
