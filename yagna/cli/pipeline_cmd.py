"""``yagna pipeline run [.yagna/pipeline.yml]``: a CI pipeline of the source tree, run on the network.

The file (``requestor_sdk.pipeline_file``) names an image, ordered steps, secrets, artifacts and an
optional matrix; the source tree (git's tracked and untracked-but-not-ignored files, or a folder
with its ``.gitignore``) is packed once (``requestor_sdk.workspace``); each matrix combination is a
job on its own provider (``requestor_sdk.pipeline``). Step output streams live with step headers,
durations and exit codes; artifacts land in ``.yagna/artifacts/<run id>/`` (or ``--out``). Caches
are keyed by the repository (``requestor_sdk.pipeline_cache``) and restored/saved by the job.
``--verify`` runs each job on a second provider too and compares step results and artifact hashes.
The exit code is the pipeline's result: 0 when every job passed (and, with ``--verify``, both
providers agreed), else the failing step's exit code (1 for a matrix, a job that could not run or a
disagreement), so it can itself run inside another CI.
"""

from __future__ import annotations

import dataclasses
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
@click.option("--verify", is_flag=True,
              help="Run each job on two providers at once and compare their steps' results and artifacts' sha256; "
                   "a difference fails the run (the second provider's artifacts go in <out>/verify/).")
@click.option("--no-cache", "no_cache", is_flag=True, help="Neither restore nor save the file's caches.")
@click.pass_obj
def pipeline_run(obj: Any, file: Path, out_dir: Path | None, budget: str | None, as_json: bool, fund: bool,
                 quiet: bool, verify: bool, no_cache: bool) -> None:
    """Run the pipeline FILE [.yagna/pipeline.yml] of this source tree; exit code = its result."""
    import tempfile

    import trio

    from requestor_sdk import locate
    from requestor_sdk.client import Api
    from requestor_sdk.pipeline import JobSpec, compare_runs, run_job
    from requestor_sdk.pipeline_cache import LocalCaches, repository_id
    from requestor_sdk.pipeline_file import PipelineError, cache_key_value, load_pipeline
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
    per_job = max(1, total // max(1, len(jobs) * (2 if verify else 1)))
    matrix = len(jobs) > 1 or bool(jobs[0].combo)
    printer = _Printer(to_stderr=as_json, prefix=matrix or verify, quiet=quiet)
    local_caches = None
    if spec.caches and not no_cache:
        local_caches = LocalCaches(_caches_root(location), repository_id(root))
    try:
        job_caches = [[(cache_key_value(c.key, lambda path: (root / path).read_bytes(),
                                        expand=lambda pattern: _expand(root, pattern)), tuple(c.paths))
                       for c in job.caches] if local_caches is not None else [] for job in jobs]
    except OSError as exc:
        raise YagnaError(f"cannot compute a cache key: {exc}") from None
    with tempfile.TemporaryDirectory(prefix="yagna-workspace-") as tmp:
        try:
            ws = pack_workspace(root, Path(tmp))
        except WorkspaceError as exc:
            raise YagnaError(str(exc)) from None
        printer("pipeline", "yagna", f"workspace {root}: {ws.files} files, {ws.bytes} bytes ({ws.source}), "
                                     f"sha256 {ws.sha256[:16]}")
        results: list[Any] = [None] * len(jobs)
        checks: list[Any] = [None] * len(jobs)

        async def main() -> None:
            api = Api(location, timeout=60.0)
            taken: set[str] = set()
            lease_lock = trio.Lock()  # one lease at a time: each job sees the providers others took
            try:
                async with trio.open_nursery() as nursery:
                    for i, job in enumerate(jobs):
                        label = ",".join(f"{k}={v}" for k, v in job.combo.items()) or "pipeline"
                        job_spec = JobSpec(label=label, image=spec.image, steps=job.steps, env=dict(job.env),
                                           artifacts=list(spec.artifacts), combo=dict(job.combo),
                                           timeout_s=float(spec.timeout_s), caches=job_caches[i])
                        dest = out / _safe(label) if matrix else out

                        async def one(i: int = i, job_spec: JobSpec = job_spec, dest: Path = dest,
                                      into: list[Any] = results) -> None:
                            into[i] = await run_job(api, job_spec, ws.path, ws.sha256, dest,
                                                    secrets=secret_values, output=printer, budget_units=per_job,
                                                    taken=taken, lease_lock=lease_lock, local_caches=local_caches)

                        nursery.start_soon(one)
                        if verify:
                            check_spec = dataclasses.replace(job_spec, label=f"{label} (verify)")
                            nursery.start_soon(one, i, check_spec, dest / "verify", checks)
            finally:
                with trio.CancelScope(shield=True):
                    await api.aclose()

        trio.run(main)
    done = [r for r in results if r is not None]
    if verify:
        for r, check in zip(results, checks):
            if r is not None:
                compare_runs(r, check)
    passed = bool(done) and len(done) == len(jobs) and all(r.status == "passed" for r in done)
    cost = sum(r.cost_units for r in done) + sum(c.cost_units for c in checks if c is not None)
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
            if r.verify is not None:
                v = r.verify
                click.echo(f"{lead}verify on {v['provider_id'] or '-'}: "
                           + ("the same steps' results and artifacts" if v["match"] else
                              "DIFFERENT: " + "; ".join(v["differences"])), err=True)
    sys.exit(code if 0 <= code < 256 else 1)


def _caches_root(location: Any) -> Path:
    """Where this requestor keeps its caches' index and copies: beside its node, else in the user's cache dir."""
    if location.data_dir is not None:
        return Path(location.data_dir) / "pipeline-caches"
    import hashlib

    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    name = location.node_id or hashlib.sha256(location.api_url.encode()).hexdigest()[:16]
    return base / "yagna" / "pipeline-caches" / name


def _expand(root: Path, pattern: str) -> list[str]:
    """``hashFiles`` globs over the source tree (``**`` spans folders); ``.git`` is never hashed."""
    out = []
    for path in root.glob(pattern):
        rel = path.relative_to(root)
        if rel.parts and rel.parts[0] == ".git" or not path.is_file():
            continue
        out.append(rel.as_posix())
    return out


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "=,._-" else "_" for c in label)[:100] or "job"
