"""Packing a source tree for ``yagna pipeline run`` (requestor_sdk/workspace.py): which files, links,
special files, determinism, bounds, streaming, and a round trip through tar."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
import tracemalloc
from pathlib import Path

import pytest

from requestor_sdk.errors import SdkError
from requestor_sdk.workspace import MAX_PATH_BYTES, Workspace, WorkspaceError, pack_workspace, unpack_command

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def write(path: Path, text: str | bytes = "x", mode: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    if mode is not None:
        path.chmod(mode)
    return path


def git(repo: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=env).stdout


def git_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q")
    git(path, "config", "user.email", "ci@example.invalid")
    git(path, "config", "user.name", "CI")
    git(path, "config", "commit.gpgsign", "false")
    return path


def members(ws: Workspace) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(ws.path) as tar:
        return {m.name: m for m in tar.getmembers()}


def names(ws: Workspace) -> set[str]:
    return {name for name, m in members(ws).items() if not m.isdir()}


def pack(root: Path, tmp_path: Path, **kw: object) -> Workspace:
    return pack_workspace(root, tmp_path / "out", **kw)  # type: ignore[arg-type]


# --- which files ------------------------------------------------------------------------------------


@needs_git
def test_git_tracked_and_untracked_not_ignored(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo")
    write(repo / ".gitignore", "*.log\nbuild/\n")
    write(repo / "src/main.py", "print(1)\n")
    write(repo / "README", "hi\n")
    write(repo / "gone.txt", "soon deleted\n")
    write(repo / "tracked.log", "tracked despite the pattern\n")
    git(repo, "add", ".")
    git(repo, "add", "-f", "tracked.log")
    git(repo, "commit", "-qm", "init")
    write(repo / "new.txt", "untracked\n")
    write(repo / "src/new_mod.py", "untracked\n")
    write(repo / "debug.log", "ignored\n")
    write(repo / "build/out.o", "ignored dir\n")
    write(repo / "build/deep/x.o", "ignored dir\n")
    (repo / "gone.txt").unlink()  # tracked, deleted from the disk

    ws = pack(repo, tmp_path)
    assert ws.source == "git"
    assert names(ws) == {".gitignore", "README", "new.txt", "src/main.py", "src/new_mod.py", "tracked.log"}
    assert members(ws)["src"].isdir()
    assert ws.files == 6 and ws.bytes == sum(len((repo / n).read_bytes()) for n in names(ws))
    assert "build/" in ws.skipped and "debug.log" in ws.skipped and "gone.txt" in ws.skipped
    assert not any(n.startswith(".git/") for n in members(ws))


@needs_git
def test_git_root_below_the_top_packs_that_folder_with_relative_paths(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo")
    write(repo / ".gitignore", "*.tmp\n")
    write(repo / "top.txt")
    write(repo / "app/a.py")
    write(repo / "app/lib/b.py")
    write(repo / "app/x.tmp")  # ignored by the top-level .gitignore
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "init")
    ws = pack(repo / "app", tmp_path)
    assert ws.source == "git"
    assert names(ws) == {"a.py", "lib/b.py"}


@needs_git
def test_git_nested_repository_and_tracked_file_behind_a_replaced_folder(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo")
    write(repo / "a.txt")
    write(repo / "d/x", "tracked\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "init")
    git_repo(repo / "nested")
    write(repo / "nested/n.txt")
    shutil.rmtree(repo / "d")
    write(repo / "elsewhere/x", "must not be read through the link\n")
    (repo / "d").symlink_to("elsewhere")  # "d/x" is deleted for git; "d" is now an untracked link
    ws = pack(repo, tmp_path)
    got = members(ws)
    assert names(ws) == {"a.txt", "d", "elsewhere/x"}
    assert got["d"].issym() and got["d"].linkname == "elsewhere"
    assert "nested/" in ws.skipped and "d/x" in ws.skipped


@needs_git
def test_git_unicode_and_long_names(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo")
    long = "/".join(["d" * 200] * 3) + "/f.txt"
    write(repo / "żółw ü.txt", "unicode\n")
    write(repo / long, "long\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "init")
    ws = pack(repo, tmp_path)
    assert names(ws) == {"żółw ü.txt", long}


def test_folder_nested_gitignores_with_negation(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    write(root / ".gitignore", "# comment\n*.log\n!keep.log\n/only-top.txt\ncache/\n**/gen/**/*.c\nq?.bin\n")
    write(root / "a.log")
    write(root / "keep.log")
    write(root / "only-top.txt")
    write(root / "sub/only-top.txt")  # the leading / anchors the pattern at the root only
    write(root / "cache/c1")  # an ignored directory
    write(root / "sub/cache/c2")  # dir patterns without a / match at any depth
    write(root / "cache.txt")  # not a directory: "cache/" does not match
    write(root / "x/gen/y/z.c")
    write(root / "x/gen/z.h")
    write(root / "q1.bin")
    write(root / "q10.bin")
    write(root / "sub/.gitignore", "!a.log\nlocal.txt\n/anch.txt\n")
    write(root / "sub/a.log")  # re-included by the deeper file
    write(root / "sub/b.log")
    write(root / "sub/local.txt")
    write(root / "local.txt")  # the nested file does not apply above it
    write(root / "sub/anch.txt")
    write(root / "sub/deeper/anch.txt")  # anchored to sub/, not to sub/deeper/
    write(root / ".git/config")  # never packed, even without git
    (root / "empty/inner").mkdir(parents=True)

    ws = pack(root, tmp_path)
    assert ws.source == "folder"
    assert names(ws) == {
        ".gitignore", "keep.log", "cache.txt", "x/gen/z.h", "q10.bin", "local.txt",
        "sub/.gitignore", "sub/only-top.txt", "sub/a.log", "sub/deeper/anch.txt",
    }
    dirs = {n for n, m in members(ws).items() if m.isdir()}
    assert {"empty", "empty/inner", "sub", "x", "x/gen", "x/gen/y"} <= dirs  # empty folders kept
    assert {"cache/", "sub/cache/", "a.log", "q1.bin", "x/gen/y/z.c", "sub/b.log", ".git"} <= set(ws.skipped)
    assert ws.skipped_count == len(ws.skipped)


def test_a_negation_cannot_reach_into_an_ignored_folder(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    write(root / ".gitignore", "out/\n!out/keep.txt\n")
    write(root / "out/keep.txt")
    write(root / "in.txt")
    assert names(pack(root, tmp_path)) == {".gitignore", "in.txt"}


@needs_git
def test_without_git_a_repository_is_packed_as_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = git_repo(tmp_path / "repo")
    write(repo / ".gitignore", "*.o\n")
    write(repo / "a.c")
    write(repo / "a.o")
    monkeypatch.setattr("requestor_sdk.workspace.shutil.which", lambda name: None)
    ws = pack(repo, tmp_path)
    assert ws.source == "folder"
    assert names(ws) == {".gitignore", "a.c"}


@pytest.mark.parametrize("use_git", [False, pytest.param(True, marks=needs_git)])
def test_excluded_prefixes_and_dest_dir_inside_the_tree(tmp_path: Path, use_git: bool) -> None:
    root = git_repo(tmp_path / "tree") if use_git else tmp_path / "tree"
    write(root / "src/a.py")
    write(root / ".yagna/pipeline.yml", "steps: []\n")
    write(root / ".yagna/artifacts/run1/app.bin", "old artifacts\n")
    write(root / ".yagna/artifactsX", "not under the prefix\n")
    write(root / "vendor/big.bin")
    first = pack_workspace(root, root / ".cache/ws")
    assert names(first) == {"src/a.py", ".yagna/pipeline.yml", ".yagna/artifactsX", "vendor/big.bin"}
    # the archive just written inside the tree is not packed the next time
    again = pack_workspace(root, root / ".cache/ws", exclude=[".yagna/artifacts", "vendor/"])
    assert names(again) == {"src/a.py", ".yagna/pipeline.yml", ".yagna/artifactsX"}
    assert ".yagna/artifacts" in again.skipped or ".yagna/artifacts/run1/app.bin" in again.skipped
    with pytest.raises(WorkspaceError, match="exclude"):
        pack_workspace(root, tmp_path / "o", exclude=["../up"])
    with pytest.raises(WorkspaceError, match="is the tree"):
        pack_workspace(root, root)


# --- links and special files --------------------------------------------------------------------


@pytest.mark.parametrize("use_git", [False, pytest.param(True, marks=needs_git)])
def test_links_inside_are_kept_absolute_ones_rewritten(tmp_path: Path, use_git: bool) -> None:
    root = git_repo(tmp_path / "tree") if use_git else tmp_path / "tree"
    write(root / "lib/real.txt", "target\n")
    write(root / "docs/readme", "doc\n")
    (root / "rel").symlink_to("lib/real.txt")
    (root / "docs/up").symlink_to("../lib/real.txt")
    (root / "docs/abs").symlink_to(root / "lib/real.txt")  # absolute, inside: rewritten
    (root / "docs/absdir").symlink_to(root / "lib")
    (root / "docs/detour").symlink_to(f"../../{root.name}/lib/real.txt")  # climbs out, comes back
    (root / "dangling").symlink_to("lib/not-yet")  # dangling inside: kept
    (root / "self").symlink_to(".")
    ws = pack(root, tmp_path)
    got = members(ws)
    assert got["rel"].issym() and got["rel"].linkname == "lib/real.txt"
    assert got["docs/up"].linkname == "../lib/real.txt"
    assert got["docs/abs"].linkname == "../lib/real.txt"
    assert got["docs/absdir"].linkname == "../lib"
    assert got["docs/detour"].linkname == "../lib/real.txt"
    assert got["dangling"].linkname == "lib/not-yet"
    assert got["self"].linkname == "."
    assert ws.files == 9  # 2 files + 7 links

    out = tmp_path / "x"
    with tarfile.open(ws.path) as tar:
        tar.extractall(out, filter="data")  # the "data" filter refuses links leaving the destination
    assert (out / "docs/abs").read_text() == "target\n"
    assert (out / "docs/detour").read_text() == "target\n"


@pytest.mark.parametrize("target", ["../../outside.txt", "ABS", "../../../nowhere/x", "/nonexistent/abs/path",
                                    "./../x/../../outside.txt"])
def test_links_leaving_the_tree_are_refused(tmp_path: Path, target: str) -> None:
    root = tmp_path / "tree"
    write(tmp_path / "outside.txt", "secret\n")
    write(root / "lib/f")
    if target == "ABS":
        target = str(tmp_path / "outside.txt")
    (root / "lib/link").symlink_to(target)
    with pytest.raises(WorkspaceError, match="outside the tree") as err:
        pack(root, tmp_path)
    assert "lib/link" in str(err.value) and target in str(err.value)
    assert err.value.path == "lib/link"
    assert not list((tmp_path / "out").glob("*.tar")) and not list((tmp_path / "out").iterdir())


@needs_git
def test_git_tracked_link_leaving_the_tree_is_refused(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo")
    (repo / "etc").symlink_to("/etc/passwd")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "init")
    with pytest.raises(WorkspaceError, match=r"etc -> /etc/passwd"):
        pack(repo, tmp_path)


def test_a_link_to_an_outside_folder_is_refused_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    write(tmp_path / "outside/secret")
    write(root / "a")
    (root / "out").symlink_to(tmp_path / "outside")
    with pytest.raises(WorkspaceError, match="out -> "):
        pack(root, tmp_path)


def test_an_ignored_outside_link_does_not_matter(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    write(root / ".gitignore", "node_modules\n")
    write(root / "a")
    (root / "node_modules").symlink_to("/usr")
    assert names(pack(root, tmp_path)) == {".gitignore", "a"}


def test_fifo_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    write(root / "a")
    os.mkfifo(root / "pipe")
    with pytest.raises(WorkspaceError, match="pipe: is a fifo"):
        pack(root, tmp_path)


def test_invalid_utf8_name_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    write(root / "a")
    try:
        with open(os.path.join(os.fsencode(root), b"bad\xff.txt"), "wb") as f:
            f.write(b"x")
    except OSError:
        pytest.skip("this file system refuses non-UTF-8 names")
    with pytest.raises(WorkspaceError, match="not valid UTF-8"):
        pack(root, tmp_path)


def test_too_long_path_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    parent = root.joinpath(*["d" * 250] * 15, "e" * 85)  # 3850 bytes below the root
    parent.mkdir(parents=True)
    name = "f" * 250  # 4101 bytes: longer than the absolute paths Linux takes, so made relative to its folder
    fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.close(os.open(name, os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
    finally:
        os.close(fd)
    with pytest.raises(WorkspaceError, match=f"longer than {MAX_PATH_BYTES}"):
        pack(root, tmp_path)


# --- the archive ---------------------------------------------------------------------------------


def make_tree(root: Path) -> None:
    write(root / "src/main.py", "print('hi')\n", mode=0o664)
    write(root / "run.sh", "#!/bin/sh\necho hi\n", mode=0o775)
    write(root / "data/blob.bin", bytes(range(256)) * 100, mode=0o600)
    write(root / "z/a/b.txt", "deep\n")
    (root / "link").symlink_to("src/main.py")
    (root / "empty").mkdir()


def test_archive_headers_are_normalised_and_sorted(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    make_tree(root)
    ws = pack(root, tmp_path)
    with tarfile.open(ws.path) as tar:
        infos = tar.getmembers()
    got = [m.name for m in infos]
    assert got == sorted(got)
    assert got == ["data", "data/blob.bin", "empty", "link", "run.sh", "src", "src/main.py", "z", "z/a", "z/a/b.txt"]
    for m in infos:
        assert (m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", 0), m.name
        assert m.mode == (0o777 if m.issym() else 0o755 if m.isdir() or m.name == "run.sh" else 0o644), m.name
    assert ws.path == tmp_path / "out" / f"{ws.sha256}.tar"
    assert hashlib.sha256(ws.path.read_bytes()).hexdigest() == ws.sha256
    assert ws.size == ws.path.stat().st_size
    assert ws.files == 5 and ws.bytes == len("print('hi')\n") + len("#!/bin/sh\necho hi\n") + 25600 + 5
    assert [p.name for p in (tmp_path / "out").iterdir()] == [ws.path.name]  # no temporary left


def test_same_tree_same_bytes(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    make_tree(root)
    first = pack(root, tmp_path)
    inode = first.path.stat().st_ino
    second = pack(root, tmp_path)
    assert second.sha256 == first.sha256 and second.path.stat().st_ino == inode  # reused, not rewritten

    os.utime(root / "src/main.py", (1, 1))  # times do not count
    os.utime(root / "z/a", (12345, 12345))
    (root / "data/blob.bin").chmod(0o640)  # neither do the non-executable bits
    assert pack(root, tmp_path).sha256 == first.sha256

    copy = tmp_path / "elsewhere" / "copy"  # nor where the tree lies
    shutil.copytree(root, copy, symlinks=True)
    assert pack_workspace(copy, tmp_path / "out2").sha256 == first.sha256

    (root / "src/main.py").write_text("print('changed')\n")
    changed = pack(root, tmp_path)
    assert changed.sha256 != first.sha256
    (root / "src/main.py").write_text("print('hi')\n")
    assert pack(root, tmp_path).sha256 == first.sha256
    (root / "src/main.py").chmod(0o755)  # the executable bit does count
    assert pack(root, tmp_path).sha256 != first.sha256
    assert len(list((tmp_path / "out").glob("*.tar"))) == 3


def test_round_trip_keeps_contents_and_modes(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    make_tree(root)
    write(root / "ünïcödé/名前.txt", "名前\n")
    write(root / ("n" * 120) / (("m" * 120) + ".txt"), "long name\n")
    ws = pack(root, tmp_path)
    out = tmp_path / "x"
    with tarfile.open(ws.path) as tar:
        tar.extractall(out, filter="data")
    check_same(root, out)


@pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox is not installed")
def test_busybox_tar_unpacks_it(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    make_tree(root)
    write(root / ("n" * 120) / (("m" * 120) + ".txt"), "long name\n")
    ws = pack(root, tmp_path)
    out = tmp_path / "x"
    out.mkdir()
    argv = unpack_command(str(ws.path), str(out))
    assert argv[0] == "tar"
    subprocess.run(["busybox", *argv], check=True, capture_output=True)
    check_same(root, out)


def check_same(root: Path, out: Path) -> None:
    def tree(base: Path) -> dict[str, tuple[str, object, int]]:
        got: dict[str, tuple[str, object, int]] = {}
        for dirpath, dirnames, filenames in os.walk(base):
            for name in dirnames + filenames:
                p = Path(dirpath) / name
                rel = p.relative_to(base).as_posix()
                st = p.lstat()
                if stat.S_ISLNK(st.st_mode):
                    got[rel] = ("link", os.readlink(p), 0)
                elif stat.S_ISDIR(st.st_mode):
                    got[rel] = ("dir", None, 0)
                else:
                    got[rel] = ("file", hashlib.sha256(p.read_bytes()).hexdigest(), st.st_mode & 0o100)
        return got

    assert tree(out) == tree(root)


# --- bounds and streaming --------------------------------------------------------------------------


def test_max_bytes_names_the_biggest_files(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    write(root / "small.txt", "x" * 10)
    write(root / "assets/huge.bin", b"\0" * 5000)
    write(root / "assets/big.bin", b"\0" * 3000)
    with pytest.raises(WorkspaceError, match="max_bytes=4096") as err:
        pack(root, tmp_path, max_bytes=4096)
    assert "assets/huge.bin (4.9 KiB)" in str(err.value)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    assert pack(root, tmp_path, max_bytes=8010).bytes == 8010  # the bound is inclusive


@pytest.mark.parametrize("use_git", [False, pytest.param(True, marks=needs_git)])
def test_max_files(tmp_path: Path, use_git: bool) -> None:
    root = git_repo(tmp_path / "tree") if use_git else tmp_path / "tree"
    for i in range(12):
        write(root / f"f{i:02}.txt", "x" * i)
    with pytest.raises(WorkspaceError, match="more than max_files=10 files") as err:
        pack(root, tmp_path, max_files=10)
    assert "f10.txt" in str(err.value)  # where it stopped
    assert pack(root, tmp_path, max_files=12).files == 12


def test_large_file_is_streamed(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    size = 50 * (1 << 20) + 123
    chunk = hashlib.sha256(b"seed").digest() * 32768  # 1 MiB
    digest = hashlib.sha256()
    with open(root / "big.bin", "wb") as f:
        for i in range(50):
            if i % 10 == 0:  # some real data ...
                f.write(chunk)
                digest.update(chunk)
            else:  # ... and holes
                f.seek(len(chunk), io.SEEK_CUR)
                digest.update(bytes(len(chunk)))
        f.write(b"t" * 123)
        digest.update(b"t" * 123)
    tracemalloc.start()
    try:
        ws = pack(root, tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak  # never the whole 50 MiB
    assert ws.bytes == size and ws.files == 1
    assert size + 512 < ws.size < size + 512 * 30
    with tarfile.open(ws.path) as tar:
        info = tar.getmember("big.bin")
        assert info.size == size
        src = tar.extractfile(info)
        assert src is not None
        got = hashlib.sha256()
        while block := src.read(1 << 20):
            got.update(block)
    assert got.hexdigest() == digest.hexdigest()


# --- the rest ------------------------------------------------------------------------------------


def test_unpack_command() -> None:
    assert unpack_command("/work/in/workspace.tar", "/work/ws") == ["tar", "-xf", "/work/in/workspace.tar", "-C",
                                                                    "/work/ws"]
    for bad in ("", "-rf", "a\0b"):
        with pytest.raises(WorkspaceError):
            unpack_command(bad, "/work/ws")
        with pytest.raises(WorkspaceError):
            unpack_command("/a.tar", bad)


def test_errors_are_sdk_errors(tmp_path: Path) -> None:
    assert issubclass(WorkspaceError, SdkError)
    with pytest.raises(WorkspaceError, match="not a directory"):
        pack_workspace(write(tmp_path / "file"), tmp_path / "out")
    with pytest.raises(WorkspaceError, match="not a directory"):
        pack_workspace(tmp_path / "missing", tmp_path / "out")
