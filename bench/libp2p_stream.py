"""Bulk throughput of one bare libp2p stream (Noise + Yamux, 2 OS processes) against raw TCP.

The driver (``python bench/libp2p_stream.py``) spawns one server process per
variant (the same script with ``serve``), which listens on a libp2p host built
like the daemon's (:func:`yagna.net.host.build_host`: Noise, Yamux, one
connection) and on a plain trio TCP socket. The driver is the client. It sends
``--mib`` MiB (default 256) from memory in ``--write-kib`` writes (default
1024) on one stream, half-closes it and waits for the server's reply: the byte
count and the CPU seconds the server spent receiving. Same bytes, same run,
interleaved:

* **raw TCP (trio)**: ``SocketStream.send_all`` / ``receive_some(256 KiB)``,
  no encryption, no muxer: the floor of the transport;
* **libp2p stock**: py-libp2p 0.8.1 as released;
* **libp2p patched**: with :mod:`yagna.net.fast_io` applied at host creation
  (as the daemon does), talking to a patched server.

Also: ``encrypt floor``, the CPU seconds of ChaCha20-Poly1305 alone over the
same bytes in 65,519-byte Noise messages (each side pays it once).

Printed per variant: MiB/s at the median, and CPU seconds per MiB of the
sender (this process, ``time.process_time``) and the receiver (the server's).

Run: ``python bench/libp2p_stream.py [--mib 256] [--runs 3] [--write-kib 1024]``
(~20 s); ``--smoke`` (4 MiB, one run) finishes in a few seconds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import PYTHON, Lines, Procs, machine, table  # noqa: E402

PROTO = "/yagna-bench/sink/1.0.0"
VARIANTS = ("stock", "patched")


def _apply(variant: str) -> None:
    """``build_host`` applies :mod:`yagna.net.fast_io`; the stock variant turns that off (this process only)."""
    from yagna.net import fast_io

    if variant == "patched":
        fast_io.apply()
    else:
        fast_io.apply = lambda: None


# -- server ---------------------------------------------------------------------------
async def _sink(read, write) -> None:  # type: ignore[no-untyped-def]
    """Count bytes until EOF; reply ``<bytes> <cpu seconds from the first byte>``."""
    n = 0
    c0 = None
    while True:
        data = await read()
        if not data:
            break
        if c0 is None:
            c0 = time.process_time()
        n += len(data)
    cpu = time.process_time() - (c0 if c0 is not None else time.process_time())
    await write(f"{n} {cpu:.6f}\n".encode())


async def serve(variant: str) -> None:
    import multiaddr
    from libp2p.custom_types import TProtocol
    from libp2p.network.stream.exceptions import StreamEOF

    from yagna.net.host import build_host, close_host

    _apply(variant)
    host = build_host(os.urandom(32))

    async def on_stream(stream) -> None:  # type: ignore[no-untyped-def]
        async def read() -> bytes:
            try:
                return bytes(await stream.read(1 << 20))
            except StreamEOF:
                return b""

        await _sink(read, stream.write)
        await stream.close()

    host.set_stream_handler(TProtocol(PROTO), on_stream)

    async def on_tcp(sock: trio.SocketStream) -> None:
        async with sock:
            await _sink(lambda: sock.receive_some(256 * 1024), sock.send_all)

    async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, on_tcp, 0, host="127.0.0.1"))
            tcp_port = listeners[0].socket.getsockname()[1]
            print(f"READY {host.get_transport_addrs()[0]} {host.get_id().to_base58()} {tcp_port}", flush=True)
            try:
                await trio.sleep_forever()
            finally:
                nursery.cancel_scope.cancel()
                await close_host(host)


# -- client ---------------------------------------------------------------------------
async def _send(write, close_write, read_reply, data: memoryview, write_size: int) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    c0, t0 = time.process_time(), time.perf_counter()
    for off in range(0, len(data), write_size):
        await write(bytes(data[off:off + write_size]))
    await close_write()
    reply = await read_reply()
    t1, c1 = time.perf_counter(), time.process_time()
    n, server_cpu = reply.split()
    if int(n) != len(data):
        raise SystemExit(f"server got {n} of {len(data)} bytes")
    return t1 - t0, c1 - c0, float(server_cpu)


async def client_libp2p(variant: str, addr: str, peer: str, data: memoryview, write_size: int,
                        runs: int) -> list[tuple[float, float, float]]:
    import multiaddr
    from libp2p.custom_types import TProtocol
    from libp2p.network.stream.exceptions import StreamEOF
    from libp2p.peer.id import ID
    from libp2p.peer.peerinfo import PeerInfo

    from yagna.net.host import build_host, close_host

    _apply(variant)
    host = build_host(os.urandom(32))
    out = []
    async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        try:
            await host.connect(PeerInfo(ID.from_base58(peer), [multiaddr.Multiaddr(addr)]))
            for _ in range(runs + 1):  # one warm-up
                stream = await host.new_stream(ID.from_base58(peer), [TProtocol(PROTO)])

                async def reply() -> bytes:
                    buf = b""
                    while not buf.endswith(b"\n"):
                        try:
                            buf += await stream.read(1024)
                        except StreamEOF:
                            break
                    return buf

                out.append(await _send(stream.write, stream.close, reply, data, write_size))
        finally:
            await close_host(host)
    return out[1:]


async def client_tcp(port: int, data: memoryview, write_size: int, runs: int) -> list[tuple[float, float, float]]:
    out = []
    for _ in range(runs + 1):
        sock = await trio.open_tcp_stream("127.0.0.1", port)
        async with sock:
            async def reply() -> bytes:
                buf = b""
                while not buf.endswith(b"\n"):
                    got = await sock.receive_some(1024)
                    if not got:
                        break
                    buf += got
                return buf

            out.append(await _send(sock.send_all, sock.send_eof, reply, data, write_size))
    return out[1:]


def encrypt_floor(data: memoryview) -> float:
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    aead = ChaCha20Poly1305(os.urandom(32))
    c0 = time.process_time()
    for i, off in enumerate(range(0, len(data), 65519)):
        aead.encrypt(i.to_bytes(12, "little"), data[off:off + 65519], None)
    return time.process_time() - c0


def run(args: argparse.Namespace) -> None:
    print(f"# libp2p_stream: {machine()}, load average {os.getloadavg()[0]:.2f}")
    mib, runs = args.mib, args.runs
    data = memoryview(os.urandom(mib * 2**20))
    write_size = args.write_kib * 1024
    procs = Procs()
    results: dict[str, list[tuple[float, float, float]]] = {}
    try:
        servers = {}
        for variant in VARIANTS:
            proc = procs.spawn([PYTHON, __file__, "serve", "--variant", variant],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            lines = Lines(proc)
            addr, peer, port = lines.wait_for("READY", 60).split()
            servers[variant] = (addr, peer, int(port))
        for _ in range(max(1, args.rounds)):
            results.setdefault("tcp", []).extend(trio.run(client_tcp, servers["stock"][2], data, write_size, runs))
            for variant in VARIANTS:
                addr, peer, _port = servers[variant]
                got = _in_child(variant, addr, peer, mib, write_size, runs, procs)
                results.setdefault(variant, []).extend(got)
        floor = encrypt_floor(data)
    finally:
        procs.close()

    def row(label: str, key: str) -> list[object]:
        vals = results.get(key, [])
        if not vals:
            return [label, 0, "-", "-", "-", "-"]
        secs = sorted(v[0] for v in vals)
        med = secs[len(secs) // 2]
        snd = sorted(v[1] for v in vals)[len(vals) // 2]
        rcv = sorted(v[2] for v in vals)[len(vals) // 2]
        return [label, len(vals), f"{mib / med:.0f}", f"{mib / secs[0]:.0f}", f"{snd / mib * 1000:.2f}",
                f"{rcv / mib * 1000:.2f}"]

    print(f"\n## {mib} MiB on one stream, {args.write_kib} KiB writes, {len(results.get('tcp', []))} runs each "
          "after a warm-up (interleaved)")
    print(table(["what", "n", "MiB/s p50", "MiB/s best", "sender CPU ms/MiB", "receiver CPU ms/MiB"], [
        row("raw TCP (trio), no encryption, no muxer", "tcp"),
        row("libp2p stock 0.8.1 (Noise + Yamux)", "stock"),
        row("libp2p patched (yagna.net.fast_io)", "patched"),
    ]))
    print(f"encrypt floor: ChaCha20-Poly1305 of {mib} MiB in 65,519-byte messages: "
          f"{floor / mib * 1000:.2f} CPU ms/MiB ({mib / max(floor, 1e-9):.0f} MiB/s)")
    print(f"load average now {os.getloadavg()[0]:.2f}")


def _in_child(variant: str, addr: str, peer: str, mib: int, write_size: int, runs: int,
              procs: Procs) -> list[tuple[float, float, float]]:
    """The libp2p client runs in a fresh process per variant (the patch is process-wide)."""
    proc = procs.spawn([PYTHON, __file__, "client", "--variant", variant, "--addr", addr, "--peer", peer,
                        "--mib", str(mib), "--write-kib", str(write_size // 1024), "--runs", str(runs)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=300)
    if proc.returncode:
        raise SystemExit(f"client {variant} failed:\n{err.decode()[-2000:]}")
    rows = []
    for line in out.decode().splitlines():
        if line.startswith("RESULT"):
            _, t, c, s = line.split()
            rows.append((float(t), float(c), float(s)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_argument("mode", nargs="?", default="drive", choices=["drive", "serve", "client"])
    del sub
    parser.add_argument("--variant", default="stock", choices=VARIANTS)
    parser.add_argument("--addr", default="")
    parser.add_argument("--peer", default="")
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3, help="measured sends per round (after one warm-up)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds of every variant")
    parser.add_argument("--write-kib", type=int, default=1024)
    parser.add_argument("--smoke", action="store_true", help="4 MiB, one run: checks that it runs")
    args = parser.parse_args()
    if args.smoke:
        args.mib, args.runs, args.rounds = min(args.mib, 4), 1, 1
    if args.mode == "serve":
        trio.run(serve, args.variant)
    elif args.mode == "client":
        data = memoryview(os.urandom(args.mib * 2**20))
        got = trio.run(client_libp2p, args.variant, args.addr, args.peer, data, args.write_kib * 1024, args.runs)
        for t, c, s in got:
            print(f"RESULT {t:.6f} {c:.6f} {s:.6f}", flush=True)
    else:
        run(args)


if __name__ == "__main__":
    main()
