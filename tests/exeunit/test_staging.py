"""The provider's staging of transfer results: bounds, typed refusals, and removal (issue 11 row 9)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from exeunit.errors import StagingFull, TransferRefused
from exeunit.staging import Staging, StagingBounds, StagingBudget

MiB = 2**20


def test_budget_bounds_per_activity_by_its_storage_and_in_all() -> None:
    b = StagingBudget(StagingBounds(total_bytes=10 * MiB, total_files=100, files_per_activity=3))
    assert b.reserve("a1", "A", want=4 * MiB, activity_bytes=4 * MiB) == 4 * MiB
    b.settle("a1", 3 * MiB)  # the file was smaller than the room held for it
    assert b.held_by("A") == (3 * MiB, 1) and b.total_bytes == 3 * MiB
    assert b.reserve("a2", "A", want=4 * MiB, activity_bytes=4 * MiB) == 1 * MiB  # only what is left
    b.settle("a2", 1 * MiB)
    with pytest.raises(StagingFull) as e:
        b.reserve("a3", "A", want=4 * MiB, activity_bytes=4 * MiB)
    assert e.value.code == "staging-full" and isinstance(e.value, TransferRefused)
    assert "fetch the results or end the activity" in str(e.value)
    # Another activity is not starved by A, until the node's total runs out.
    assert b.reserve("b1", "B", want=8 * MiB, activity_bytes=8 * MiB) == 6 * MiB
    with pytest.raises(StagingFull, match="the provider 10485760 of 10485760"):
        b.reserve("c1", "C", want=MiB, activity_bytes=8 * MiB)
    # Nothing held was lost by the refusals; releasing frees room.
    assert b.held_by("A") == (4 * MiB, 2) and len(b) == 3
    assert b.release("a1") and not b.release("a1")
    assert b.reserve("c1", "C", want=MiB, activity_bytes=8 * MiB) == MiB


def test_budget_bounds_files() -> None:
    b = StagingBudget(StagingBounds(total_bytes=10 * MiB, total_files=3, files_per_activity=2))
    for name in ("a1", "a2"):
        b.reserve(name, "A", want=1, activity_bytes=MiB)
    with pytest.raises(StagingFull, match="at most 2"):
        b.reserve("a3", "A", want=1, activity_bytes=MiB)
    b.reserve("b1", "B", want=1, activity_bytes=MiB)
    with pytest.raises(StagingFull, match="at most 3"):
        b.reserve("c1", "C", want=1, activity_bytes=MiB)


class FileRuntime:
    """The one runtime call staging makes: ``get_file`` copies ``files[src]`` (bounded by max_bytes)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    async def get_file(self, container_id: str, path: str, dest_path: str, *, max_bytes: int) -> int:
        data = self.files[path]
        if len(data) > max_bytes:
            raise TransferRefused("too-large", f"{path} is {len(data)} bytes, over the limit of {max_bytes}")
        Path(dest_path).write_bytes(data)
        return len(data)


async def test_take_out_refuses_what_does_not_fit_and_keeps_what_it_has(tmp_path: Path) -> None:
    staging = Staging(tmp_path / "staging", StagingBounds(total_bytes=64 * MiB))
    await staging.open()
    rt = FileRuntime({"/work/a": b"a" * (3 * MiB), "/work/b": b"b" * (2 * MiB), "/work/huge": b"h" * (5 * MiB)})
    a = await staging.take_out(rt, "c", "/work/a", "act", max_bytes=4 * MiB)  # type: ignore[arg-type]
    with pytest.raises(StagingFull, match="1048576 bytes of staging left"):
        await staging.take_out(rt, "c", "/work/b", "act", max_bytes=4 * MiB)  # type: ignore[arg-type]
    with pytest.raises(TransferRefused) as e:  # over the agreement's storage itself: the runtime's refusal
        await staging.take_out(rt, "c", "/work/huge", "other", max_bytes=4 * MiB)  # type: ignore[arg-type]
    assert e.value.code == "too-large" and not isinstance(e.value, StagingFull)
    assert sorted(os.listdir(staging.root)) == [a.name] and a.read_bytes() == b"a" * (3 * MiB)
    await staging.remove(a)  # fetched
    assert os.listdir(staging.root) == [] and staging.budget.total_bytes == 0
    await staging.take_out(rt, "c", "/work/b", "act", max_bytes=4 * MiB)  # type: ignore[arg-type]


async def test_open_removes_what_a_crash_left(tmp_path: Path) -> None:
    root = tmp_path / "staging"
    (root / "sub").mkdir(parents=True)
    (root / "out-act-1234").write_bytes(b"x" * 1000)
    (root / "image-ab.tar.part-12").write_bytes(b"y")
    (root / "sub" / "deep").write_bytes(b"z")
    outside = tmp_path / "keep"
    outside.write_bytes(b"mine")
    (root / "link").symlink_to(outside)
    assert await Staging(root).open() == 4
    assert os.listdir(root) == [] and outside.read_bytes() == b"mine"  # a symlink is removed, never followed


async def test_an_ended_activity_keeps_its_results_for_the_grace_only(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    dropped: list[tuple[str, float]] = []
    staging = Staging(tmp_path / "s", StagingBounds(ended_grace_s=60, sweep_s=5),
                      on_drop=lambda a: dropped.append((a, trio.current_time())))
    await staging.open()
    rt = FileRuntime({"/work/r": b"r"})
    kept = await staging.take_out(rt, "c", "/work/r", "A", max_bytes=MiB)  # type: ignore[arg-type]
    gone = await staging.take_out(rt, "c", "/work/r", "B", max_bytes=MiB)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(staging.run)
        start = trio.current_time()
        staging.retire("A")
        staging.retire("nothing-held")  # nothing to keep: told at once
        assert dropped == [("nothing-held", start)]
        await trio.sleep(59)
        assert kept.exists() and len(dropped) == 1
        await trio.sleep(6)
        (who, when), = dropped[1:]
        assert who == "A" and 60 <= when - start <= 65  # the grace, then the next sweep
        assert staging.budget.held_by("A") == (0, 0)
        assert await staging.drop("B") == 1 and not gone.exists()  # destroyed: at once
        nursery.cancel_scope.cancel()  # waits for an unlink in flight on its thread
    assert not kept.exists() and staging.budget.total_bytes == 0 and os.listdir(staging.root) == []
