"""Packing a source tree into a workspace archive for ``yagna pipeline run`` (docs/pipelines.md).

The tree is packed once per run into one deterministic, content-addressed tar that each job
uploads (checked by its sha256) and unpacks in its container (:func:`unpack_command`)::

    ws = pack_workspace(Path("."), Path(tmp))      # blocking: from trio, trio.to_thread.run_sync
    ws.path, ws.sha256, ws.files, ws.bytes, ws.source

Which files.

- ``root`` inside a git work tree (and git installed): what ``git ls-files --cached --others
  --exclude-standard`` lists under ``root``, i.e. the tracked files and the untracked ones git does
  not ignore (``.gitignore`` files, ``.git/info/exclude`` and ``core.excludesFile`` all count),
  less tracked files deleted from the disk. Directories are implied by the files; submodules and
  nested repositories are not packed (they are listed in ``skipped``).
- Otherwise a walk of the folder honouring the ``.gitignore`` files found in it (the root's and
  nested ones, git's semantics through ``pathspec``'s :class:`GitIgnoreSpec`: a deeper file wins, the
  last matching line of a file wins, ``!`` re-includes, an ignored directory is not entered); empty
  directories are kept.
- Never ``.git`` (at any depth), never the ``exclude`` prefixes (default ``.yagna/artifacts``), never
  ``dest_dir`` when it lies inside the tree.

Entries. Regular files (mode ``0644``, or ``0755`` when the owner may execute), directories
(``0755``) and symlinks (``0777``, as Linux shows them). A link whose target stays inside the tree is
kept: a relative target as written, or, when it is absolute or climbs out of the tree before coming
back, rewritten as the relative path to where it resolves. A link pointing outside (absolute or
relative, dangling or not) fails the packing with a :class:`WorkspaceError` naming the link and its
target, and so do fifos, sockets and devices.

The archive is an uncompressed POSIX (pax) tar with entries sorted by path, owner ``0:0`` with no
names, mtime 0 and the modes above, so the same tree always gives the same bytes whatever the
files' times, owners or umask. (Uncompressed on purpose: on this project's own tree, 480 files in a
4.6 MB tar packed in 0.12 s, gzip -6 gave 3.9x less for 0.15 s more and gzip -1 3.2x less for
0.05 s more, but compressed bytes depend on the zlib build, so the same tree could get another name
elsewhere, and busybox reads gzip only when built to; compressing the transfer is the runner's.) It is
written to ``dest_dir/<sha256>.tar`` through a temporary file and a rename; an archive already there
with that name is reused. File contents are streamed, never read whole.

Bounds: ``max_bytes`` of file contents and ``max_files`` files and links (and as many directories)
are checked while listing, before anything is written, and the error names the biggest files seen;
names must be valid UTF-8, paths and link targets at most :data:`MAX_PATH_BYTES` bytes, and no
path may leave the tree (no absolute paths, ``..`` or empty components).
"""

from __future__ import annotations

import hashlib
import heapq
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, cast

from requestor_sdk.errors import SdkError
from yagna.core.links import climbs_out

__all__ = ["MAX_PATH_BYTES", "Workspace", "WorkspaceError", "pack_workspace", "unpack_command"]

MAX_PATH_BYTES = 4096
"""Longest path (relative to the root) and longest link target, in UTF-8 bytes."""
SKIPPED_SAMPLE = 100
"""How many skipped paths :attr:`Workspace.skipped` lists (:attr:`Workspace.skipped_count` counts all)."""
GIT_TIMEOUT_S = 300.0
_COPY_BUFSIZE = 1 << 20
_BIGGEST = 5


class WorkspaceError(SdkError):
    """The tree cannot be packed: a link leaves it, a special file, a bound exceeded, a bad name...

    ``path`` is the offending path relative to the root when there is one.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class Workspace:
    path: Path
    """The archive, ``dest_dir/<sha256>.tar``."""
    sha256: str
    """Hex sha256 of the archive's bytes (also its name)."""
    size: int
    """The archive's size in bytes."""
    files: int
    """Regular files and symlinks packed (directories not counted)."""
    bytes: int
    """Total size of the packed files' contents."""
    source: Literal["git", "folder"]
    """How the files were chosen."""
    skipped: list[str] = field(default_factory=list)
    """A sorted sample (at most :data:`SKIPPED_SAMPLE`) of what was left out: ignored paths (a
    directory once, with a trailing ``/``), excluded prefixes, tracked files deleted from the disk,
    submodules."""
    skipped_count: int = 0
    """How many paths were left out in all (an ignored directory counts once)."""


@dataclass
class _Entry:
    kind: Literal["file", "dir", "link"]
    size: int = 0
    mode: int = 0o644
    target: str = ""


class _Collector:
    """The entries chosen so far, with the bounds checked as they are added."""

    def __init__(self, max_bytes: int, max_files: int) -> None:
        self.max_bytes, self.max_files = max_bytes, max_files
        self.entries: dict[str, _Entry] = {}
        self.files = 0
        self.dirs = 0
        self.bytes = 0
        self.biggest: list[tuple[int, str]] = []  # a min-heap of the _BIGGEST largest files
        self.skipped: list[str] = []
        self.skipped_count = 0

    def skip(self, rel: str) -> None:
        self.skipped_count += 1
        if len(self.skipped) < SKIPPED_SAMPLE:
            self.skipped.append(rel)

    def add_dir(self, rel: str) -> None:
        if rel in self.entries:
            return
        self.dirs += 1
        if self.dirs > self.max_files:
            raise WorkspaceError(f"the workspace has more than max_files={self.max_files} directories "
                                 f"(at {rel!r}); ignore or exclude some", path=rel)
        self.entries[rel] = _Entry("dir", mode=0o755)

    def add(self, rel: str, entry: _Entry) -> None:
        self.files += 1
        if entry.kind == "file":
            self.bytes += entry.size
            item = (entry.size, rel)
            if len(self.biggest) < _BIGGEST:
                heapq.heappush(self.biggest, item)
            elif item > self.biggest[0]:
                heapq.heapreplace(self.biggest, item)
        if self.files > self.max_files:
            raise WorkspaceError(f"the workspace has more than max_files={self.max_files} files (at {rel!r}); "
                                 f"ignore or exclude some (biggest seen: {self._biggest()})", path=rel)
        if self.bytes > self.max_bytes:
            raise WorkspaceError(f"the workspace's files exceed max_bytes={self.max_bytes} ({self.bytes} bytes "
                                 f"in {self.files} files so far, at {rel!r}); biggest seen: {self._biggest()}; "
                                 f"ignore or exclude them", path=rel)
        self.entries[rel] = entry

    def _biggest(self) -> str:
        return ", ".join(f"{rel} ({_human(size)})" for size, rel in sorted(self.biggest, reverse=True)) or "none"


def pack_workspace(root: Path, dest_dir: Path, *, max_bytes: int = 1 << 30, max_files: int = 100_000,
                   exclude: Sequence[str] = (".yagna/artifacts",)) -> Workspace:
    """Pack the tree at ``root`` into ``dest_dir/<sha256>.tar`` (see the module's doc); blocking.

    Raises :class:`WorkspaceError` for anything that cannot be packed as it is.
    """
    try:
        real_root = Path(os.path.realpath(root))
        if not real_root.is_dir():
            raise WorkspaceError(f"{root}: not a directory")
    except OSError as exc:
        raise WorkspaceError(f"{root}: {exc.strerror or exc}") from None
    prefixes = [_check_prefix(p) for p in exclude]
    dest_dir = Path(dest_dir)
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WorkspaceError(f"{dest_dir}: cannot create it: {exc.strerror or exc}") from None
    real_dest = Path(os.path.realpath(dest_dir))
    if real_dest == real_root:
        raise WorkspaceError(f"dest_dir {dest_dir} is the tree being packed; give another folder")
    if real_dest.is_relative_to(real_root):
        prefixes.append(real_dest.relative_to(real_root).as_posix())

    col = _Collector(max_bytes, max_files)
    listed = _git_list(real_root)
    source: Literal["git", "folder"]
    if listed is not None:
        source = "git"
        _collect_git(real_root, listed, prefixes, col)
    else:
        source = "folder"
        _collect_folder(real_root, prefixes, col)
    path, sha, size = _write(real_root, dest_dir, col.entries)
    return Workspace(path=path, sha256=sha, size=size, files=col.files, bytes=col.bytes, source=source,
                     skipped=sorted(col.skipped), skipped_count=col.skipped_count)


def unpack_command(archive_in_container: str, dest: str) -> list[str]:
    """The argv that unpacks a workspace archive into the existing folder ``dest`` in a container.

    Plain ``tar -xf ARCHIVE -C DEST``: GNU tar (Debian) and busybox both read the archive.
    """
    for what, value in (("archive", archive_in_container), ("dest", dest)):
        if not value or value.startswith("-") or "\0" in value:
            raise WorkspaceError(f"unpack_command: bad {what} path {value!r}")
    return ["tar", "-xf", archive_in_container, "-C", dest]


# --- choosing the files -------------------------------------------------------------------------


def _git_env() -> dict[str, str]:
    # A caller's GIT_DIR & co. (a git hook, say) must not redirect the listing to another repository.
    drop = {"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR", "GIT_OBJECT_DIRECTORY",
            "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE", "GIT_PREFIX"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["GIT_OPTIONAL_LOCKS"] = "0"
    return env


def _git(real_root: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(real_root), *args], stdin=subprocess.DEVNULL, capture_output=True,
                          env=_git_env(), timeout=GIT_TIMEOUT_S, check=False)


def _git_list(real_root: Path) -> tuple[list[bytes], list[bytes]] | None:
    """(listed, ignored) paths relative to the root as git gives them, or None outside git."""
    if shutil.which("git") is None:
        return None
    try:
        if _git(real_root, "rev-parse", "--show-toplevel").returncode != 0:
            return None
        listed = _git(real_root, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
        if listed.returncode != 0:
            raise WorkspaceError(f"{real_root}: git ls-files failed: "
                                 f"{listed.stderr.decode('utf-8', 'replace').strip()}")
        ignored = _git(real_root, "ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--directory")
    except subprocess.TimeoutExpired:
        raise WorkspaceError(f"{real_root}: git took more than {GIT_TIMEOUT_S:.0f}s to list the files") from None
    except OSError as exc:
        raise WorkspaceError(f"{real_root}: cannot run git: {exc}") from None
    names = [n for n in listed.stdout.split(b"\0") if n]
    skipped = [n for n in ignored.stdout.split(b"\0") if n] if ignored.returncode == 0 else []
    return names, skipped


def _collect_git(real_root: Path, listed: tuple[list[bytes], list[bytes]], prefixes: list[str],
                 col: _Collector) -> None:
    names, ignored = listed
    for raw in ignored:
        col.skip(_decode(raw))
    is_dir: dict[str, bool] = {"": True}

    def real_dir(rel: str) -> bool:
        # Every folder on the way must be a real directory: if a tracked "a/x" has "a" replaced by a
        # link, git sees "a/x" deleted (and lists the link "a" itself); we must not read through it.
        ok = True
        for d in _parents(rel + "/x"):  # rel and its parents
            if d not in is_dir:
                try:
                    is_dir[d] = ok and stat.S_ISDIR(os.lstat(real_root / d).st_mode)
                except OSError:
                    is_dir[d] = False
            ok = is_dir[d]
        return ok

    seen: set[str] = set()
    for raw in names:  # sorted by git, and conflicted paths repeat
        rel = _decode(raw)
        directory = rel.endswith("/")  # an untracked nested repository
        rel = rel.rstrip("/")
        if rel in seen:
            continue
        seen.add(rel)
        _check_rel(rel)
        if _excluded(rel, prefixes) or ".git" in rel.split("/"):
            col.skip(rel)
            continue
        parent = rel.rpartition("/")[0]
        try:
            st = os.lstat(real_root / rel) if real_dir(parent) else None
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise WorkspaceError(f"{rel}: {exc.strerror or exc}", path=rel) from None
        if st is None:  # tracked, deleted since
            col.skip(rel)
            continue
        if directory or stat.S_ISDIR(st.st_mode):  # a submodule or a nested repository: not packed
            col.skip(rel + "/")
            continue
        entry = _entry(real_root, rel, st)
        for d in _parents(rel):
            col.add_dir(d)
        col.add(rel, entry)


_Spec = tuple[str, Any]
"""A ``.gitignore``: the folder holding it (relative to the root) and its compiled ``GitIgnoreSpec``."""


def _collect_folder(real_root: Path, prefixes: list[str], col: _Collector) -> None:
    from_lines = _gitignore_factory()
    stack: list[tuple[str, tuple[_Spec, ...]]] = [("", ())]
    while stack:
        rel_dir, specs = stack.pop()
        abs_dir = real_root / rel_dir if rel_dir else real_root
        try:
            with os.scandir(abs_dir) as it:
                children = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            raise WorkspaceError(f"{rel_dir or '.'}: cannot list it: {exc.strerror or exc}", path=rel_dir) from None
        for child in children:
            if child.name == ".gitignore":
                try:
                    st = child.stat(follow_symlinks=False)
                    if stat.S_ISREG(st.st_mode):  # like git, a linked .gitignore is not read
                        with open(child.path, "rb") as f:
                            text = f.read(16 << 20).decode("utf-8", "replace")
                        specs = (*specs, (rel_dir, from_lines(text.splitlines())))
                except OSError as exc:
                    raise WorkspaceError(f"{_join(rel_dir, '.gitignore')}: {exc.strerror or exc}") from None
        subdirs: list[str] = []
        for child in children:
            rel = _join(rel_dir, _check_name(child.name, rel_dir))
            if child.name == ".git" or _excluded(rel, prefixes):
                col.skip(rel)
                continue
            _check_rel(rel)
            try:
                st = child.stat(follow_symlinks=False)
            except FileNotFoundError:  # gone since the listing
                continue
            except OSError as exc:
                raise WorkspaceError(f"{rel}: {exc.strerror or exc}", path=rel) from None
            directory = stat.S_ISDIR(st.st_mode)
            if _ignored(rel, directory, specs):
                col.skip(rel + "/" if directory else rel)
                continue
            if directory:
                col.add_dir(rel)
                subdirs.append(rel)
            else:
                col.add(rel, _entry(real_root, rel, st))
        stack.extend((d, specs) for d in reversed(subdirs))


def _gitignore_factory() -> Any:
    try:
        from pathspec import GitIgnoreSpec
    except ImportError:
        raise WorkspaceError("packing a folder outside git needs the 'pathspec' package for its .gitignore "
                             "files: pip install pathspec") from None
    return GitIgnoreSpec.from_lines


def _ignored(rel: str, directory: bool, specs: tuple[_Spec, ...]) -> bool:
    for base, spec in reversed(specs):  # the deepest .gitignore decides first
        sub = rel[len(base) + 1:] if base else rel
        include = spec.check_file(sub + "/" if directory else sub).include
        if include is not None:
            return bool(include)
    return False


# --- entries ------------------------------------------------------------------------------------


def _entry(real_root: Path, rel: str, st: os.stat_result) -> _Entry:
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return _Entry("file", size=st.st_size, mode=0o755 if mode & stat.S_IXUSR else 0o644)
    if stat.S_ISLNK(mode):
        return _Entry("link", mode=0o777, target=_link_target(real_root, rel))
    kind = ("a fifo" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a special file")
    raise WorkspaceError(f"{rel}: is {kind}, which a workspace cannot hold; remove it, ignore it in .gitignore "
                         f"or exclude it", path=rel)


def _link_target(real_root: Path, rel: str) -> str:
    """The target to store for the link ``rel``: as written when it stays inside, else rewritten."""
    link = real_root / rel
    try:
        written = os.readlink(link)
    except OSError as exc:
        raise WorkspaceError(f"{rel}: cannot read the link: {exc.strerror or exc}", path=rel) from None
    try:
        written.encode("utf-8")
    except UnicodeEncodeError:
        raise WorkspaceError(f"{rel}: the link's target {written!r} is not valid UTF-8", path=rel) from None
    if not written:
        raise WorkspaceError(f"{rel}: the link's target is empty", path=rel)
    parent = link.parent
    resolved = Path(os.path.realpath(parent / written))  # parent is a real directory: no link to undo
    if not resolved.is_relative_to(real_root):
        raise WorkspaceError(f"{rel}: the link points outside the tree: {rel} -> {written} (resolves to "
                             f"{resolved}); copy the target in, or ignore the link", path=rel)
    target = written
    if os.path.isabs(written) or climbs_out(rel, written):
        target = os.path.relpath(resolved, parent)
    if len(target.encode("utf-8")) > MAX_PATH_BYTES:
        raise WorkspaceError(f"{rel}: the link's target is longer than {MAX_PATH_BYTES} bytes", path=rel)
    return target


# --- names --------------------------------------------------------------------------------------


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WorkspaceError(f"{raw.decode('utf-8', 'backslashreplace')}: the name is not valid UTF-8; "
                             f"rename it or ignore it") from None


def _check_name(name: str, rel_dir: str) -> str:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        shown = _join(rel_dir, name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"))
        raise WorkspaceError(f"{shown}: the name is not valid UTF-8; rename it or ignore it", path=shown) from None
    return name


def _check_rel(rel: str) -> None:
    parts = rel.split("/")
    if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\0" in rel:
        raise WorkspaceError(f"{rel!r}: not a path inside the tree", path=rel)
    if len(rel.encode("utf-8")) > MAX_PATH_BYTES:
        raise WorkspaceError(f"{rel[:80]}...: the path is longer than {MAX_PATH_BYTES} bytes", path=rel)


def _check_prefix(prefix: str) -> str:
    p = prefix.strip("/")
    if not p or any(part in ("", ".", "..") for part in p.split("/")):
        raise WorkspaceError(f"exclude: {prefix!r} is not a relative path inside the tree")
    return p


def _excluded(rel: str, prefixes: list[str]) -> bool:
    return any(rel == p or rel.startswith(p + "/") for p in prefixes)


def _join(rel_dir: str, name: str) -> str:
    return f"{rel_dir}/{name}" if rel_dir else name


def _parents(rel: str) -> Iterator[str]:
    parts = rel.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        yield "/".join(parts[:i])


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


# --- the archive --------------------------------------------------------------------------------


class _HashingWriter:
    """A write-only file that hashes what goes through it (tarfile needs ``write`` and ``tell``)."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f, self.hash, self.pos = f, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.f.write(data)
        self.pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self.pos


def _tarinfo(rel: str, entry: _Entry) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(rel)
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.mtime = 0
    ti.mode = entry.mode
    if entry.kind == "dir":
        ti.type = tarfile.DIRTYPE
    elif entry.kind == "link":
        ti.type, ti.linkname = tarfile.SYMTYPE, entry.target
    else:
        ti.type, ti.size = tarfile.REGTYPE, entry.size
    return ti


def _write(real_root: Path, dest_dir: Path, entries: dict[str, _Entry]) -> tuple[Path, str, int]:
    fd, tmp_name = tempfile.mkstemp(dir=dest_dir, prefix=".workspace-", suffix=".tar.tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw:
            out = _HashingWriter(raw)
            with tarfile.TarFile(fileobj=cast(IO[bytes], out), mode="w", format=tarfile.PAX_FORMAT,
                                 encoding="utf-8", errors="strict", copybufsize=_COPY_BUFSIZE) as tar:
                for rel in sorted(entries):
                    entry = entries[rel]
                    ti = _tarinfo(rel, entry)
                    if entry.kind != "file":
                        tar.addfile(ti)
                        continue
                    try:
                        f = os.open(real_root / rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                    except OSError as exc:
                        raise WorkspaceError(f"{rel}: cannot read it: {exc.strerror or exc}", path=rel) from None
                    with os.fdopen(f, "rb") as src:
                        st = os.fstat(src.fileno())
                        if not stat.S_ISREG(st.st_mode) or st.st_size != entry.size:
                            raise WorkspaceError(f"{rel}: changed while being packed; pack again", path=rel)
                        try:
                            tar.addfile(ti, src)
                        except OSError as exc:  # shrank while being copied
                            raise WorkspaceError(f"{rel}: changed while being packed ({exc}); pack again",
                                                 path=rel) from None
            raw.flush()
            os.fsync(raw.fileno())
        sha, size = out.hash.hexdigest(), out.pos
        final = dest_dir / f"{sha}.tar"
        try:
            reuse = final.stat().st_size == size
        except FileNotFoundError:
            reuse = False
        if reuse:
            tmp.unlink()
        else:
            os.replace(tmp, final)
            _fsync_dir(dest_dir)
        return final, sha, size
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
