"""``yagna batch run JOB.toml``: a whole batch job in one command.

Reads the job file (``requestor_sdk.jobfile``), checks the requestor can pay,
runs every task through the SDK (a pool of providers, verification by
redundancy, a budget never exceeded), shows progress (a live table on a
terminal, plain lines otherwise), and writes ``DIR/manifest.json`` plus the
downloaded outputs under ``DIR/<task id>/``. Exit code 0 when every task is
ok, 1 otherwise; ``Ctrl-C`` stops at once, tears down (activities destroyed,
agreements terminated and paid) and still writes the manifest.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from yagna.core.errors import YagnaError
from yagna.core.money import format_amount as tokens
from yagna.core.money import parse_amount

# The SDK (trio, httpx) is imported by the command itself: `yagna --help` does not pay for it.


def parse_tokens(value: str) -> int:
    return parse_amount(value)


@click.group()
def batch() -> None:
    """Run batch jobs: many tasks, verified, within a budget."""


class _Progress:
    """Counts from the SDK's events; renders a rich table on a terminal, plain lines otherwise."""

    def __init__(self, total: int, budget: int, *, live: bool, quiet: bool) -> None:
        self.total, self.budget = total, budget
        self.ok = self.failed = 0
        self.running: dict[tuple[str, str], float] = {}
        self.providers: set[str] = set()
        self.committed = 0
        self.live_mode, self.quiet = live, quiet
        self.started = time.monotonic()
        self._live: Any = None

    def __enter__(self) -> _Progress:
        if self.live_mode:
            from rich.console import Console
            from rich.live import Live

            self._console = Console(stderr=True)
            self._live = Live(self.render(), console=self._console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self.render())
            self._live.__exit__(None, None, None)

    def render(self) -> Any:
        from rich.table import Table

        t = Table(title="yagna batch", show_header=False, expand=False)
        t.add_row("tasks", f"{self.ok + self.failed}/{self.total} done: [green]{self.ok} ok[/], "
                           f"[red]{self.failed} failed[/], {len(self.running)} running")
        t.add_row("providers", f"{len(self.providers)} in the pool")
        t.add_row("spend", f"at most {tokens(self.committed)} of {tokens(self.budget)} (committed)")
        t.add_row("time", f"{time.monotonic() - self.started:.1f} s")
        return t

    def line(self, text: str) -> None:
        if self._live is not None:
            self._console.print(text, markup=False, highlight=False)
        elif not self.quiet:
            click.echo(text, err=True)

    def __call__(self, event: Any) -> None:
        from requestor_sdk import (
            AttemptFinished, AttemptStarted, BudgetStopped, MarketNote, ProviderJoined, ProviderLeft, Spend,
            TaskFinished,
        )

        if isinstance(event, ProviderJoined):
            self.providers.add(event.provider_id)
            self.line(f"provider {event.provider_id} joined ({event.price_cpu_hour}/cpu-h, {event.price_hour}/h)")
        elif isinstance(event, ProviderLeft):
            self.providers.discard(event.provider_id)
            self.line(f"provider {event.provider_id} left: {event.reason}")
        elif isinstance(event, AttemptStarted):
            self.running[(event.task_id, event.provider_id)] = time.monotonic()
        elif isinstance(event, AttemptFinished):
            self.running.pop((event.task_id, event.provider_id), None)
            if event.outcome != "success":
                self.line(f"task {event.task_id} on {event.provider_id[:20]}: {event.outcome}: {event.detail}")
        elif isinstance(event, TaskFinished):
            r = event.result
            if r.ok:
                self.ok += 1
            else:
                self.failed += 1
            what = "ok" if r.ok else f"FAILED: {r.reason}"
            self.line(f"task {r.task.id} {what} ({self.ok + self.failed}/{self.total})")
        elif isinstance(event, Spend):
            self.committed = event.committed
        elif isinstance(event, (BudgetStopped, MarketNote)):
            self.line(event.message)
        if self._live is not None:
            self._live.update(self.render())


def _check_funds(location: Any, budget: int, fund: bool) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {location.app_key}"}
    try:
        status = httpx.get(f"{location.api_url}/api/v1/payment/status", headers=headers, timeout=10).json()
        free = int(status["balance"]["total_units"]) - int(status["balance"]["locked_units"]) - \
            int(status["balance"]["spent_units"])
        free = parse_tokens(str(status["balance"].get("free", tokens(max(free, 0)))))
    except (httpx.HTTPError, KeyError, ValueError, TypeError) as exc:
        raise YagnaError(f"cannot read the requestor's balance at {location.api_url}: {exc}") from None
    if free >= budget:
        return
    test = bool(status.get("test_network"))
    unit = parse_tokens("1")
    missing = tokens(max(unit, -(-(budget - free) // unit) * unit))  # whole tokens, at least 1
    if fund and test:
        resp = httpx.post(f"{location.api_url}/api/v1/payment/fund", headers=headers, json={"amount": missing},
                          timeout=10)
        if resp.status_code >= 400:
            raise YagnaError(f"funding failed: {resp.text}")
        click.echo(f"funded {missing} test tokens (no value) so the free balance covers the budget", err=True)
        return
    hint = (f"fund it: yagna payment fund --amount {missing}  (test tokens, no value), or pass --fund"
            if test else "add funds to this node's account")
    raise YagnaError(f"the requestor's free balance ({tokens(free)}) is below the job's budget "
                     f"({tokens(budget)}); {hint}")


def _unstarted(job: Any, done: set[str], reason: str) -> list[dict[str, Any]]:
    return [{"id": t.id, "params": dict(t.params), "status": "failed", "reason": reason, "exit_code": None,
             "stdout": "", "stderr": "", "stdout_sha256": None, "outputs": {}, "providers": [], "verification": "",
             "attempts": [], "cost": "0", "cost_units": 0} for t in job.tasks if t.id not in done]


@batch.command("run")
@click.argument("job_file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Results folder: manifest.json and <task id>/ outputs [default: <job name>-results next to it].")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout (progress goes to stderr).")
@click.option("--fund", is_flag=True, help="Test networks: fund the requestor up to the budget if it has less.")
@click.option("--quiet", is_flag=True, help="No progress lines.")
@click.pass_obj
def batch_run(obj: Any, job_file: Path, out_dir: Path | None, as_json: bool, fund: bool, quiet: bool) -> None:
    """Run every task of JOB_FILE (TOML); exit code 0 when all are ok."""
    import trio

    from requestor_sdk import Requestor, load_job, locate
    from requestor_sdk.manifest import build_manifest, write_manifest

    job = load_job(job_file)
    out = (out_dir or job_file.parent / f"{job_file.stem}-results").absolute()
    location = locate(obj.data_dir)
    budget = parse_tokens(job.budget)
    _check_funds(location, budget, fund)
    out.mkdir(parents=True, exist_ok=True)
    live = sys.stderr.isatty() and not quiet
    progress = _Progress(len(job.tasks), budget, live=live, quiet=quiet)
    holder: dict[str, Any] = {"interrupted": None, "error": None}
    started = time.monotonic()

    async def main() -> None:
        requestor = Requestor(image=job.image, budget=job.budget, max_providers=job.max_providers, market=job.market,
                              location=location, work_dir=out, on_event=progress)
        holder["requestor"] = requestor
        async with trio.open_nursery() as outer:
            scope = trio.CancelScope()

            async def on_signal() -> None:
                with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for signum in signals:
                        name = signal.Signals(signum).name
                        holder["interrupted"] = f"interrupted ({name}); finished tasks are kept"
                        requestor.interrupt(holder["interrupted"])
                        progress.line(f"{name}: stopping, terminating agreements ...")
                        scope.cancel()

            outer.start_soon(on_signal)
            try:
                with scope:
                    async with requestor:
                        await requestor.run(job.tasks, redundancy=job.redundancy, retries=job.retries)
            finally:
                outer.cancel_scope.cancel()

    with progress:
        try:
            trio.run(main)
        except BaseException as exc:  # noqa: BLE001 - the manifest is written whatever happened, then re-raised
            holder["error"] = exc
    requestor: Any = holder.get("requestor")
    results = requestor.results() if requestor is not None else []
    error = holder["error"]
    reason = holder["interrupted"] or (f"not run: {error}" if error is not None else "not run")
    pending = _unstarted(job, {r.task.id for r in results}, reason)
    stopped = holder["interrupted"] or (requestor.stopped if requestor is not None else None)
    if error is not None and stopped is None:
        stopped = f"error: {error}"
    status = "interrupted" if holder["interrupted"] else "error" if error is not None else (
        "ok" if results and all(r.ok for r in results) and not pending else "failed")
    manifest = build_manifest(results, job=job.describe(), spent_units=requestor.spent if requestor else 0,
                              budget_units=budget, wall_s=time.monotonic() - started, status=status,
                              stopped=stopped, out_dir=out, pending=pending)
    write_manifest(out / "manifest.json", manifest)
    totals = manifest["totals"]
    if as_json:
        click.echo(json.dumps({"status": status, "stopped": stopped, "tasks": totals["tasks"],
                               "succeeded": totals["succeeded"], "failed": totals["failed"], "cost": totals["cost"],
                               "budget": totals["budget"], "providers": len(totals["providers"]),
                               "provider_ids": totals["providers"], "wall_s": totals["wall_s"],
                               "manifest": str(out / "manifest.json")}, indent=2))
    elif not quiet:
        click.echo(f"{totals['succeeded']}/{totals['tasks']} tasks ok, {totals['failed']} failed; cost "
                   f"{totals['cost']} of budget {totals['budget']} on {len(totals['providers'])} provider(s) in "
                   f"{totals['wall_s']:.1f} s; manifest: {out / 'manifest.json'}", err=True)
        if stopped:
            click.echo(f"stopped: {stopped}", err=True)
    if error is not None and not isinstance(error, (KeyboardInterrupt, trio.Cancelled)):
        raise error
    if holder["interrupted"]:
        sys.exit(130)
    sys.exit(0 if status == "ok" else 1)
