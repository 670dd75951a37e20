"""Path safety for paths a requestor names (sans-io, pure).

Every path in an exe-script (``transfer_in.to``, ``transfer_out.from``,
``run.workdir``) is remote input that ends up in a ``docker cp`` or a host-side
staging directory. :func:`container_path` is the one gate they pass: it returns
the normalised spelling or refuses with ``TransferRefused("bad-path")``.

The rules are deliberately stricter than "stays inside after normalisation":
any ``..`` component is refused, even one that would stay inside, so there is
no path whose meaning depends on symlinks in the container resolving one way
or another. Symlinks *inside* the container are the runtime's concern (it
copies regular files only); :func:`local_path_inside` guards the host side.
"""

from __future__ import annotations

from pathlib import Path

from exeunit.errors import TransferRefused

__all__ = ["MAX_NAME_LEN", "MAX_PATH_LEN", "container_path", "is_inside", "local_path_inside", "normalise", "split_under"]

MAX_PATH_LEN = 4096
"""Linux PATH_MAX: longer paths are refused before and after normalisation."""
MAX_NAME_LEN = 255
"""Linux NAME_MAX: the longest single path component (in UTF-8 bytes)."""


def _refuse(path: object, why: str) -> TransferRefused:
    shown = repr(path) if not isinstance(path, str) or len(path) <= 200 else repr(path[:200] + "...")
    return TransferRefused("bad-path", f"path {shown} refused: {why}")


def _components(path: str) -> list[str]:
    """The path's components, refusing NUL, ``..``, non-UTF-8 and over-long names."""
    if "\0" in path:
        raise _refuse(path, "it contains a NUL byte")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise _refuse(path, "it is not valid Unicode") from None
    parts = [p for p in path.split("/") if p not in ("", ".")]
    for part in parts:
        if part == "..":
            raise _refuse(path, "'..' components are not allowed")
        if len(part.encode("utf-8")) > MAX_NAME_LEN:
            raise _refuse(path, f"a component is longer than {MAX_NAME_LEN} bytes")
    return parts


def normalise(path: object) -> str:
    """The normalised spelling of an absolute POSIX path, or ``bad-path``.

    Collapses ``//``, ``/./`` and a trailing ``/``; refuses non-strings, relative
    paths, NUL, non-UTF-8, any ``..`` and paths over :data:`MAX_PATH_LEN`.
    """
    if not isinstance(path, str):
        raise _refuse(path, f"it is a {type(path).__name__}, not a string")
    if len(path) > MAX_PATH_LEN:
        raise _refuse(path, f"it is longer than {MAX_PATH_LEN} characters")
    if not path.startswith("/"):
        raise _refuse(path, "it is not absolute")
    normal = "/" + "/".join(_components(path))
    if len(normal.encode("utf-8")) > MAX_PATH_LEN:
        raise _refuse(path, f"it is longer than {MAX_PATH_LEN} bytes")
    return normal


def is_inside(normal: str, under: str) -> bool:
    """Whether normalised ``normal`` lies strictly below normalised ``under``."""
    return normal != under and normal.startswith(under.rstrip("/") + "/")


def container_path(path: object, *, under: str) -> str:
    """Normalise an absolute POSIX ``path`` strictly inside ``under`` or refuse it.

    ``"/work/in/a//b/./c/"`` becomes ``"/work/in/a/b/c"``. Refused (``bad-path``):
    everything :func:`normalise` refuses, and paths outside ``under`` or equal to
    it (a transfer names a file, not the directory). ``under`` is ours, not remote
    input: it must itself be normalised (``ValueError`` otherwise).
    """
    parts = under.split("/")
    if under != "/" + "/".join(p for p in parts if p) or "." in parts or ".." in parts:
        raise ValueError(f"under={under!r} must be an absolute normalised path")
    normal = normalise(path)
    if not is_inside(normal, under):
        raise _refuse(path, f"it is not inside {under.rstrip('/')}/")
    return normal


def split_under(path: str, *, under: str) -> str:
    """The part of a checked container path below ``under``: ``("/work/in/a/b", "/work/in") -> "a/b"``."""
    normal = container_path(path, under=under)
    return normal[len(under.rstrip("/")) + 1 :]


def local_path_inside(root: Path, relative: str) -> Path:
    """``root / relative`` for a host-side staging dir, refusing any way out of ``root``.

    ``relative`` must be relative (no leading ``/``), without NUL or ``..``; the
    result, with symlinks resolved, must still lie strictly inside ``root`` (so a
    symlink planted in the staging dir cannot redirect a write). Does not create
    anything; ``root`` need not exist yet.
    """
    if not isinstance(relative, str):
        raise _refuse(relative, f"it is a {type(relative).__name__}, not a string")
    if len(relative) > MAX_PATH_LEN:
        raise _refuse(relative, f"it is longer than {MAX_PATH_LEN} characters")
    if relative.startswith("/"):
        raise _refuse(relative, "a staging path must be relative")
    parts = _components(relative)
    if not parts:
        raise _refuse(relative, "it names the staging directory itself")
    base = root.resolve()
    candidate = base.joinpath(*parts)
    resolved = candidate.resolve()
    if resolved == base or base not in resolved.parents:
        raise _refuse(relative, f"it resolves outside {root}")
    return candidate
