"""File transfer throughput of the exe-unit over our libp2p path, against raw loopback TCP and docker cp.

A provider daemon gets a preset ``xfer`` (1 thread, 2 GiB memory, 2 GiB disk:
``/work`` is a tmpfs counted against the container's memory, so the preset
must hold the files); a requestor daemon bootstrapped to it signs one
agreement on it and deploys and starts one activity. A ``--mib`` MiB file
(default 64) of random bytes is then moved, ``--runs`` times each (default 3,
after one warm-up), from the client's point of view through the requestor's
REST API:

* **transfer_in**: ``POST .../exec [transfer_in {from: <local file>, to:
  /work/in/data.bin}]`` -> wait until done. This is: the requestor hashes the
  file (sha256) and offers it as a blob; the provider opens one stream
  (``/yagna/blob/2.0.0``) and streams what arrives, hashed on a worker thread,
  straight into the container (``put_archive``), whose last byte waits for the
  hash check.
* **transfer_out**: ``POST .../exec [transfer_out {from: /work/out/data.bin,
  to: <local file>}]`` -> wait until done. The provider copies the file out of
  the container (``get_archive``) into a staging file, hashing it as it goes;
  the requestor fetches it on one stream, hashes and writes it on a worker
  thread, and renames it into place before the batch is reported done. The
  copy is checked (sha256).

Baselines, interleaved with it in the same run, same bytes:

* raw loopback TCP: one connection, ``sendall`` of the bytes from memory to a
  receiver thread that reads them into memory (no hashing, no files);
* ``docker cp`` in and out of the same container (the CLI);
* :meth:`DockerRuntime.put_file` / :meth:`get_file` in-process on the same
  container (the last / first step of ours, without the network);
* ``hashlib.sha256`` over the bytes (each direction of ours hashes the file
  twice, once per side).

Also printed: CPU milliseconds per MiB of each daemon in each direction
(``/proc/<pid>/stat``), beside the CPU per MiB of the raw TCP baseline (both
ends, this process) and of sha256.

Run: ``python bench/exeunit_transfer.py [--mib 64] [--runs 3]``. Takes ~40 s.
``--smoke``: 1 MiB, one run each way after the warm-up (a few seconds; checks that it
runs and prints its figures). ``--profile DIR``: py-spy profiles of both daemons
during the first measured transfer each way (``pip install py-spy``; measuring only).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _daemon import cpu_seconds, report_logs  # noqa: E402
from _util import Procs, machine, table, time_budget  # noqa: E402
from exeunit_activity import (  # noqa: E402
    LABEL_BENCH, LABEL_NODE, ExePair, cleanup_docker, deploy_script, docker_cli, ensure_image, run_tag,
)

XFER_PRESET = {"name": "xfer", "threads": 1, "mem_gib": 2.0, "storage_gib": 2.0}


def raw_tcp(data: bytes) -> float:
    """Seconds to move ``data`` over one loopback TCP connection (connect until the receiver has it all)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    got = [0]
    done = threading.Event()

    def receive() -> None:
        conn, _ = server.accept()
        buf = bytearray(len(data))
        view = memoryview(buf)
        n = 0
        while n < len(data):
            k = conn.recv_into(view[n:], min(len(data) - n, 1 << 20))
            if k == 0:
                break
            n += k
        got[0] = n
        conn.close()
        done.set()

    th = threading.Thread(target=receive, daemon=True)
    th.start()
    t0 = time.perf_counter()
    client = socket.create_connection(server.getsockname())
    client.sendall(data)
    done.wait(60)
    took = time.perf_counter() - t0
    client.close()
    server.close()
    th.join(5)
    if got[0] != len(data):
        raise SystemExit(f"raw TCP: received {got[0]} of {len(data)} bytes")
    return took


def runtime_files(client: Any, container_id: str, src: Path, dest: Path, size: int) -> tuple[float, float]:
    """DockerRuntime.put_file then get_file on the container; seconds each."""
    import trio

    from exeunit.docker_runtime import DockerRuntime

    async def main() -> tuple[float, float]:
        rt = DockerRuntime(lambda: client)
        t0 = time.perf_counter()
        await rt.put_file(container_id, "/work/in/rt.bin", str(src))
        t1 = time.perf_counter()
        n = await rt.get_file(container_id, "/work/out/data.bin", str(dest), max_bytes=size + 1)
        t2 = time.perf_counter()
        if n != size:
            raise SystemExit(f"DockerRuntime.get_file: {n} of {size} bytes")
        return t1 - t0, t2 - t1

    return trio.run(main)


class Spy:
    """``py-spy record`` (raw collapsed stacks) on each daemon around one transfer (``--profile DIR``; measuring only)."""

    def __init__(self, outdir: str | None, pids: dict[str, int]) -> None:
        self.outdir = Path(outdir) if outdir else None
        self.pids = pids
        self.procs: list[Any] = []

    def start(self, label: str) -> None:
        import subprocess

        if self.outdir is None:
            return
        self.outdir.mkdir(parents=True, exist_ok=True)
        spy = str(Path(sys.executable).with_name("py-spy"))
        for name, pid in self.pids.items():
            self.procs.append(subprocess.Popen(
                [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "1000",
                 "--threads", "-o", str(self.outdir / f"{label}-{name}.txt")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(1.0)  # attached

    def stop(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGINT)
        for p in self.procs:
            p.wait(10)
        self.procs = []


def sha_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def run(args: argparse.Namespace) -> None:
    import docker

    print(f"# exeunit_transfer: {machine()}, load average {os.getloadavg()[0]:.2f}")
    ensure_image()
    procs = Procs()
    tmpdir = tempfile.TemporaryDirectory(prefix="yagna-bench-exexfer-")
    tmp = Path(tmpdir.name)
    tag = run_tag()
    time_budget(args.budget)
    size = args.mib * 2**20
    data = os.urandom(size)
    src = tmp / "data.bin"
    src.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    pair = ExePair(procs, tmp, max_threads=1, max_mem_gib=2.0, max_storage_gib=3.0, preset=XFER_PRESET)
    times: dict[str, list[float]] = {}
    cpu_in: dict[str, float] = {"provider": 0.0, "requestor": 0.0}
    cpu_out: dict[str, float] = {"provider": 0.0, "requestor": 0.0}
    cpu_ref: dict[str, float] = {"tcp": 0.0, "sha": 0.0}
    client = docker.from_env()
    failure = ""

    def note(key: str, seconds: float) -> None:
        times.setdefault(key, []).append(seconds)

    try:
        pair.start()
        assert pair.req is not None
        pair.req.post("/payment/fund", {"amount": "10"})  # a test network: the activity locks a deposit
        agreement_id = pair.agreement()
        act = pair.create(agreement_id)
        pair.run(act, deploy_script())
        container = pair.container_of(act)
        assert pair.prov is not None and pair.req is not None
        spy = Spy(args.profile, {d.name: d.proc.pid for d in (pair.prov, pair.req) if d.proc})

        def cpu_now() -> dict[str, float]:
            return {d.name: cpu_seconds(d.proc.pid) for d in (pair.prov, pair.req) if d.proc}

        for i in range(1 + args.runs):
            keep = i > 0
            dest = tmp / f"out-{i}.bin"
            if i == 1:
                spy.start("in")
            c0 = cpu_now()
            t0 = time.perf_counter()
            try:
                pair.run(act, [{"transfer_in": {"from": str(src), "to": "/work/in/data.bin"}}], timeout=120)
            except SystemExit as exc:
                failure = f"transfer_in of {args.mib} MiB failed: {exc}"
                raise
            t1 = time.perf_counter()
            c1 = cpu_now()
            if i == 1:
                spy.stop()
            if i == 0:
                pair.run(act, [{"run": {"argv": ["cp", "/work/in/data.bin", "/work/out/data.bin"]}}])
            if i == 1:
                spy.start("out")
            c2 = cpu_now()
            t2 = time.perf_counter()
            pair.run(act, [{"transfer_out": {"from": "/work/out/data.bin", "to": str(dest)}}], timeout=120)
            t3 = time.perf_counter()
            c3 = cpu_now()
            if i == 1:
                spy.stop()
            if sha_of(dest) != digest:
                raise SystemExit("transfer_out: the copy differs from the original")
            dest.unlink()
            if keep:
                note("in", t1 - t0)
                note("out", t3 - t2)
                for k in cpu_in:
                    cpu_in[k] += c1[k] - c0[k]
                    cpu_out[k] += c3[k] - c2[k]

            p0 = time.process_time()
            took = raw_tcp(data)
            if keep:
                note("tcp", took)
                cpu_ref["tcp"] += time.process_time() - p0
            t0 = time.perf_counter()
            docker_cli("cp", str(src), f"{container}:/work/in/cp.bin")
            t1 = time.perf_counter()
            docker_cli("cp", f"{container}:/work/out/data.bin", str(dest))
            t2 = time.perf_counter()
            dest.unlink()
            if keep:
                note("cp_in", t1 - t0)
                note("cp_out", t2 - t1)
            put_s, get_s = runtime_files(client, container, src, dest, size)
            dest.unlink()
            if keep:
                note("rt_put", put_s)
                note("rt_get", get_s)
                p0 = time.process_time()
                t0 = time.perf_counter()
                hashlib.sha256(data).hexdigest()
                note("sha", time.perf_counter() - t0)
                cpu_ref["sha"] += time.process_time() - p0
        pair.destroy(act)
    finally:
        signal.alarm(0)
        client.close()
        pair.close()
        procs.close()
        n = cleanup_docker(f"{LABEL_BENCH}={tag}", *([f"{LABEL_NODE}={pair.node_id}"] if pair.prov else []))
        report_logs(tmp)
        tmpdir.cleanup()
        if failure:
            print(failure, file=sys.stderr)
    if n:
        print(f"(removed {n} containers/volumes left behind)")

    mib = args.mib
    print(f"\n## {mib} MiB of random bytes, {args.runs} runs each after 1 warm-up (interleaved); "
          f"time in ms, throughput in MiB/s")

    def row(label: str, key: str) -> list[object]:
        vals = sorted(times.get(key, []))
        if not vals:
            return [label, 0, "-", "-", "-"]
        med = vals[len(vals) // 2] if len(vals) % 2 else (vals[len(vals) // 2 - 1] + vals[len(vals) // 2]) / 2
        return [label, len(vals), f"{med * 1000:.0f}", f"{mib / med:.1f}", f"{mib / vals[0]:.1f}"]

    print(table(["what", "n", "p50 ms", "MiB/s at p50", "MiB/s best"], [
        row("ours: transfer_in (REST -> batch done; hash, one stream into put_archive)", "in"),
        row("ours: transfer_out (REST -> batch done; get_archive + hash, one stream)", "out"),
        row("baseline: raw loopback TCP, one connection, memory to memory", "tcp"),
        row("baseline: docker cp into the container (CLI)", "cp_in"),
        row("baseline: docker cp out of the container (CLI)", "cp_out"),
        row("baseline: DockerRuntime.put_file in-process (ours without the network)", "rt_put"),
        row("baseline: DockerRuntime.get_file in-process", "rt_get"),
        row("reference: hashlib.sha256 of the bytes (each direction of ours hashes twice)", "sha"),
    ]))
    n_runs = max(1, len(times.get("in", [])))
    moved = n_runs * mib

    def per_mib(seconds: float) -> str:
        return f"{seconds / moved * 1000:.1f}"

    print(f"\nCPU ms per MiB moved ({n_runs} runs): transfer_in: provider {per_mib(cpu_in['provider'])}, "
          f"requestor {per_mib(cpu_in['requestor'])}; transfer_out: provider {per_mib(cpu_out['provider'])}, "
          f"requestor {per_mib(cpu_out['requestor'])}; baselines: raw TCP both ends {per_mib(cpu_ref['tcp'])}, "
          f"sha256 {per_mib(cpu_ref['sha'])}")
    print(f"daemon CPU per transfer_in + transfer_out pair: "
          f"provider {(cpu_in['provider'] + cpu_out['provider']) / n_runs:.2f} s, "
          f"requestor {(cpu_in['requestor'] + cpu_out['requestor']) / n_runs:.2f} s")
    print(f"load average now {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=64, help="file size in MiB")
    parser.add_argument("--runs", type=int, default=3, help="measured transfers each way (after one warm-up)")
    parser.add_argument("--profile", metavar="DIR", help="record py-spy profiles of both daemons (first measured run)")
    parser.add_argument("--budget", type=int, default=170, help="abort (stopping every child) after this many seconds")
    parser.add_argument("--smoke", action="store_true", help="1 MiB, one run each way: checks that it runs")
    args = parser.parse_args()
    if args.smoke:
        args.mib, args.runs = 1, 1
    run(args)


if __name__ == "__main__":
    main()
