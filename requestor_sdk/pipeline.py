"""Running a CI pipeline on the network (``yagna pipeline run``): one job per matrix combination.

A job leases one provider (the market's best offer within the budget), deploys the pipeline's
image, uploads the packed workspace once (``transfer_in``, checked by sha256) and unpacks it in
``/work/ws``, then runs each step as its own ``run`` command in that one container (so state carries
from step to step), streaming the output live with the secrets masked; a failing step stops the job
unless it may fail (``continue_on_error``). Caches (``cache: {key, paths}``) are restored before the
first step, from the provider itself when it holds them (``cache_restore``; the lease prefers the
provider that saved them) or uploaded from the requestor's own copy, and saved after a job that
passed (``cache_save`` on the provider, and a copy kept locally: ``requestor_sdk.pipeline_cache``).
At the end the artifacts are packed in the container,
brought back by hash and unpacked under the output folder; the activity is destroyed and the
agreement terminated (the provider invoices, the channel settles). Jobs of a matrix run at once, on
different providers.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets as _secrets
import tarfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from requestor_sdk.client import Api
from requestor_sdk.errors import ApiError, SdkError
from requestor_sdk.pipeline_cache import LocalCaches

log = logging.getLogger("requestor_sdk.pipeline")

WORKSPACE_DIR = "/work/ws"
ARTIFACTS_TAR = "/work/out/artifacts.tar"
CACHE_IN = "/work/in/cache-{}.tar"
CACHE_OUT = "/work/out/cache-{}.tar"
MASK = "***"


class PipelineRunError(SdkError):
    """The job could not run (no provider, the upload failed, ...): not a step's failure."""


@dataclass
class StepResult:
    name: str
    status: str = "skipped"
    """``passed``, ``failed``, ``failed (allowed)``, ``timed-out``, ``skipped``."""
    exit_code: int | None = None
    seconds: float = 0.0

    def view(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "exit_code": self.exit_code, "seconds": round(self.seconds, 3)}


@dataclass
class CacheResult:
    key: str
    """The key's value (``deps-<hash>``), without the repository."""
    paths: Sequence[str]
    status: str = "miss"
    """``hit`` (the provider had it), ``uploaded`` (from the requestor's copy) or ``miss``."""
    saved: bool = False
    bytes: int = 0
    seconds: float = 0.0

    def view(self) -> dict[str, Any]:
        return {"key": self.key, "paths": list(self.paths), "status": self.status, "saved": self.saved,
                "bytes": self.bytes, "seconds": round(self.seconds, 3)}


@dataclass
class JobResult:
    run_id: str
    combo: dict[str, str]
    status: str = "error"
    """``passed``, ``failed`` or ``error`` (the job could not run)."""
    exit_code: int = 1
    steps: list[StepResult] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    provider_id: str | None = None
    agreement_id: str | None = None
    cost_units: int = 0
    error: str | None = None
    seconds: float = 0.0
    caches: list[CacheResult] = field(default_factory=list)
    verify: dict[str, Any] | None = None
    """``--verify``: the second provider's run and how it compares (:func:`compare_runs`)."""

    def view(self) -> dict[str, Any]:
        from yagna.core.money import format_amount

        out: dict[str, Any] = {"run_id": self.run_id, "status": self.status, "exit_code": self.exit_code,
                               "steps": [s.view() for s in self.steps], "artifacts": self.artifacts,
                               "caches": [c.view() for c in self.caches],
                               "cost": format_amount(self.cost_units), "cost_units": self.cost_units,
                               "provider_id": self.provider_id, "seconds": round(self.seconds, 3)}
        if self.combo:
            out["matrix"] = dict(self.combo)
        if self.error:
            out["error"] = self.error
        if self.verify is not None:
            out["verify"] = self.verify
        return out


Output = Callable[[str, str, str], None]
"""(job label, ``stdout`` | ``stderr`` | ``step`` | ``yagna``, text) -> shown to the user."""


def compare_runs(primary: JobResult, check: JobResult | None) -> None:
    """``--verify``: compare the same job's run on a second provider; differences fail ``primary``.

    Compared: each step's status and exit code, whether the job could run, and the artifacts'
    paths and sha256 (timings, costs and logs are not: they differ on any two machines). What
    differs is listed in words; making a build reproducible is the pipeline author's business."""
    differences: list[str] = []
    if check is None:
        differences.append("the second run did not finish")
    else:
        if check.status == "error" or primary.status == "error":
            differences.append(f"the job ran {primary.status} on {primary.provider_id or '-'} but {check.status} on "
                               f"{check.provider_id or '-'}" + (f" ({check.error})" if check.error else ""))
        for a, b in zip(primary.steps, check.steps):
            if (a.status, a.exit_code) != (b.status, b.exit_code):
                differences.append(f"step {a.name!r}: {a.status} (exit code {a.exit_code}) vs {b.status} "
                                   f"(exit code {b.exit_code})")
        mine = {str(f["path"]): str(f["sha256"]) for f in primary.artifacts}
        theirs = {str(f["path"]): str(f["sha256"]) for f in check.artifacts}
        for path in sorted(mine.keys() | theirs.keys()):
            if path not in theirs:
                differences.append(f"artifact {path}: only from the first provider")
            elif path not in mine:
                differences.append(f"artifact {path}: only from the second provider")
            elif mine[path] != theirs[path]:
                differences.append(f"artifact {path}: sha256 {mine[path][:16]}... vs {theirs[path][:16]}...")
    primary.verify = {"provider_id": check.provider_id if check else None, "match": not differences,
                      "differences": differences, "run": check.view() if check else None}
    if differences:
        if primary.status == "passed":
            primary.status, primary.exit_code = "failed", 1
        note = f"the two providers disagree ({len(differences)} difference(s))"
        primary.error = f"{primary.error}; {note}" if primary.error else note


class Masker:
    """Replaces every secret value (and its base64 form) in text with ``***``."""

    def __init__(self, values: Sequence[str]) -> None:
        found = {v for v in values if len(v) >= 3}
        found |= {base64.b64encode(v.encode()).decode() for v in found}
        self._values = sorted(found, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for v in self._values:
            text = text.replace(v, MASK)
        return text


@dataclass
class JobSpec:
    """What one job runs: the image, its steps (already substituted for the combination), env, artifacts."""

    label: str
    image: str
    steps: Sequence[Any]
    """Each with ``name``, ``run``, ``timeout_s``, ``env``, ``continue_on_error``, ``workdir``."""
    env: dict[str, str]
    artifacts: Sequence[str]
    combo: dict[str, str]
    timeout_s: float
    caches: Sequence[tuple[str, Sequence[str]]] = ()
    """Each cache's key value (``deps-<hash>``, the repository not included) and paths."""


async def run_job(api: Api, spec: JobSpec, workspace: Path, workspace_sha256: str, out_dir: Path, *,
                  secrets: dict[str, str], output: Output, budget_units: int | None, subnet: str = "public",
                  deny: frozenset[str] = frozenset(), taken: set[str] | None = None,
                  lease_lock: trio.Lock | None = None, local_caches: LocalCaches | None = None) -> JobResult:
    """Run one job to its end; never raises for a failing step (the result says), raises only when cancelled.

    ``taken``: providers other jobs of this run have (avoided; this job's is added); ``lease_lock``
    makes concurrent jobs lease one after the other, so that they see each other's providers."""
    result = JobResult(run_id=_secrets.token_hex(6), combo=spec.combo,
                       steps=[StepResult(getattr(s, "name")) for s in spec.steps],
                       caches=[CacheResult(key, paths) for key, paths in spec.caches])
    t0 = time.monotonic()
    mask = Masker(list(secrets.values()))
    activity_id: str | None = None
    full_keys = [local_caches.full_key(c.key) if local_caches else c.key for c in result.caches]
    prefer = local_caches.holders(full_keys) if local_caches is not None and full_keys else []
    try:
        with trio.fail_after(spec.timeout_s):
            async with lease_lock if lease_lock is not None else _no_lock():
                result.agreement_id, result.provider_id = await _lease(api, spec, budget_units, subnet,
                                                                      deny | frozenset(taken or ()), prefer)
                if taken is not None:
                    taken.add(result.provider_id)
            output(spec.label, "yagna", f"running on {result.provider_id}")
            activity_id = await api.create_activity(result.agreement_id)
            await _batch(api, activity_id, [
                {"deploy": {"image": spec.image}}, {"start": {}},
                {"transfer_in": {"from": str(workspace), "to": "/work/in/workspace.tar"}},
                {"run": {"argv": ["sh", "-ec", f"mkdir -p {WORKSPACE_DIR} && tar -xf /work/in/workspace.tar -C "
                                              f"{WORKSPACE_DIR} && rm /work/in/workspace.tar"], "timeout": 600.0}},
            ], spec.label, output, mask, what="setting up the workspace")
            for i, (cache, full_key) in enumerate(zip(result.caches, full_keys)):
                await _restore_cache(api, activity_id, i, cache, full_key, local_caches, spec.label, output, mask)
            failed = False
            for step, res in zip(spec.steps, result.steps):
                if failed:
                    continue
                await _step(api, activity_id, step, res, spec, secrets, output, mask)
                if res.status in ("failed", "timed-out"):
                    failed = True
                    result.exit_code = res.exit_code if res.exit_code not in (None, 0) else 1
            result.status = "failed" if failed else "passed"
            if not failed:
                result.exit_code = 0
                for i, (cache, full_key) in enumerate(zip(result.caches, full_keys)):
                    try:
                        await _save_cache(api, activity_id, i, cache, full_key, local_caches, result.provider_id,
                                          spec.label, output, mask)
                    except (ApiError, PipelineRunError, OSError) as exc:  # a cache is an optimisation
                        output(spec.label, "yagna", f"cache {cache.key}: not saved: {exc}")
            if spec.artifacts:
                try:
                    result.artifacts = await _artifacts(api, activity_id, spec, out_dir, output, mask)
                except (ApiError, PipelineRunError, OSError) as exc:  # the steps' result stands; say what is missing
                    result.error = f"artifacts not brought back: {exc}"
                    output(spec.label, "yagna", result.error)
                    if result.status == "passed":
                        result.status, result.exit_code = "failed", 1
    except trio.TooSlowError:
        result.status, result.error = "failed", f"the job's timeout of {spec.timeout_s:g} s passed"
        result.exit_code = 124
        output(spec.label, "yagna", result.error)
    except (ApiError, PipelineRunError, OSError) as exc:
        result.status, result.error = "error", str(exc)
        output(spec.label, "yagna", f"error: {exc}")
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(30):
            await _teardown(api, activity_id, result.agreement_id)
            result.cost_units = await _cost(api, result.agreement_id)
        result.seconds = time.monotonic() - t0
    return result


@asynccontextmanager
async def _no_lock() -> AsyncIterator[None]:
    yield


async def _lease(api: Api, spec: JobSpec, budget_units: int | None, subnet: str,
                 deny: frozenset[str], prefer: Sequence[str] = ()) -> tuple[str, str]:
    demand = await api.create_demand(properties={}, constraints="", subnet=subnet,
                                     expiration_s=max(300, int(spec.timeout_s) + 300))
    try:
        strategy: dict[str, Any] = {"deny": sorted(deny)}
        if prefer:
            strategy["prefer"] = list(prefer)  # it holds our caches: worth a little more
        if budget_units is not None:
            from yagna.core.money import format_amount

            strategy.update({"max_estimate": format_amount(budget_units),
                             "expected_duration_s": max(1, int(spec.timeout_s))})
        last: list[dict[str, Any]] = []
        for attempt in range(20):
            reply = await api.negotiate(str(demand["demand_id"]), count=1, timeout_s=10.0, strategy=strategy)
            agreements = reply.get("agreements") or []
            if agreements:
                return str(agreements[0]["agreement_id"]), str(agreements[0]["provider_id"])
            last = list(reply.get("failures") or [])
            await trio.sleep(min(0.25 * (attempt + 1), 2.0))
        why = "; ".join(f"{str(f.get('provider_id', '?'))[:16]}: {f.get('code')}" for f in last[:4])
        raise PipelineRunError(f"no provider took the job ({why or 'no matching offer'})")
    finally:
        try:
            await api.delete_demand(str(demand["demand_id"]))
        except ApiError:
            pass


async def _batch(api: Api, activity_id: str, script: list[dict[str, Any]], label: str, output: Output,
                 mask: Masker, *, what: str) -> dict[str, Any]:
    batch_id = await api.exec(activity_id, script)
    done = await _follow(api, activity_id, batch_id, label, output, mask, show=False)
    for r in done.get("results") or []:
        if r and (r.get("error") or r.get("exit_code") not in (None, 0)):
            detail = r.get("error") or f"exit code {r.get('exit_code')}: {mask(str(r.get('stderr', '')))[-500:]}"
            raise PipelineRunError(f"{what} failed ({r.get('command')}): {detail}")
    if done.get("error"):
        raise PipelineRunError(f"{what} failed: {done['error']}")
    return done


async def _follow(api: Api, activity_id: str, batch_id: str, label: str, output: Output, mask: Masker, *,
                  show: bool) -> dict[str, Any]:
    """Stream a batch's output (when ``show``) until it is done; its final view."""
    after = 0
    partial: dict[str, str] = {}
    while True:
        events = await api.events(activity_id, batch_id, after, timeout=20.0)
        ended = False
        for e in events:
            after = max(after, int(e.get("seq", after)))
            kind = e.get("kind")
            if kind in ("stdout", "stderr") and show:
                text = partial.pop(kind, "") + str(e.get("data", ""))
                *lines, rest = text.split("\n")
                for line in lines:
                    output(label, kind, mask(line))
                if rest:
                    partial[kind] = rest
            elif kind == "batch_done":
                ended = True
        if ended:
            break
    for kind, rest in partial.items():
        output(label, kind, mask(rest))
    return await api.wait_batch(activity_id, batch_id, timeout=30.0)


async def _step(api: Api, activity_id: str, step: Any, res: StepResult, spec: JobSpec, secrets: dict[str, str],
                output: Output, mask: Masker) -> None:
    output(spec.label, "step", f"{res.name}")
    env = {**spec.env, **dict(step.env), **secrets}
    workdir = WORKSPACE_DIR + ("/" + step.workdir.strip("/") if getattr(step, "workdir", "") not in ("", ".") else "")
    t0 = time.monotonic()
    batch_id = await api.exec(activity_id, [{"run": {"argv": ["sh", "-ec", step.run], "env": env, "workdir": workdir,
                                                     "timeout": float(step.timeout_s)}}])
    done = await _follow(api, activity_id, batch_id, spec.label, output, mask, show=True)
    res.seconds = time.monotonic() - t0
    r = (done.get("results") or [None])[0] or {}
    res.exit_code = r.get("exit_code")
    if r.get("timed_out"):
        res.status = "timed-out"
    elif r.get("error") and res.exit_code is None:
        res.status = "failed"
        output(spec.label, "yagna", mask(str(r["error"])))
    elif res.exit_code == 0:
        res.status = "passed"
    else:
        res.status = "failed"
    if res.status != "passed" and step.continue_on_error:
        res.status = "failed (allowed)"
    output(spec.label, "yagna", f"{res.name}: {res.status} (exit code {res.exit_code}) in {res.seconds:.1f} s")


async def _artifacts(api: Api, activity_id: str, spec: JobSpec, out_dir: Path, output: Output,
                     mask: Masker) -> list[dict[str, Any]]:
    """Pack the artifacts in the container, bring the archive back by hash, unpack it under ``out_dir``.
    Paths that match nothing are said and skipped (after a failed step, some may not exist)."""
    script = collect_script(spec.artifacts, ARTIFACTS_TAR, say_missing="no artifact matches")
    done = await _batch(api, activity_id, [{"run": {"argv": ["sh", "-c", script], "timeout": 600.0}}],
                        spec.label, output, mask, what="collecting the artifacts")
    result = (done.get("results") or [None])[0] or {}
    for line in str(result.get("stderr", "")).splitlines():
        output(spec.label, "yagna", mask(line))
    if str(result.get("stdout", "")).strip() == "none":
        return []
    local = out_dir / f".artifacts-{_secrets.token_hex(4)}.tar"
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        await _batch(api, activity_id, [{"transfer_out": {"from": ARTIFACTS_TAR, "to": str(local)}}],
                     spec.label, output, mask, what="bringing the artifacts back")
        files = await trio.to_thread.run_sync(_unpack, local, out_dir)
    finally:
        local.unlink(missing_ok=True)
    for f in files:
        output(spec.label, "yagna", f"artifact {f['path']} ({f['size']} bytes, sha256 {f['sha256'][:16]})")
    return files


async def _restore_cache(api: Api, activity_id: str, i: int, cache: CacheResult, full_key: str,
                         local: LocalCaches | None, label: str, output: Output, mask: Masker) -> None:
    """The provider's copy if it has one, else the requestor's own, unpacked into the workspace."""
    t0 = time.monotonic()
    into = CACHE_IN.format(i)
    try:
        done = await _batch(api, activity_id, [{"cache_restore": {"key": full_key, "to": into}}], label, output,
                            mask, what="restoring a cache")
        r = (done.get("results") or [None])[0] or {}
        if r.get("exit_code") == 0:
            cache.status, cache.bytes = "hit", int(r.get("size") or 0)
    except PipelineRunError as exc:  # an older provider without caches: as good as a miss
        log.info("cache_restore: %s", exc)
    entry = local.get(full_key) if local is not None and cache.status == "miss" else None
    if entry is not None and entry.sha256 is not None and local is not None:
        await _batch(api, activity_id, [{"transfer_in": {"from": str(local.file_of(full_key)), "to": into}}],
                     label, output, mask, what="uploading a cache")
        cache.status, cache.bytes = "uploaded", entry.size
    if cache.status != "miss":
        await _batch(api, activity_id, [{"run": {"argv": ["sh", "-ec", f"tar -xf {into} -C {WORKSPACE_DIR} && rm {into}"],
                                                 "timeout": 600.0}}], label, output, mask, what="unpacking a cache")
    cache.seconds = time.monotonic() - t0
    how = {"hit": "restored on the provider", "uploaded": "uploaded from this machine",
           "miss": "not found (it is saved if the job passes)"}[cache.status]
    output(label, "yagna", f"cache {cache.key}: {how}" + (f", {cache.bytes} bytes" if cache.bytes else "")
           + f" in {cache.seconds:.1f} s")


async def _save_cache(api: Api, activity_id: str, i: int, cache: CacheResult, full_key: str,
                      local: LocalCaches | None, provider_id: str | None, label: str, output: Output,
                      mask: Masker) -> None:
    """After a job that passed: a cache the provider did not have is packed and kept there (and here)."""
    if cache.status == "hit":
        if local is not None:
            await trio.to_thread.run_sync(lambda: local.remember(full_key, provider_id))
        return
    t0 = time.monotonic()
    packed = CACHE_OUT.format(i)
    script = collect_script(cache.paths, packed)
    done = await _batch(api, activity_id, [{"run": {"argv": ["sh", "-c", script], "timeout": 600.0}}], label, output,
                        mask, what="packing a cache")
    if str(((done.get("results") or [None])[0] or {}).get("stdout", "")).strip() == "none":
        output(label, "yagna", f"cache {cache.key}: nothing to save ({', '.join(cache.paths)} not found)")
        return
    script_out: list[dict[str, Any]] = [{"cache_save": {"key": full_key, "from": packed}}]
    copy: Path | None = None
    if local is not None and cache.status == "miss":  # keep a copy here too, for a job on another provider
        local.dir.mkdir(parents=True, exist_ok=True)
        copy = local.dir / f".incoming-{_secrets.token_hex(4)}.tar"
        script_out.append({"transfer_out": {"from": packed, "to": str(copy)}})
    try:
        done = await _batch(api, activity_id, script_out, label, output, mask, what="saving a cache")
        saved = (done.get("results") or [None])[0] or {}
        cache.saved, cache.bytes = True, int(saved.get("size") or 0)
        if local is not None:
            digest = str(saved.get("sha256")) if copy is not None else None
            await trio.to_thread.run_sync(lambda: local.remember(full_key, provider_id, copy=copy, sha256=digest))
    finally:
        if copy is not None:
            copy.unlink(missing_ok=True)
    cache.seconds += time.monotonic() - t0
    output(label, "yagna", f"cache {cache.key}: saved, {cache.bytes} bytes in {time.monotonic() - t0:.1f} s")


def collect_script(patterns: Sequence[str], archive: str, *, say_missing: str | None = None) -> str:
    """A ``sh`` script that packs what ``patterns`` match in the workspace into ``archive`` (prints
    ``none`` when nothing matched).

    Globs as in GitHub's paths: ``*`` and ``?`` within a name, ``[...]``, and ``**`` across folders
    (``out/**/*.o``: any depth, ``out/**``: everything below). Plain and one-level patterns are
    expanded by the shell (a matched folder is packed whole); ``**`` patterns are matched by
    ``grep -E`` against ``find``'s list of files and links (busybox has no ``globstar``). Names with
    a newline are not collected."""
    plain = [p for p in patterns if "**" not in p]
    deep = [p for p in patterns if "**" in p]
    lines = [f"cd {WORKSPACE_DIR}", "set --"]
    if plain:
        words = " ".join(_sh_word(p) for p in plain)
        missing = f"else echo \"{say_missing} $p\" >&2; " if say_missing else ""
        lines.append(f"for p in {words}; do if [ -e \"$p\" ]; then set -- \"$@\" \"$p\"; {missing}fi; done")
    for p in deep:
        regex = _sh_quote(glob_ere(p))
        lines.append(f"found=0; while IFS= read -r f; do [ -z \"$f\" ] || {{ set -- \"$@\" \"$f\"; found=1; }}; done <<EOF\n"
                     f"$(find . \\( -type f -o -type l \\) | sed 's|^\\./||' | grep -E {regex})\nEOF")
        if say_missing:
            lines.append(f"[ $found = 1 ] || echo {_sh_quote(say_missing + ' ' + p)} >&2")
    lines.append("if [ $# -eq 0 ]; then echo none; exit 0; fi")
    lines.append(f"mkdir -p {archive.rsplit('/', 1)[0]}; tar -cf {archive} -- \"$@\"")
    return "\n".join(lines)


def glob_ere(pattern: str) -> str:
    """A path glob as an anchored POSIX extended regex (``**`` spans folders, ``*`` and ``?`` do not);
    a match of a folder's path also matches everything below it."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 2)
            if end == -1:
                out.append("\\[")
            else:
                body = pattern[i + 1:end]
                body = "^" + body[1:] if body.startswith("!") else body
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        elif ch in ".^$+(){}|\\":
            out.append("\\" + ch)
        else:
            out.append(ch)
        i += 1
    return "^" + "".join(out) + "(/.*)?$"


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _sh_word(pattern: str) -> str:
    """A path or glob for ``sh``: globbing kept, everything else quoted."""
    out = []
    for ch in pattern:
        out.append(ch if ch.isalnum() or ch in "*?[]/._-" else "\\" + ch)
    return "".join(out)


def _unpack(archive: Path, out_dir: Path) -> list[dict[str, Any]]:
    files = []
    root = out_dir.resolve()
    with tarfile.open(archive) as tf:
        for member in tf.getmembers():
            target = (root / member.name).resolve()
            if not (target == root or root in target.parents) or member.issym() or member.islnk() or \
                    not (member.isfile() or member.isdir()):
                continue  # only plain files and folders, inside the output folder
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tf.extractfile(member)
            assert src is not None
            digest = hashlib.sha256()
            with open(target, "wb") as dst:
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
                    dst.write(chunk)
            target.chmod(0o755 if member.mode & 0o111 else 0o644)
            files.append({"path": member.name, "sha256": digest.hexdigest(), "size": member.size})
    return sorted(files, key=lambda f: str(f["path"]))


async def _teardown(api: Api, activity_id: str | None, agreement_id: str | None) -> None:
    if activity_id is not None:
        try:
            await api.destroy_activity(activity_id)
        except ApiError as exc:
            log.info("destroy %s: %s", activity_id, exc)
    if agreement_id is not None:
        try:
            await api.terminate_agreement(agreement_id, "pipeline finished")
        except ApiError as exc:
            log.info("terminate %s: %s", agreement_id, exc)


async def _cost(api: Api, agreement_id: str | None) -> int:
    """What the agreement cost: the amount due the provider asked for (its final debit note)."""
    if agreement_id is None:
        return 0
    deadline = trio.current_time() + 10
    while True:
        try:
            status = await api.payment_status()
        except ApiError:
            return 0
        row = next((a for a in status.get("agreements", []) if a.get("agreement_id") == agreement_id), None)
        if row is None:
            return 0
        if row.get("state") == "closed" or trio.current_time() > deadline:
            return int(row.get("paid_units") or row.get("due_units") or 0)
        await trio.sleep(0.05)  # the channel closes ~0.1 s after the termination (bench/pipelines.py)
