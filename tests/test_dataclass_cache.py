"""The dataclass code cache (yagna/cli/dataclass_cache.py): same classes, compiled once across starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from yagna.cli import dataclass_cache

pytestmark = pytest.mark.skipif(not dataclass_cache._supported(), reason="only on the CPython it mirrors (3.11)")

SCRIPT = textwrap.dedent(
    """
    import dataclasses, inspect, json, sys
    from yagna.cli import dataclass_cache
    on = dataclass_cache.install()
    from dataclasses import InitVar, KW_ONLY, dataclass, field

    @dataclass(frozen=True, order=True)
    class Frozen:
        a: int
        b: str = "x"
        c: list = field(default_factory=list, compare=False, repr=False)

    @dataclass(slots=True, kw_only=True)
    class Slotted:
        x: float
        y: "int | None" = None

    @dataclass(eq=False)
    class WithInit:
        n: int
        scale: InitVar[int] = 2
        _: KW_ONLY
        tag: str = "t"
        def __post_init__(self, scale):
            self.n *= scale

    @dataclass(unsafe_hash=True)
    class Hashed:
        p: tuple

    f1, f2 = Frozen(1, "y", [1]), Frozen(1, "y", [2])
    try:
        f1.a = 3
        frozen = None
    except dataclasses.FrozenInstanceError as exc:
        frozen = type(exc).__name__
    out = {
        "on": on,
        "new": len(dataclass_cache._added),
        "repr": [repr(f1), repr(Slotted(x=1.5)), repr(WithInit(3, 5, tag="u")), repr(Hashed((1,)))],
        "eq": [f1 == f2, f1 < Frozen(2), WithInit(1) == WithInit(1), Hashed((1,)) == Hashed((1,))],
        "hash": [hash(f1) == hash(f2), hash(Hashed((1, 2))) == hash(Hashed((1, 2)))],
        "frozen": frozen,
        "slots": [Slotted.__slots__, hasattr(Slotted(x=1), "__dict__")],
        "signatures": [str(inspect.signature(c)) for c in (Frozen, Slotted, WithInit, Hashed)],
        "annotations": [repr(c.__init__.__annotations__) for c in (Frozen, Slotted, WithInit, Hashed)],
        "names": [c.__init__.__qualname__ for c in (Frozen, Slotted, WithInit, Hashed)],
        "match_args": [list(Frozen.__match_args__), list(WithInit.__match_args__)],
    }
    out["written"] = dataclass_cache.finish()
    out["restored"] = dataclasses._create_fn is not dataclass_cache._create_fn
    print(json.dumps(out))
    """
)


def _run(cache_home: Path, enabled: bool = True) -> dict:  # type: ignore[type-arg]
    env = {**os.environ, "XDG_CACHE_HOME": str(cache_home), "YAGNA_DATACLASS_CACHE": "1" if enabled else "0"}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _behaviour(got: dict) -> dict:  # type: ignore[type-arg]
    return {k: v for k, v in got.items() if k not in ("on", "new", "written", "restored")}


def test_classes_from_the_cache_behave_as_compiled_ones(tmp_path: Path) -> None:
    plain = _run(tmp_path / "off", enabled=False)
    first = _run(tmp_path / "cache")
    second = _run(tmp_path / "cache")
    assert (plain["on"], first["on"], second["on"]) == (False, True, True)
    assert first["new"] > 10 and first["written"] and first["restored"]
    assert second["new"] == 0 and not second["written"] and second["restored"]  # every method from the cache
    assert _behaviour(first) == _behaviour(plain) == _behaviour(second)
    files = list((tmp_path / "cache" / "yagna").iterdir())
    assert [f.name for f in files] == [dataclass_cache.cache_file().name]
    assert files[0].stat().st_mode & 0o777 == 0o600


def test_a_damaged_cache_file_is_ignored_and_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "yagna" / dataclass_cache.cache_file().name
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x00garbage")
    got = _run(tmp_path / "cache")
    assert got["new"] > 10 and got["written"]
    assert _run(tmp_path / "cache")["new"] == 0


def test_an_unwritable_cache_directory_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "yagna").write_text("a file where the directory would be")
    got = _run(tmp_path / "ro")
    assert got["on"] and not got["written"] and got["restored"]
    assert _behaviour(got) == _behaviour(_run(tmp_path / "off", enabled=False))


def test_the_daemon_writes_the_cache_once_it_is_up(tmp_path: Path) -> None:
    import signal
    import time

    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("YAGNA_DATACLASS_CACHE", None)
    proc = subprocess.Popen([sys.executable, "-m", "yagna", "--data-dir", str(tmp_path / "node"), "service", "run",
                             "--api-port", "0", "--role", "requestor"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        cache = tmp_path / "cache" / "yagna" / dataclass_cache.cache_file().name
        while not cache.exists():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "no cache file written"
            time.sleep(0.05)
        assert (tmp_path / "node" / "node.json").exists()  # written once the node is up, after node.json
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    assert proc.returncode == 0
