"""``yagna run IMAGE [OPTIONS] -- CMD ARGS...``: one command on the network, as if it ran here.

It is one task of the SDK's :class:`~requestor_sdk.Requestor` (the engine of ``yagna batch run``):
offers found, agreements signed, CMD run in a container of IMAGE on ``--redundancy`` distinct
providers whose results must agree (:mod:`requestor_sdk.verify`), files moved in and out, the
budget never exceeded, and at the end activities destroyed, agreements terminated, channels
settled and the cost read back. One provider's output is streamed live as it is produced; the
command's exit code becomes ours.

Exit codes (:func:`exit_code_for`): CMD's own (0-255) when it ran and its result was accepted;
124 when it was killed at ``--timeout`` (as ``timeout(1)``); 125 when yagna could not run it or
cannot vouch for its result: no node, no provider, results that disagree, the budget, funds (as
``docker run``); 130 after Ctrl-C; 2 for a usage error. The reason is always on stderr.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

import click

from yagna.core.errors import YagnaError

if TYPE_CHECKING:  # the SDK (trio, httpx) is imported by the command itself: `yagna --help` does not pay for it
    from requestor_sdk import Event, Task, TaskResult

EXIT_TIMEOUT = 124
"""The command was killed at ``--timeout`` on every provider that ran it."""
EXIT_YAGNA = 125
"""yagna could not run the command, or cannot vouch for its result (the message says why)."""
EXIT_INTERRUPTED = 130

IN_DIR, OUT_DIR = "/work/in", "/work/out"


# -- options --------------------------------------------------------------------------------------
def _name_under(remote: str, root: str, what: str) -> str:
    """A container path (absolute below ``root``, or relative to it) as a relative name without ``..``."""
    path = PurePosixPath(remote)
    if path.is_absolute():
        try:
            path = path.relative_to(root)
        except ValueError:
            raise click.BadParameter(f"{remote!r}: must be below {root}/ (or a name relative to it)",
                                     param_hint=what) from None
    parts = [p for p in path.parts if p not in ("", ".")]
    if not parts or ".." in parts:
        raise click.BadParameter(f"{remote!r}: must name a file below {root}/, without '..'", param_hint=what)
    return "/".join(parts)


def parse_upload(item: str) -> tuple[str, Path]:
    """``LOCAL[:REMOTE]`` -> (name below /work/in, local file); REMOTE defaults to LOCAL's file name."""
    local, remote = item, ""
    if ":" in item and not Path(item).exists():
        local, _, remote = item.rpartition(":")
    path = Path(local).expanduser()
    if not path.is_file():
        raise click.BadParameter(f"{local!r} is not a file", param_hint="--upload")
    return _name_under(remote or path.name, IN_DIR, "--upload"), path.resolve()


def parse_download(item: str) -> tuple[str, Path]:
    """``REMOTE[:LOCAL]`` -> (name below /work/out, local target); LOCAL defaults to ``./<file name>``, and a
    folder (existing, or ending in ``/``) receives the file under its name."""
    remote, _, local = item.partition(":")
    name = _name_under(remote, OUT_DIR, "--download")
    base = PurePosixPath(name).name
    if not local:
        return name, Path.cwd() / base
    target = Path(local).expanduser()
    if local.endswith("/") or target.is_dir():
        target = target / base
    return name, target.absolute()


def parse_env(items: tuple[str, ...]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r}: expected NAME=VALUE", param_hint="--env")
        env[name] = value
    return env


# -- what the user sees ---------------------------------------------------------------------------
class LiveOutput:
    """Streams one provider's stdout/stderr as it arrives (``--redundancy``: the first to produce output).

    Should that provider's attempt fail, the next provider to start producing output is streamed
    instead; :meth:`replay` then tells whether the accepted result is one that was not streamed."""

    def __init__(self, out: IO[str], err: IO[str], say: Callable[[str], None]) -> None:
        self.out, self.err, self.say = out, err, say
        self.provider: str | None = None
        self._seen: set[str] = set()

    def __call__(self, event: Event) -> None:
        from requestor_sdk import AttemptFinished, Output

        if isinstance(event, Output):
            fresh = event.provider_id not in self._seen
            self._seen.add(event.provider_id)
            if self.provider is None and fresh:
                self.provider = event.provider_id
            if event.provider_id == self.provider:
                stream = self.out if event.stream == "stdout" else self.err
                stream.write(event.data)
                stream.flush()
        elif isinstance(event, AttemptFinished) and event.provider_id == self.provider and \
                event.outcome not in ("success", "disagreement"):
            self.say(f"the run on {event.provider_id} failed ({event.outcome}: {event.detail}); "
                     "its output above does not count")
            self.provider = None

    def replay(self, result: TaskResult) -> None:
        """The accepted output, when what was streamed is not it (another provider's, or a loser's)."""
        if not result.providers or self.provider in result.providers:
            return
        self.say(f"the accepted result is that of {', '.join(result.providers)}"
                 + (f", not of {self.provider} streamed above" if self.provider else "") + "; its output:")
        for stream, text in ((self.out, result.stdout), (self.err, result.stderr)):
            stream.write(text)
            stream.flush()


def progress_line(event: Event) -> str | None:
    """A line about the market and the attempts, for stderr (``None``: nothing worth saying)."""
    from requestor_sdk import AttemptFinished, AttemptStarted, BudgetStopped, MarketNote, ProviderJoined, ProviderLeft

    if isinstance(event, ProviderJoined):
        return f"agreement with {event.provider_id} ({event.price_cpu_hour}/cpu-h, {event.price_hour}/h)"
    if isinstance(event, AttemptStarted):
        return f"running on {event.provider_id}"
    if isinstance(event, AttemptFinished):
        what = "result in" if event.outcome == "success" else event.outcome
        return f"{event.provider_id}: {what}" + (f" ({event.detail})" if event.detail else "")
    if isinstance(event, ProviderLeft) and event.reason.startswith("vanished"):
        return f"{event.provider_id} left: {event.reason}"
    if isinstance(event, (MarketNote, BudgetStopped)):
        return event.message
    return None


def exit_code_for(result: TaskResult | None) -> tuple[int, str | None]:
    """Our exit code and, unless the command's own, why."""
    if result is None:
        return EXIT_YAGNA, "the command did not run"
    if result.exit_code is not None and result.providers:
        return result.exit_code % 256, None
    last = result.attempts[-1] if result.attempts else None
    reason = result.reason or "no result"
    if last is not None and last.outcome == "timeout":
        return EXIT_TIMEOUT, reason
    return EXIT_YAGNA, reason


@dataclass
class Download:
    remote: str
    local: Path
    sha256: str
    size: int

    def view(self) -> dict[str, Any]:
        return {"remote": self.remote, "local": str(self.local), "sha256": self.sha256, "size": self.size}


def deliver(result: TaskResult, wanted: list[tuple[str, Path]]) -> list[Download]:
    """Copy the accepted outputs to where the user asked (before the SDK's work dir is removed)."""
    done = []
    for name, target in wanted:
        source = result.outputs.get(name)
        if source is None:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        digest = hashlib.sha256()
        with open(target, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        done.append(Download(f"{OUT_DIR}/{name}", target, digest.hexdigest(), target.stat().st_size))
    return done


# -- the command ----------------------------------------------------------------------------------
@click.command("run")
@click.argument("image")
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED, metavar="-- CMD [ARGS]...")
@click.option("--redundancy", type=click.IntRange(1, 9), default=1, show_default=True,
              help="Run on N distinct providers; their results (exit code, stdout, downloads) must agree.")
@click.option("--upload", "uploads", multiple=True, metavar="LOCAL[:REMOTE]",
              help="Copy a local file in before the command, to /work/in/<name> by default (repeatable).")
@click.option("--download", "downloads", multiple=True, metavar="REMOTE[:LOCAL]",
              help="Copy a file of /work/out/ back after a command that exited 0, to ./<name> by default "
                   "(repeatable).")
@click.option("--env", "envs", multiple=True, metavar="NAME=VALUE", help="Environment variable (repeatable).")
@click.option("--timeout", default="30m", show_default=True, metavar="DURATION",
              help="Kill the command after this long (e.g. 90, 90s, 2m, 1h): exit code 124.")
@click.option("--budget", default="1", show_default=True, metavar="TOKENS",
              help="The most the run may cost, all providers and attempts together.")
@click.option("--subnet", default="public", show_default=True, help="Subnet whose providers to use.")
@click.option("--retries", type=click.IntRange(0, 10), default=1, show_default=True,
              help="Failed attempts (a provider that failed, vanished or timed out) retried on another provider.")
@click.option("--no-fund", is_flag=True,
              help="Test networks: do not fund the requestor when its free balance is below the budget.")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON summary on stdout (the command's output then goes to stderr).")
@click.option("-q", "--quiet", is_flag=True, help="Only the command's output and errors, no progress lines.")
@click.pass_obj
def run(obj: Any, image: str, argv: tuple[str, ...], redundancy: int,
        uploads: tuple[str, ...], downloads: tuple[str, ...], envs: tuple[str, ...], timeout: str, budget: str,
        subnet: str, retries: int, no_fund: bool, as_json: bool, quiet: bool) -> None:
    """Run CMD in a container of IMAGE on the network; its output streams here, exit code = CMD's.

    \b
      yagna run local/busybox:1 -- echo hello
      yagna run local/busybox:1 --redundancy 2 --upload data.txt --download sum.txt -- \\
          sh -c 'md5sum /work/in/data.txt > /work/out/sum.txt'

    124: killed at --timeout; 125: yagna could not run it or vouch for its result (no provider, results
    that disagree, funds, budget); 130: Ctrl-C. The node: --data-dir (before or after `run`), else as every
    command finds it, else the devnet's requestor (`yagna devnet up`).
    """
    from requestor_sdk import Task, parse_tokens
    from requestor_sdk.jobfile import parse_duration

    argv = argv[1:] if argv[:1] == ("--",) else argv
    if not argv:
        raise click.UsageError("no command given: yagna run IMAGE [OPTIONS] -- CMD [ARGS]...")
    try:
        seconds = parse_duration(timeout)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--timeout") from None
    try:
        budget_units = parse_tokens(budget, "budget")
    except YagnaError as exc:
        raise click.BadParameter(str(exc), param_hint="--budget") from None
    inputs = dict(parse_upload(item) for item in uploads)
    if len(inputs) != len(uploads):
        raise click.BadParameter("two uploads go to the same file", param_hint="--upload")
    wanted = [parse_download(item) for item in downloads]
    if len({name for name, _ in wanted}) != len(wanted):
        raise click.BadParameter("a file is downloaded twice", param_hint="--download")
    try:
        task = Task("run", list(argv), inputs=inputs, outputs=[name for name, _ in wanted], env=parse_env(envs),
                    timeout=seconds)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    job = _Job(image=image, task=task, redundancy=redundancy, retries=retries, budget_units=budget_units,
               subnet=subnet, fund=not no_fund, wanted=wanted, quiet=quiet, as_json=as_json)
    code = job.run(obj.data_dir)
    sys.exit(code)


class _Job:
    """One ``yagna run``: what it needs, and what it learnt (for the summary)."""

    def __init__(self, *, image: str, task: Task, redundancy: int, retries: int, budget_units: int, subnet: str,
                 fund: bool, wanted: list[tuple[str, Path]], quiet: bool, as_json: bool) -> None:
        self.image, self.task, self.redundancy, self.retries = image, task, redundancy, retries
        self.budget_units, self.subnet, self.fund, self.wanted = budget_units, subnet, fund, wanted
        self.quiet, self.as_json = quiet, as_json
        self.result: TaskResult | None = None
        self.downloads: list[Download] = []
        self.funded = 0
        self.spent = 0
        self.interrupted = False
        self.error: str | None = None
        self.live = LiveOutput(sys.stderr if as_json else sys.stdout, sys.stderr, self.say)

    def say(self, text: str, *, always: bool = False) -> None:
        if always or not self.quiet:
            click.echo(f"yagna: {text}", err=True)

    def on_event(self, event: Event) -> None:
        self.live(event)
        line = progress_line(event)
        if line is not None:
            self.say(line)

    def run(self, data_dir: Path | None) -> int:
        import trio

        from requestor_sdk.local_node import find_node

        started = time.monotonic()
        try:
            location = find_node(data_dir)
            trio.run(self._main, location)
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a message and exit code 125
            err = _first(exc, YagnaError)
            if err is None and not isinstance(exc, KeyboardInterrupt) and _first(exc, KeyboardInterrupt) is None:
                raise
            if err is not None:
                self.error = str(err)
            else:
                self.interrupted = True
        seconds = time.monotonic() - started
        why: str | None
        if self.interrupted:
            code, why = EXIT_INTERRUPTED, "interrupted; agreements terminated and paid"
        elif self.error is not None:
            code, why = EXIT_YAGNA, self.error
        else:
            code, why = exit_code_for(self.result)
            if self.result is not None:
                self.live.replay(self.result)
                if self.wanted and self.result.providers and not self.result.ok:
                    self.say(f"nothing downloaded: the command exited {self.result.exit_code}", always=True)
        if why is not None:
            self.say(f"error: {why} (exit code {code})" if code != EXIT_INTERRUPTED else why, always=True)
        summary = self.summary(code, why, seconds)
        if self.as_json:
            click.echo(json.dumps(summary, indent=2))
        elif not self.quiet:
            self.say(self._summary_line(summary))
        return code

    async def _main(self, location: Any) -> None:
        import trio

        from requestor_sdk import Market, Requestor, tokens
        from requestor_sdk.client import Api
        from requestor_sdk.funding import ensure_funds

        if self.fund:
            api = Api(location)
            try:
                self.funded, free = await ensure_funds(api, self.budget_units)
            finally:
                await api.aclose()
            if self.funded:
                self.say(f"funded {tokens(self.funded)} test tokens (no value): the free balance ({tokens(free)}) "
                         f"was below the budget ({tokens(self.budget_units)}); opt out with --no-fund", always=True)
        lifetime = max(600, int(self.task.timeout) + 300)  # the agreement outlives the command and its transfers
        requestor = Requestor(image=self.image, budget=self.budget_units, max_providers=self.redundancy + 1,
                              market=Market(subnet=self.subnet, expiration_s=lifetime), location=location,
                              on_event=self.on_event, fund=False)
        async with trio.open_nursery() as outer:
            scope = trio.CancelScope()

            async def on_signal() -> None:
                with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for signum in signals:
                        self.interrupted = True
                        requestor.interrupt(f"interrupted ({signal.Signals(signum).name})")
                        self.say(f"{signal.Signals(signum).name}: stopping, terminating agreements ...", always=True)
                        scope.cancel()

            outer.start_soon(on_signal)
            try:
                with scope:
                    async with requestor:
                        results = await requestor.run([self.task], redundancy=self.redundancy, retries=self.retries)
                        self.result = results[0] if results else None
                        if self.result is not None and self.result.ok:  # before the work dir goes
                            self.downloads = await trio.to_thread.run_sync(deliver, self.result, self.wanted)
            finally:
                self.spent = requestor.spent
                outer.cancel_scope.cancel()

    def summary(self, code: int, why: str | None, seconds: float) -> dict[str, Any]:
        from requestor_sdk import tokens

        r = self.result
        status = ("interrupted" if self.interrupted else "error" if code == EXIT_YAGNA and why else
                  "timeout" if code == EXIT_TIMEOUT and why else "ok" if code == 0 else "failed")
        losers = sorted({a.provider_id for a in (r.attempts if r else []) if a.outcome == "disagreement"})
        return {
            "status": status, "exit_code": code, "command_exit_code": r.exit_code if r and r.providers else None,
            "error": why, "image": self.image, "command": list(self.task.argv),
            "provider_id": r.providers[0] if r and r.providers else None,
            "provider_ids": list(r.providers) if r else [], "redundancy": self.redundancy,
            "verification": r.verification if r else "", "disagreed": losers,
            "attempts": [{"provider_id": a.provider_id, "outcome": a.outcome, "exit_code": a.exit_code,
                          "seconds": round(a.seconds, 3), "error": a.error} for a in (r.attempts if r else [])],
            "stdout_sha256": r.stdout_sha256 if r else None,
            "downloads": [d.view() for d in self.downloads],
            "cost": tokens(self.spent), "cost_units": self.spent, "budget": tokens(self.budget_units),
            "funded": tokens(self.funded) if self.funded else None, "seconds": round(seconds, 3),
        }

    @staticmethod
    def _summary_line(s: dict[str, Any]) -> str:
        ids = s["provider_ids"]
        on = (f"on {', '.join(p[:16] + '...' for p in ids)}" + (f" ({len(ids)} agreed)" if len(ids) > 1 else "")
              if ids else "(no accepted result)")
        files = "".join(f"; {d['local']} sha256 {d['sha256'][:16]}" for d in s["downloads"])
        return (f"exit code {s['exit_code']} {on}; cost {s['cost']} of budget {s['budget']} in "
                f"{s['seconds']:.1f} s{files}")


def _first(exc: BaseException, kind: type[Any]) -> Any:
    """The first exception of ``kind`` in ``exc`` or the groups it holds."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _first(inner, kind)
            if found is not None:
                return found
    return None
