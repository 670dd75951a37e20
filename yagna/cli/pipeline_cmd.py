"""``yagna pipeline run [.yagna/pipeline.yml]``: a CI pipeline of the source tree, run on the network.

The file (``requestor_sdk.pipeline_file``) names an image, ordered steps, secrets, artifacts and an
optional matrix; the source tree (git's tracked and untracked-but-not-ignored files, or a folder
with its ``.gitignore``) is packed once (``requestor_sdk.workspace``); each matrix combination is a
job on its own provider (``requestor_sdk.pipeline``). Step output streams live with step headers,
durations and exit codes; artifacts land in ``.yagna/artifacts/<run id>/`` (or ``--out``). The exit
code is the pipeline's result: 0 when every job passed, else the failing step's exit code (1 for a
matrix or a job that could not run), so it can itself run inside another CI.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import click

from yagna.core.errors import YagnaError


@click.group()
def pipeline() -> None:
    """CI pipelines on the network: steps in one workspace, live logs, artifacts (docs/pipelines.md)."""


def _source_root(file: Path) -> Path:
    """The tree the pipeline builds: the folder holding ``.yagna/`` for the default layout, else the file's folder."""
    file = file.absolute()
    return file.parent.parent if file.parent.name == ".yagna" else file.parent


class _Printer:
    def __init__(self, *, to_stderr: bool, prefix: bool, quiet: bool) -> None:
        self.to_stderr, self.prefix, self.quiet = to_stderr, prefix, quiet
        self.started = time.monotonic()

    def __call__(self, label: str, kind: str, text: str) -> None:
        if self.quiet and kind in ("stdout", "stderr"):
            return
        lead = f"[{label}] " if self.prefix else ""
        if kind == "step":
            line = f"{lead}==> {text}"
        elif kind == "yagna":
            line = f"{lead}--- {text}"
        else:
            line = f"{lead}{text}"
        click.echo(line, err=self.to_stderr or kind == "stderr")


@pipeline.command("run")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False), default=Path(".yagna/pipeline.yml"),
                required=False)
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Where the artifacts go [default: .yagna/artifacts/<run id>/ in the source tree].")
@click.option("--budget", default=None, help="The most the run may cost, tokens (overrides the file's `budget`).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout (logs go to stderr).")
@click.option("--fund", is_flag=True, help="Test networks: fund the requestor up to the budget if it has less.")
@click.option("--quiet", is_flag=True, help="No step output, only the summary.")
@click.pass_obj
def pipeline_run(obj: Any, file: Path, out_dir: Path | None, budget: str | None, as_json: bool, fund: bool,
                 quiet: bool) -> None:
    """Run the pipeline FILE [.yagna/pipeline.yml] of this source tree; exit code = its result."""
    import tempfile

    import trio

    from requestor_sdk import locate
    from requestor_sdk.client import Api
    from requestor_sdk.pipeline import JobSpec, run_job
    from requestor_sdk.pipeline_file import PipelineError, load_pipeline
    from requestor_sdk.workspace import WorkspaceError, pack_workspace
    from yagna.cli.batch_cmd import _check_funds
    from yagna.core.money import format_amount, parse_amount

    try:
        spec = load_pipeline(file)
    except PipelineError as exc:
        raise click.ClickException(str(exc)) from None
    root = _source_root(file)
    missing = [name for name in spec.secrets if name not in os.environ]
    if missing:
        raise YagnaError(f"secret(s) {', '.join(missing)} named by {file} are not set in this environment")
    secret_values = {name: os.environ[name] for name in spec.secrets}
    total_text = budget if budget is not None else (str(spec.budget) if spec.budget is not None else "1")
    try:
        total = parse_amount(total_text)
    except Exception as exc:  # noqa: BLE001 - a bad --budget is the user's to fix
        raise click.BadParameter(f"{total_text!r}: {exc}", param_hint="--budget") from None
    jobs = spec.jobs()
    run_id = secrets.token_hex(6)
    out = (out_dir or root / ".yagna" / "artifacts" / run_id).absolute()
    location = locate(obj.data_dir)
    _check_funds(location, total, fund)
    per_job = max(1, total // max(1, len(jobs)))
    matrix = len(jobs) > 1 or bool(jobs[0].combo)
    printer = _Printer(to_stderr=as_json, prefix=matrix, quiet=quiet)
    with tempfile.TemporaryDirectory(prefix="yagna-workspace-") as tmp:
        try:
            ws = pack_workspace(root, Path(tmp))
        except WorkspaceError as exc:
            raise YagnaError(str(exc)) from None
        printer("pipeline", "yagna", f"workspace {root}: {ws.files} files, {ws.bytes} bytes ({ws.source}), "
                                     f"sha256 {ws.sha256[:16]}")
        results: list[Any] = [None] * len(jobs)

        async def main() -> None:
            api = Api(location, timeout=60.0)
            taken: set[str] = set()
            try:
                async with trio.open_nursery() as nursery:
                    for i, job in enumerate(jobs):
                        label = ",".join(f"{k}={v}" for k, v in job.combo.items()) or "pipeline"
                        job_spec = JobSpec(label=label, image=spec.image, steps=job.steps, env=dict(job.env),
                                           artifacts=list(spec.artifacts), combo=dict(job.combo),
                                           timeout_s=float(spec.timeout_s))
                        dest = out / _safe(label) if matrix else out

                        async def one(i: int = i, job_spec: JobSpec = job_spec, dest: Path = dest) -> None:
                            results[i] = await run_job(api, job_spec, ws.path, ws.sha256, dest,
                                                       secrets=secret_values, output=printer, budget_units=per_job,
                                                       taken=taken)

                        nursery.start_soon(one)
            finally:
                with trio.CancelScope(shield=True):
                    await api.aclose()

        trio.run(main)
    done = [r for r in results if r is not None]
    passed = bool(done) and len(done) == len(jobs) and all(r.status == "passed" for r in done)
    cost = sum(r.cost_units for r in done)
    if matrix:
        summary: dict[str, Any] = {"run_id": run_id, "status": "passed" if passed else "failed",
                                   "exit_code": 0 if passed else 1, "cost": format_amount(cost), "cost_units": cost,
                                   "runs": [r.view() for r in done], "artifacts_dir": str(out)}
        code = 0 if passed else 1
    else:
        summary = {**done[0].view(), "run_id": run_id, "artifacts_dir": str(out)}
        code = done[0].exit_code
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        for r in done:
            lead = f"[{','.join(f'{k}={v}' for k, v in r.combo.items())}] " if matrix else ""
            steps = ", ".join(f"{s.name} {s.status}" for s in r.steps)
            click.echo(f"{lead}{r.status}: {steps}; {len(r.artifacts)} artifact(s) in {out}; cost "
                       f"{format_amount(r.cost_units)} on {r.provider_id or '-'} in {r.seconds:.1f} s"
                       + (f"; {r.error}" if r.error else ""), err=True)
    sys.exit(code if 0 <= code < 256 else 1)


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "=,._-" else "_" for c in label)[:100] or "job"
