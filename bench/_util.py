"""Small helpers shared by the benchmarks in this folder (stdlib only).

* :class:`Procs` starts child processes and, in ``close()`` (call it from a
  ``finally``), ends every one of them by PID: SIGTERM, then SIGKILL after a
  grace period.
* :class:`Lines` reads a child's stdout on a thread so the driver can wait for
  a line with a timeout.
* :func:`summary` / :func:`pct` / :func:`table` format the figures.

Percentiles are nearest-rank: p99 of 500 samples is the 495th smallest.
"""

from __future__ import annotations

import math
import os
import queue
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

PYTHON = sys.executable
REPO = Path(__file__).resolve().parent.parent


# -- child processes ---------------------------------------------------------------
class Procs:
    """Every process a benchmark starts; ``close()`` ends them all by PID."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, args: Sequence[str], **kw: object) -> subprocess.Popen[bytes]:
        kw.setdefault("cwd", str(REPO))
        proc = subprocess.Popen(list(args), **kw)  # type: ignore[call-overload]
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 3.0) -> None:
        """SIGTERM ``proc`` by PID, SIGKILL it after ``grace`` seconds."""
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                try:
                    os.kill(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=5)
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass

    def close(self) -> None:
        # SIGTERM everybody first so they shut down in parallel, then reap.
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in self.procs:
            self.stop(proc)
        self.procs.clear()


class Lines:
    """A child's stdout, line by line, readable with a timeout."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self._q: queue.Queue[str | None] = queue.Queue()
        self._stream = proc.stdout
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        try:
            for raw in self._stream:
                self._q.put(raw.decode(errors="replace").rstrip("\n"))
        except (OSError, ValueError):
            pass
        self._q.put(None)

    def wait_for(self, prefix: str, timeout: float) -> str:
        """The rest of the first line starting with ``prefix`` (others are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no line starting with {prefix!r} within {timeout}s")
            try:
                line = self._q.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise EOFError(f"process ended before printing {prefix!r}")
            if line.startswith(prefix):
                return line[len(prefix):].strip()


def time_budget(seconds: int) -> None:
    """Raise TimeoutError in the main thread after ``seconds`` (a safety net:
    the caller's ``finally`` then stops every child). Sync drivers only."""

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"benchmark over its {seconds} s time budget")

    signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)


def rss_mib(pid: int) -> float:
    """Resident set size of a live process (VmRSS from /proc), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no output)"


# -- figures ------------------------------------------------------------------------
def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"n": 0, "median": math.nan, "p99": math.nan, "min": math.nan, "max": math.nan}
    return {
        "n": len(values),
        "median": statistics.median(values),
        "p99": pct(values, 99),
        "min": min(values),
        "max": max(values),
    }


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table (readable on a terminal as well)."""
    cells = [[str(h) for h in headers]] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"

    out = [line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


def _cell(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.2f}"
    return str(value)


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages, for a bench's header."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> str:
    import platform

    return (
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {platform.system()} {platform.release()}"
    )


# -- smoke mode (CI) -------------------------------------------------------------------
SMOKE_HELP = "smoke run: tiny sizes, one round, a few seconds; still prints every figure (CI runs each bench so)"


def apply_smoke(args: object, **small: object) -> None:
    """With ``--smoke`` on the command line, replace the size arguments by ``small`` ones."""
    if getattr(args, "smoke", False):
        for name, value in small.items():
            setattr(args, name, value)
