"""``yagna-forward``: the small static C program that bridges Unix sockets to a container's
TCP ports (source: ``yagna-forward.c`` next to this file; its header says what it does and
what it costs at most).

Inside a container without a network, ``yagna-forward DIR PORT [PORT ...]`` listens on
``DIR/PORT.sock`` (mode 0666) for each port and bridges every connection there to
``127.0.0.1:PORT`` (or ``[::1]:PORT``) in the container; it prints ``ready`` once all sockets
listen. The daemon bind-mounts DIR from the host and connects to the sockets.
``yagna-forward --probe PORT [TIMEOUT_MS]`` is a TCP health check (exit 0 or 1).

This module builds it (``build``, also ``python -m exeunit.forwarder``, run by ``make setup``)
and finds it (``find_binary``). Building needs a C compiler and a static libc
(Debian: ``gcc libc6-dev``). ``build`` blocks (a compiler run): from async code call it
through ``trio.to_thread.run_sync``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from exeunit.errors import RuntimeFailure

__all__ = ["BINARY_NAME", "CFLAGS", "ENV_BINARY", "SOURCE", "build", "default_binary", "find_binary", "find_compiler"]

SOURCE = Path(__file__).resolve().parent / "yagna-forward.c"
BINARY_NAME = "yagna-forward"
ENV_BINARY = "YAGNA_FORWARDER"
"""Environment variable naming a prebuilt binary; ``find_binary`` prefers it."""
CFLAGS = ("-static", "-O2", "-Wall", "-Wextra", "-Werror", "-std=c11", "-D_GNU_SOURCE")
CODE = "no-forwarder"
"""The ``RuntimeFailure.code`` of every build failure."""
_INSTALL = "install a C compiler and a static C library (Debian/Ubuntu: apt-get install gcc libc6-dev)"
_COMPILE_TIMEOUT = 300.0


def default_binary() -> Path:
    """Where ``build`` puts the binary by default (``exeunit/forwarder/bin/``, git-ignored)."""
    return SOURCE.parent / "bin" / BINARY_NAME


def find_compiler(cc: str | None = None) -> str | None:
    """The path of ``cc`` if given (None if it is not found), else of ``$CC``, ``cc``,
    ``gcc`` or ``clang``, the first one found."""
    candidates = [cc] if cc else [os.environ.get("CC") or "", "cc", "gcc", "clang"]
    for name in candidates:
        found = shutil.which(name) if name else None
        if found:
            return found
    return None


def _up_to_date(dest: Path) -> bool:
    try:
        return dest.is_file() and dest.stat().st_mtime >= SOURCE.stat().st_mtime
    except OSError:
        return False


def build(dest: Path | None = None, *, cc: str | None = None) -> Path:
    """Compile SOURCE statically into ``dest`` (default ``default_binary()``) unless it exists
    and is not older than SOURCE; return ``dest``. The compiler writes a temporary file in
    dest's directory that then replaces dest, so a reader never sees half a binary.

    Raises ``RuntimeFailure(code="no-forwarder")`` when no compiler is found or the
    compilation fails (e.g. no static libc), with what to install."""
    dest = Path(dest) if dest is not None else default_binary()
    if _up_to_date(dest):
        return dest
    compiler = find_compiler(cc)
    if compiler is None:
        wanted = repr(cc) if cc else "cc, gcc or clang"
        raise RuntimeFailure(f"cannot build {BINARY_NAME}: no C compiler ({wanted}) found; {_INSTALL}", code=CODE)
    tmp: str | None = None
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{BINARY_NAME}.", dir=dest.parent)
        os.close(fd)
        proc = subprocess.run(
            [compiler, *CFLAGS, "-o", tmp, str(SOURCE)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_COMPILE_TIMEOUT,
        )
        if proc.returncode != 0:
            output = (proc.stderr or proc.stdout).strip()[-2000:]
            raise RuntimeFailure(
                f"cannot build {BINARY_NAME}: {compiler} failed (exit {proc.returncode}); {_INSTALL}\n{output}",
                code=CODE,
            )
        os.chmod(tmp, 0o755)
        os.replace(tmp, dest)
        tmp = None
    except subprocess.TimeoutExpired as e:
        raise RuntimeFailure(f"cannot build {BINARY_NAME}: {compiler} took over {e.timeout:.0f} s", code=CODE) from e
    except OSError as e:
        raise RuntimeFailure(f"cannot build {BINARY_NAME} into {dest}: {e}", code=CODE) from e
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return dest


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_binary() -> Path | None:
    """``$YAGNA_FORWARDER`` if set and executable, else ``default_binary()`` if it exists,
    else None (then ``build()`` makes it)."""
    env = os.environ.get(ENV_BINARY)
    if env and _executable(Path(env)):
        return Path(env)
    default = default_binary()
    return default if _executable(default) else None
