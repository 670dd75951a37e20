"""Delay in user space, for kernels without netem: ``python -m yagna.netlab.delay NS QUEUE MS``.

Started by the testbed inside namespace ``NS`` (named on the command line so that the testbed
can tell its own process from any other), whose iptables send the WAN link's outgoing packets
to NFQUEUE ``QUEUE`` with ``--queue-bypass`` (no process bound: packets pass undelayed, never
dropped). It holds every packet ``MS`` milliseconds and then accepts it, in arrival order, by
one batch verdict for all that are due; the kernel copies only metadata, never payload. Prints
``bound`` once it holds the queue; ends on SIGTERM (releasing what it holds).
"""

from __future__ import annotations

import collections
import os
import select
import signal
import socket
import sys
import time

from yagna.netlab import nfqueue

MAX_HELD = 65536
"""Packets held at most; beyond, the kernel accepts packets without delay (fail open, never drop)."""


def _open(queue: int) -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, nfqueue.NETLINK_NETFILTER)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sock.setsockopt(nfqueue.SOL_NETLINK, nfqueue.NETLINK_NO_ENOBUFS, 1)
        sock.bind((0, 0))
        sock.settimeout(5.0)
        for msg in nfqueue.bind(queue, MAX_HELD):
            sock.send(msg)
            answers = list(nfqueue.parse(sock.recv(65536)))
            errors = [value for kind, value in answers if kind == "error" and value]
            if errors or not answers:
                raise OSError(errors[0] if errors else 0, f"binding NFQUEUE {queue} failed")
    except BaseException:
        sock.close()
        raise
    return sock


def can_bind(queue: int = 0) -> bool:
    """An NFQUEUE can be bound here (in this thread's network namespace)."""
    try:
        _open(queue).close()
    except OSError:
        return False
    return True


def run(queue: int, delay_s: float) -> None:
    sock = _open(queue)
    sock.setblocking(False)
    print("bound", flush=True)
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nobody reads it any more
    held: collections.deque[tuple[float, int]] = collections.deque()
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    buf = bytearray(1 << 20)
    while not stop:
        timeout = max(0.0, held[0][0] - time.monotonic()) if held else 1.0
        try:
            ready, _, _ = select.select([sock], [], [], timeout)
        except InterruptedError:
            continue
        if ready:
            now = time.monotonic()
            while True:
                try:
                    n = sock.recv_into(buf)
                except BlockingIOError:
                    break
                for kind, value in nfqueue.parse(bytes(buf[:n])):
                    if kind == "packet":
                        held.append((now + delay_s, value))
        now = time.monotonic()
        last = None
        while held and held[0][0] <= now:
            last = held.popleft()[1]
        if last is not None:
            sock.send(nfqueue.accept_up_to(queue, last))
    if held:
        sock.send(nfqueue.accept_up_to(queue, held[-1][1]))
    sock.close()


def main() -> None:
    if len(sys.argv) != 4:
        raise SystemExit("usage: python -m yagna.netlab.delay NAMESPACE QUEUE MS")
    try:
        run(int(sys.argv[2]), float(sys.argv[3]) / 1000)
    except OSError as exc:
        raise SystemExit(f"user-space delay in {sys.argv[1]}: {exc}") from None


if __name__ == "__main__":
    main()
