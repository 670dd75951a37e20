"""DockerRuntime against the real engine: hardening, limits, streaming, kills, files, usage, images.

Every container is labelled with the session's test node id and removed by the
fixtures; no timing asserts beyond orderings.
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import tarfile
import time
import uuid
from pathlib import Path

import docker
import pytest
import trio

from exeunit.docker_runtime import DockerRuntime
from exeunit.errors import ImageError, RuntimeFailure, TransferRefused
from exeunit.runtime import LABEL_NODE, ContainerLimits, Runtime

pytestmark = pytest.mark.usefixtures("test_image")


async def sh(rt, cid: str, script: str, *, timeout_s: float = 20, **kw):  # type: ignore[no-untyped-def]
    return await rt.exec(cid, ["sh", "-c", script], env=kw.pop("env", {}), workdir=kw.pop("workdir", "/work"),
                         timeout_s=timeout_s, **kw)


def test_docker_runtime_is_a_runtime() -> None:
    rt: Runtime = DockerRuntime()
    assert isinstance(rt, DockerRuntime)


async def test_echo_round_trip_and_exit_codes(docker_runtime, make_container) -> None:
    cid = await make_container()
    r = await docker_runtime.exec(cid, ["echo", "hello", "world"], env={}, workdir="/work", timeout_s=10)
    assert (r.exit_code, r.stdout, r.stderr) == (0, b"hello world\n", b"")
    assert not (r.timed_out or r.oom_killed or r.stdout_truncated or r.stderr_truncated)
    assert r.started_at <= r.finished_at
    r = await sh(docker_runtime, cid, "echo out; echo err >&2; exit 7")
    assert (r.exit_code, r.stdout, r.stderr) == (7, b"out\n", b"err\n")
    r = await docker_runtime.exec(cid, ["/no/such/binary"], env={}, workdir="/work", timeout_s=10)
    assert r.exit_code not in (0, None)


async def test_output_is_streamed_while_the_command_runs(docker_runtime, make_container) -> None:
    cid = await make_container()
    seen: list[tuple[float, str, bytes]] = []

    async def sink(kind: str, chunk: bytes) -> None:
        seen.append((time.time(), kind, chunk))

    r = await sh(docker_runtime, cid, "for i in 1 2 3 4 5 6; do echo line$i; sleep 0.2; done; echo done >&2",
                 on_output=sink)
    assert r.exit_code == 0
    assert b"".join(c for _, k, c in seen if k == "stdout") == r.stdout == b"".join(b"line%d\n" % i for i in range(1, 7))
    assert [c for _, k, c in seen if k == "stderr"] == [b"done\n"]
    first = next(t for t, k, _ in seen if k == "stdout")
    # The first line arrives while five sleeps of 0.2 s are still to run.
    assert first < r.finished_at - 0.5


async def test_output_cap_keeps_the_tail_and_flags_truncation(docker_runtime, make_container) -> None:
    cid = await make_container()
    streamed = bytearray()

    async def sink(kind: str, chunk: bytes) -> None:
        if kind == "stdout":
            streamed.extend(chunk)

    r = await sh(docker_runtime, cid, "i=0; while [ $i -lt 2000 ]; do echo line-$i; i=$((i+1)); done; echo small >&2",
                 max_output_bytes=1000, on_output=sink)
    full = b"".join(b"line-%d\n" % i for i in range(2000))
    assert bytes(streamed) == full
    assert r.stdout == full[-1000:] and r.stdout_truncated
    assert r.stderr == b"small\n" and not r.stderr_truncated


async def test_env_workdir_and_the_unprivileged_user(docker_runtime, make_container) -> None:
    cid = await make_container()
    r = await sh(docker_runtime, cid, 'echo "$GREETING"; pwd; id -u; id -g', env={"GREETING": "hi there"},
                 workdir="/tmp")
    assert r.stdout.decode().split("\n")[:4] == ["hi there", "/tmp", "1000", "1000"]


async def test_writable_only_work_and_tmp(docker_runtime, make_container) -> None:
    cid = await make_container()
    for path in ("/x", "/etc/x", "/bin/x"):
        r = await sh(docker_runtime, cid, f"echo x > {path}")
        assert r.exit_code != 0, path
    r = await sh(docker_runtime, cid, "echo a > /work/a && echo b > /tmp/b && mkdir -p /work/d/e && cat /work/a /tmp/b")
    assert (r.exit_code, r.stdout) == (0, b"a\nb\n")
    r = await sh(docker_runtime, cid, "touch /work/in/x /work/out/y && stat -c '%u:%g %a' /work /work/in /work/out")
    assert r.stdout.split(b"\n")[:3] == [b"1000:1000 755"] * 3


async def test_no_network_at_all(docker_runtime, make_container) -> None:
    cid = await make_container()
    r = await sh(docker_runtime, cid, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '")
    assert r.stdout.split() == [b"lo"]
    # A server on the host, on every address: unreachable from the container,
    # neither on its own 127.0.0.1 (another network namespace) nor on the host's address.
    with socket.socket() as server:
        server.bind(("0.0.0.0", 0))
        server.listen()
        server.setblocking(False)
        port = server.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.connect(("10.255.255.255", 1))
                host_ip = probe.getsockname()[0]
            except OSError:
                host_ip = "10.0.0.1"
        for ip in ("127.0.0.1", host_ip, "8.8.8.8"):
            r = await sh(docker_runtime, cid, f"wget -q -T 2 -O- http://{ip}:{port}/", timeout_s=10)
            assert r.exit_code not in (0, None), (ip, r)
        with pytest.raises(BlockingIOError):
            server.accept()


async def test_no_capabilities_and_no_new_privileges(docker_runtime, make_container) -> None:
    cid = await make_container()
    r = await sh(docker_runtime, cid, "grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status")
    fields = dict(line.split(":\t") for line in r.stdout.decode().splitlines())
    assert fields["CapEff"] == fields["CapPrm"] == fields["CapBnd"] == "0000000000000000"
    assert fields["NoNewPrivs"] == "1"


async def test_fork_bomb_stops_at_the_pids_limit(docker_runtime, make_container) -> None:
    cid = await make_container(ContainerLimits(cpu_threads=1, memory_bytes=64 * 2**20, storage_bytes=8 * 2**20, pids=64))
    # The bomb in the background, then `exec sleep`: the command's own process forks nothing once the
    # bomb runs (a fork failing in it ended the command early, and the test flaked), so it lives until the timeout.
    r = await sh(docker_runtime, cid, "(b() { b | b & }; b) & exec sleep 100", timeout_s=3)
    assert r.timed_out and r.exit_code is None
    # Every process of the bomb was killed and reaped: the same container runs on.
    r = await sh(docker_runtime, cid, "echo still here")
    assert (r.exit_code, r.stdout) == (0, b"still here\n")
    # The host survived and the runtime goes on: a fresh container runs commands.
    fresh = await make_container()
    r = await sh(docker_runtime, fresh, "echo alive")
    assert (r.exit_code, r.stdout) == (0, b"alive\n")
    await docker_runtime.remove(cid)


async def test_memory_hog_is_oom_killed(docker_runtime, make_container) -> None:
    cid = await make_container()
    r = await sh(docker_runtime, cid, "head -c 200m /dev/zero | tail > /dev/null")
    assert r.oom_killed and r.exit_code != 0
    # A well-behaved command after it is not flagged.
    r = await sh(docker_runtime, cid, "echo fine")
    assert r.exit_code == 0 and not r.oom_killed


async def _processes(rt, cid: str) -> list[str]:  # type: ignore[no-untyped-def]
    r = await rt.exec(cid, ["ps", "-o", "pid,args"], env={}, workdir="/work", timeout_s=10)
    return [line.split(None, 1)[1] for line in r.stdout.decode().splitlines()[1:] if "ps -o" not in line]


async def test_timeout_kills_the_command_and_its_children_work_survives(docker_runtime, make_container) -> None:
    cid = await make_container()
    assert (await sh(docker_runtime, cid, "echo keep > /work/keep")).exit_code == 0
    r = await sh(docker_runtime, cid, "sleep 1001 & (sleep 1002 &) ; echo started; sleep 1000", timeout_s=1)
    assert r.timed_out and r.exit_code is None and r.stdout == b"started\n"
    left = await _processes(docker_runtime, cid)
    assert not [p for p in left if "sleep 100" in p], left
    assert (await sh(docker_runtime, cid, "cat /work/keep")).stdout == b"keep\n"


async def test_a_timeout_spares_the_other_running_command(docker_runtime, make_container) -> None:
    cid = await make_container()
    results = {}

    async def run(name: str, script: str, timeout_s: float) -> None:
        results[name] = await sh(docker_runtime, cid, script, timeout_s=timeout_s)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, "slow", "sleep 1.5; echo survived", 30)
        nursery.start_soon(run, "stuck", "sleep 1000", 0.5)
    assert results["stuck"].timed_out
    assert (results["slow"].exit_code, results["slow"].stdout) == (0, b"survived\n")


async def test_timeout_kill_falls_back_to_killing_from_inside(docker_runtime, make_container, monkeypatch) -> None:
    # A daemon that may not signal the engine's processes (not root, no CAP_KILL).
    def refuse(pid: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(docker_runtime.inner.killer, "sigkill", refuse)
    cid = await make_container()
    assert (await sh(docker_runtime, cid, "echo keep > /work/keep")).exit_code == 0
    r = await sh(docker_runtime, cid, "sleep 1001 & sleep 1000", timeout_s=0.5)
    assert r.timed_out
    assert not [p for p in await _processes(docker_runtime, cid) if "sleep 100" in p]
    assert (await sh(docker_runtime, cid, "cat /work/keep")).stdout == b"keep\n"


async def test_cancelled_caller_kills_the_command(docker_runtime, make_container) -> None:
    cid = await make_container()
    with trio.move_on_after(0.5) as scope:
        await sh(docker_runtime, cid, "sleep 1000", timeout_s=1000)
    assert scope.cancelled_caught
    left = await _processes(docker_runtime, cid)
    assert not [p for p in left if "sleep 1000" in p], left


async def test_failing_output_sink_kills_the_command(docker_runtime, make_container) -> None:
    cid = await make_container()

    async def sink(kind: str, chunk: bytes) -> None:
        raise ValueError("consumer gone")

    with pytest.raises(ValueError):
        await sh(docker_runtime, cid, "echo first; sleep 1000", on_output=sink)
    assert not [p for p in await _processes(docker_runtime, cid) if "sleep 1000" in p]


async def test_a_kill_waits_for_the_engine_to_see_a_just_started_command(docker_runtime, make_container,
                                                                         monkeypatch) -> None:
    """Regression (a flake): output can arrive before the engine reports the exec running (no pid, no
    exit code yet); a kill then took it for over and left it running."""
    cid = await make_container()
    api = docker_runtime.inner.engine.api()
    real_inspect = api.exec_inspect
    lies = [3]

    def not_yet(exec_id: str):  # type: ignore[no-untyped-def]
        info = real_inspect(exec_id)
        if info.get("Running") and lies[0] > 0:
            lies[0] -= 1
            return {**info, "Running": False, "Pid": 0, "ExitCode": None}
        return info

    monkeypatch.setattr(api, "exec_inspect", not_yet)

    async def sink(kind: str, chunk: bytes) -> None:
        raise ValueError("consumer gone")

    with pytest.raises(ValueError):
        await sh(docker_runtime, cid, "echo first; sleep 1000", on_output=sink)
    assert not [p for p in await _processes(docker_runtime, cid) if "sleep 1000" in p]


async def test_put_and_get_file_round_trip(docker_runtime, make_container, tmp_path: Path) -> None:
    cid = await make_container()
    src = tmp_path / "in.bin"
    src.write_bytes(os.urandom(3 * 2**20 + 17))
    await docker_runtime.put_file(cid, "/work/in/deep/data.bin", str(src))
    r = await sh(docker_runtime, cid, "sha256sum /work/in/deep/data.bin | cut -d' ' -f1; "
                 "cp /work/in/deep/data.bin /work/in/copy.bin && echo ok")
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    assert r.stdout.decode().split() == [digest, "ok"]  # lands in /work as the command sees it, writable dirs
    dest = tmp_path / "out.bin"
    n = await docker_runtime.get_file(cid, "/work/in/copy.bin", str(dest), max_bytes=4 * 2**20)
    assert n == src.stat().st_size and hashlib.sha256(dest.read_bytes()).hexdigest() == digest

    with pytest.raises(TransferRefused) as e:
        await docker_runtime.get_file(cid, "/work/in/copy.bin", str(tmp_path / "big"), max_bytes=2**20)
    assert e.value.code == "too-large" and not (tmp_path / "big").exists()
    with pytest.raises(TransferRefused) as e:
        await docker_runtime.get_file(cid, "/work/nope", str(tmp_path / "nope"), max_bytes=2**20)
    assert e.value.code == "not-found"
    with pytest.raises(TransferRefused) as e:
        await docker_runtime.get_file(cid, "/work/in", str(tmp_path / "dir"), max_bytes=2**20)
    assert e.value.code == "bad-path"
    await sh(docker_runtime, cid, "ln -s /etc/passwd /work/link")
    with pytest.raises(TransferRefused) as e:
        await docker_runtime.get_file(cid, "/work/link", str(tmp_path / "link"), max_bytes=2**20)
    assert e.value.code == "bad-path"
    for bad in ("/etc/passwd", "/work/../etc/passwd", "work/x", "/work"):
        with pytest.raises(TransferRefused) as e:
            await docker_runtime.put_file(cid, bad, str(src))
        assert e.value.code == "bad-path"


async def test_put_file_over_the_work_size_is_refused(docker_runtime, make_container, tmp_path: Path) -> None:
    cid = await make_container(ContainerLimits(cpu_threads=1, memory_bytes=64 * 2**20, storage_bytes=2**20, pids=64))
    src = tmp_path / "big.bin"
    src.write_bytes(b"\1" * (2 * 2**20))
    with pytest.raises(TransferRefused) as e:
        await docker_runtime.put_file(cid, "/work/big.bin", str(src))
    assert e.value.code == "too-large"


async def test_usage_counts_cpu_memory_and_duration(docker_runtime, make_container) -> None:
    cid = await make_container()
    u0 = await docker_runtime.usage(cid)
    r = await sh(docker_runtime, cid, "timeout 1 sh -c 'while :; do :; done'; true")
    assert r.exit_code == 0
    u1 = await docker_runtime.usage(cid)
    assert u1.cpu_s > 0.5 and u1.cpu_s > u0.cpu_s
    assert u1.peak_memory_bytes > 0
    assert u1.duration_s > u0.duration_s >= 0
    assert set(u1.golem_vector()) == {"golem.usage.duration_sec", "golem.usage.cpu_sec", "golem.usage.gib"}


async def test_pause_and_unpause(docker_runtime, make_container) -> None:
    cid = await make_container()
    await docker_runtime.pause(cid)
    await docker_runtime.pause(cid)  # idempotent
    with pytest.raises(RuntimeFailure) as e:
        await sh(docker_runtime, cid, "true")
    assert e.value.code == "container-state"
    assert (await docker_runtime.usage(cid)).duration_s > 0
    await docker_runtime.unpause(cid)
    await docker_runtime.unpause(cid)
    assert (await sh(docker_runtime, cid, "echo back")).stdout == b"back\n"


async def test_leftovers_and_idempotent_remove(docker_runtime, test_image, engine, spec_for, test_node_id) -> None:
    cid = await docker_runtime.create(spec_for(test_image))
    found = dict(await docker_runtime.leftovers(test_node_id))
    assert cid in found and found[cid][LABEL_NODE] == test_node_id
    assert await docker_runtime.leftovers(f"other-{uuid.uuid4().hex}") == []
    volume = found[cid]["network.yagna.work-volume"]
    await docker_runtime.remove(cid)
    await docker_runtime.remove(cid)
    assert cid not in dict(await docker_runtime.leftovers(test_node_id))
    with pytest.raises(docker.errors.NotFound):
        engine.api.inspect_volume(volume)
    with pytest.raises(RuntimeFailure) as e:
        await docker_runtime.exec(cid, ["true"], env={}, workdir="/work", timeout_s=5)
    assert e.value.code == "container-gone"


async def test_images_resolve_and_missing(docker_runtime, test_image, spec_for) -> None:
    assert await docker_runtime.resolve_image("local/busybox:1") == test_image
    assert await docker_runtime.resolve_image(test_image) == test_image
    assert await docker_runtime.has_image(test_image)
    missing = "sha256:" + "0" * 64
    assert not await docker_runtime.has_image(missing)
    with pytest.raises(ImageError):
        await docker_runtime.resolve_image("local/no-such-image:1")
    with pytest.raises(ImageError):
        await docker_runtime.create(spec_for(missing))
    with pytest.raises(ImageError):
        await docker_runtime.create(spec_for("busybox"))


def _rewrite_tar(src: Path, dest: Path, edit) -> None:  # type: ignore[no-untyped-def]
    with tarfile.open(src) as tin, tarfile.open(dest, "w") as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read() if m.isfile() else None  # type: ignore[union-attr]
            data = edit(m.name, data)
            if data is not None:
                m.size = len(data)
            tout.addfile(m, io.BytesIO(data) if data is not None else None)


async def test_save_then_load_image_and_a_tampered_archive_refused(docker_runtime, engine, tmp_path: Path) -> None:
    # A throwaway image of its own (unique id), so the shared test image stays put.
    rootfs = io.BytesIO()
    with tarfile.open(fileobj=rootfs, mode="w") as tf:
        payload = uuid.uuid4().hex.encode()
        info = tarfile.TarInfo("hello.txt")
        info.size = len(payload)
        tf.addfile(info, io.BytesIO(payload))
    repo = f"local/yagna-test-load-{uuid.uuid4().hex[:8]}"
    engine.api.import_image_from_data(rootfs.getvalue(), repository=repo, tag="1")
    image_id = await docker_runtime.resolve_image(f"{repo}:1")
    try:
        archive = tmp_path / "image.tar"
        assert await docker_runtime.save_image(f"{repo}:1", str(archive)) == image_id
        engine.api.remove_image(image_id, force=True)
        assert not await docker_runtime.has_image(image_id)

        config_name = image_id.removeprefix("sha256:") + ".json"
        tampered = tmp_path / "tampered.tar"
        _rewrite_tar(archive, tampered,
                     lambda name, data: data.replace(b'"architecture"', b'"architecturE"') if name == config_name else data)
        with pytest.raises(ImageError, match="config digest"):
            await docker_runtime.load_image(str(tampered), image_id)
        swapped = tmp_path / "swapped.tar"
        _rewrite_tar(archive, swapped, lambda name, data: data + b"\0" * 512 if name.endswith("layer.tar") else data)
        with pytest.raises(ImageError, match="layer 0"):
            await docker_runtime.load_image(str(swapped), image_id)
        assert not await docker_runtime.has_image(image_id)  # nothing reached the engine

        await docker_runtime.load_image(str(archive), image_id)
        assert await docker_runtime.has_image(image_id)
        with pytest.raises(ImageError):
            await docker_runtime.load_image(str(archive), "sha256:" + "1" * 64)
    finally:
        try:
            engine.api.remove_image(image_id, force=True)
        except docker.errors.NotFound:
            pass


async def test_unreachable_engine_is_a_runtime_failure(test_image) -> None:
    rt = DockerRuntime(client_factory=lambda: docker.DockerClient(base_url="unix:///nonexistent/docker.sock"))
    with pytest.raises(RuntimeFailure) as e:
        await rt.leftovers("x")
    assert e.value.code == "engine-unavailable"
    with pytest.raises(RuntimeFailure) as e:
        await rt.has_image(test_image)
    assert e.value.code == "engine-unavailable"


async def test_stale_cgroup_cache_entry_dropped_by_two_threads_at_once(docker_runtime, make_container) -> None:
    """Regression: usage() from two worker threads both deleted the same stale cache entry (KeyError)."""
    cid = await make_container()
    await docker_runtime.usage(cid)  # caches (cid, init pid)
    stale = (cid, 999_999_999)  # an init that is gone, looked at first
    fresh = dict(docker_runtime.cgroups.dirs)
    docker_runtime.cgroups.dirs.clear()
    docker_runtime.cgroups.dirs.update({stale: {}, **fresh})
    real_read = docker_runtime.inner.cgroups.read

    def read_while_another_thread_drops_it(path: str, name: str):  # type: ignore[no-untyped-def]
        if path == f"/proc/{stale[1]}":
            docker_runtime.cgroups.dirs.pop(stale, None)  # what the other thread did meanwhile
        return real_read(path, name)

    docker_runtime.inner.cgroups.read = read_while_another_thread_drops_it
    usage = await docker_runtime.usage(cid)
    assert usage.duration_s >= 0


async def test_usage_of_a_running_container_needs_no_engine_call_after_the_first(
    docker_runtime, make_container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12: a debit note's usage reading comes from the cgroup files (the inspect cost ~3 ms)."""
    cid = await make_container()
    u0 = await docker_runtime.usage(cid)  # inspects once: the start time is kept
    api = docker_runtime.inner.engine.api()

    def no_inspect(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("inspect_container called for a running container already known")

    monkeypatch.setattr(api, "inspect_container", no_inspect)
    r = await sh(docker_runtime, cid, "timeout 1 sh -c 'while :; do :; done'; true")
    assert r.exit_code == 0
    u1 = await docker_runtime.usage(cid)
    assert u1.cpu_s > u0.cpu_s and u1.duration_s > u0.duration_s and u1.peak_memory_bytes > 0
    monkeypatch.undo()
    # stopped: the init is gone, the engine is asked again and the duration stops at FinishedAt
    docker_runtime.inner.engine.api().stop(cid, timeout=0)
    u2 = await docker_runtime.usage(cid)
    await trio.sleep(0.3)
    u3 = await docker_runtime.usage(cid)
    assert u2.duration_s == u3.duration_s >= u1.duration_s
