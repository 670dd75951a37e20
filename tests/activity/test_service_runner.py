"""The provider's service supervisor (yagna/activity_service/services.py) on a fake runtime and trio's
autojump clock: restarts with a bounded back-off, counted and said; health; a volume over its size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from exeunit.runtime import FORWARDER_PATH, ExecResult
from yagna.activity_service.services import MAX_BACKOFF_S, ServiceRunner, ServiceState, disk_usage


class FakeRuntime:
    """The service runs ``lives`` seconds each time (then exits 1); the forwarder and probes as told."""

    def __init__(self, lives: list[float], probe_ok: bool = True) -> None:
        self.lives = lives
        self.starts: list[float] = []
        self.probe_ok = probe_ok

    async def exec(self, container_id: str, argv: list[str], *, env: dict[str, str], workdir: str, timeout_s: float,
                   on_output: Any = None, max_output_bytes: int = 0) -> ExecResult:
        now = trio.current_time()
        if argv[:2] == [FORWARDER_PATH, "--probe"]:
            return ExecResult(0 if self.probe_ok else 1, b"", b"", now, now)
        if argv[0] == FORWARDER_PATH:
            await on_output("stdout", b"ready\n")
            await trio.sleep_forever()
        self.starts.append(now)
        await on_output("stdout", b"hello\n")
        life = self.lives[min(len(self.starts) - 1, len(self.lives) - 1)]
        await trio.sleep(life)
        return ExecResult(1, b"", b"", now, now + life)


async def _run(runtime: FakeRuntime, state: ServiceState, seconds: float, **kw: Any) -> list[bytes]:
    out: list[bytes] = []

    async def emit(kind: str, data: bytes) -> None:
        out.append(data)

    runner = ServiceRunner(runtime, "c1", state, emit=emit, socket_dir=None, **kw)  # type: ignore[arg-type]
    with trio.move_on_after(seconds):
        await runner.run(["svc"], {}, "/")
    return out


async def test_a_crashing_service_is_restarted_with_a_bounded_back_off(autojump_clock: Any) -> None:
    runtime, state = FakeRuntime([0.5]), ServiceState(ports=())
    out = await _run(runtime, state, 200)
    gaps = [round(b - a - 0.5, 3) for a, b in zip(runtime.starts, runtime.starts[1:])]
    assert gaps[:6] == [1, 2, 4, 8, 16, 30] and max(gaps) == MAX_BACKOFF_S
    assert len(runtime.starts) - 1 <= state.restarts <= len(runtime.starts) and state.restarts >= 8
    assert state.last_exit == 1
    assert b"[yagna] service exited with code 1 after 0.5 s; restart 1 in 1 s\n" in out


async def test_a_service_that_ran_a_while_restarts_after_the_shortest_back_off(autojump_clock: Any) -> None:
    runtime, state = FakeRuntime([0.5, 0.5, 0.5, 120, 0.5]), ServiceState(ports=())
    await _run(runtime, state, 140)
    gaps = [round(b - a, 3) for a, b in zip(runtime.starts, runtime.starts[1:])]
    assert gaps[:4] == [1.5, 2.5, 4.5, 121]  # after 120 s of running: 1 s again, not 8


async def test_ready_needs_the_tunnel_and_health_follows_the_probe(autojump_clock: Any) -> None:
    runtime, state = FakeRuntime([1000]), ServiceState(ports=(8080,), health={"tcp": 8080})
    await _run(runtime, state, 3)
    assert state.ready.is_set() and state.tunnel_ready and state.healthy is True  # (running ends with the run)
    runtime2, state2 = FakeRuntime([1000], probe_ok=False), ServiceState(ports=(8080,), health={"tcp": 8080})
    out = await _run(runtime2, state2, 3)
    assert state2.healthy is False and any(b"health check failed: nothing accepts on port 8080" in o for o in out)


async def test_a_persistent_volume_over_its_size_stops_the_service(tmp_path: Path, autojump_clock: Any) -> None:
    (tmp_path / "big").write_bytes(b"x" * 300_000)
    runtime, state = FakeRuntime([1000]), ServiceState(ports=())
    out = await _run(runtime, state, 100, volumes=[("data", tmp_path, 100_000)])
    assert state.stopped is not None and "volume data holds" in state.stopped and len(runtime.starts) == 1
    assert any(b"over its size of 100000: the service is stopped" in o for o in out)
    assert disk_usage(tmp_path) >= 300_000
