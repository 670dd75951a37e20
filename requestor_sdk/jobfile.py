"""Batch job files (TOML): parsed and checked before anything is bought.

An error names the field and the line (:class:`~requestor_sdk.errors.JobFileError`)::

    [job]
    image = "local/busybox:1"
    command = ["sh", "-c", "md5sum /work/in/{name}"]   # {param} filled from each task
    timeout = "60s"          # per task: "90", "90s", "2m", "1h"
    redundancy = 1           # distinct providers per task; the majority wins
    budget = "5"             # most the whole job may cost, tokens
    max_providers = 3
    inputs = ["data/{name}"] # uploaded to /work/in/<file name>; relative to the job file
    outputs = []             # files under /work/out/ downloaded to <out>/<task id>/
    # optional: constraints, subnet, max_price_cpu_hour, max_price_hour, max_start_fee,
    #           deny = [node ids], retries = 2, env = {NAME = "value"}, expiration = "1h"

    [[task]]
    params = { name = "a.txt" }   # optional id = "..." (default task-001, task-002, ...)
"""

from __future__ import annotations

import re
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from requestor_sdk.budget import parse_tokens
from requestor_sdk.errors import BudgetError, JobFileError
from requestor_sdk.requestor import Market
from requestor_sdk.tasks import Task

__all__ = ["Job", "load_job", "parse_duration", "parse_job"]

_JOB_KEYS = {"image", "command", "timeout", "redundancy", "budget", "max_providers", "inputs", "outputs",
             "constraints", "subnet", "max_price_cpu_hour", "max_price_hour", "max_start_fee", "deny", "retries",
             "env", "expiration"}
_TASK_KEYS = {"id", "params"}
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)?\s*$")


@dataclass(frozen=True)
class Job:
    path: Path | None
    image: str
    command: tuple[str, ...]
    timeout: float
    redundancy: int
    budget: str
    max_providers: int
    retries: int
    market: Market
    tasks: tuple[Task, ...]
    env: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        m = self.market
        return {"file": str(self.path) if self.path else None, "image": self.image, "command": list(self.command),
                "timeout_s": self.timeout, "redundancy": self.redundancy, "budget": self.budget,
                "max_providers": self.max_providers, "retries": self.retries, "constraints": m.constraints,
                "subnet": m.subnet, "max_price_cpu_hour": m.max_price_cpu_hour, "max_price_hour": m.max_price_hour,
                "max_start_fee": m.max_start_fee, "deny": sorted(m.deny)}


def parse_duration(value: object) -> float:
    """``60``, ``"60"``, ``"60s"``, ``"1.5m"``, ``"1h"``, ``"500ms"`` -> seconds; ValueError if not."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as \"60s\", got a boolean")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
    else:
        raise ValueError(f"expected a duration such as \"60s\", \"2m\" or \"1h\", got {value!r}")
    if not 0 < seconds <= 24 * 3600:
        raise ValueError(f"a duration must be more than 0 and at most 24h, got {value!r}")
    return seconds


class _Lines:
    """Finds the line of a key in the job file's text (tomllib keeps no positions)."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def _sections(self) -> list[tuple[str, int]]:
        out = []
        for i, line in enumerate(self.lines, start=1):
            s = line.strip()
            if s.startswith("[[") and "]]" in s:
                out.append((s[2:s.index("]]")].strip(), i))
            elif s.startswith("[") and "]" in s:
                out.append((s[1:s.index("]")].strip(), i))
        return out

    def find(self, section: str, key: str | None, index: int = 0) -> int | None:
        sections = self._sections()
        starts = [(n, i) for n, (name, i) in enumerate(sections) if name == section]
        if index >= len(starts):
            return None
        pos, start = starts[index]
        end = sections[pos + 1][1] if pos + 1 < len(sections) else len(self.lines) + 1
        if key is None:
            return start
        pattern = re.compile(rf"^\s*(?:{re.escape(key)}|\"{re.escape(key)}\")\s*=|[{{,]\s*{re.escape(key)}\s*=")
        for i in range(start, end):
            if pattern.search(self.lines[i - 1]):
                return i
        return start


def load_job(path: Path | str) -> Job:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise JobFileError(f"cannot read the job file: {exc.strerror}", path=str(path)) from None
    return parse_job(text, path=path)


def parse_job(text: str, *, path: Path | None = None) -> Job:
    """Parse and check a job file's text; relative inputs are resolved against ``path``'s folder."""
    where = str(path) if path else None
    lines = _Lines(text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise JobFileError(f"not valid TOML: {exc}", path=where, line=int(m.group(1)) if m else None) from None

    def fail(msg: str, fld: str, section: str = "job", key: str | None = None, index: int = 0) -> JobFileError:
        return JobFileError(msg, path=where, field=fld, line=lines.find(section, key, index))

    unknown_top = sorted(set(data) - {"job", "task"})
    if unknown_top:
        raise JobFileError(f"unknown section(s) {', '.join(unknown_top)} (expected [job] and [[task]])",
                           path=where, field=unknown_top[0], line=lines.find(unknown_top[0], None))
    job = data.get("job")
    if not isinstance(job, dict):
        raise JobFileError("missing the [job] section", path=where, field="job", line=1)
    for key in sorted(set(job) - _JOB_KEYS):
        raise fail(f"unknown field (known: {', '.join(sorted(_JOB_KEYS))})", f"job.{key}", key=key)

    def get(key: str, kind: type | tuple[type, ...], default: Any = None, *, required: bool = False) -> Any:
        if key not in job:
            if required:
                raise fail("is required", f"job.{key}")
            return default
        value = job[key]
        if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise fail(f"expected {names}, got {type(value).__name__} {value!r}", f"job.{key}", key=key)
        return value

    def str_list(key: str) -> list[str]:
        value = get(key, list, [])
        if not all(isinstance(v, str) and v for v in value):
            raise fail("expected a list of non-empty strings", f"job.{key}", key=key)
        return list(value)

    image = get("image", str, required=True).strip()
    if not image:
        raise fail("must not be empty", "job.image", key="image")
    command = str_list("command") if "command" in job else None
    if not command:
        raise fail("is required: a non-empty list of strings, e.g. [\"sh\", \"-c\", \"echo {x}\"]", "job.command",
                   key="command" if "command" in job else None)
    try:
        timeout = parse_duration(get("timeout", (str, int, float), "60s"))
    except ValueError as exc:
        raise fail(str(exc), "job.timeout", key="timeout") from None
    try:
        expiration = int(parse_duration(get("expiration", (str, int, float), "1h")))
    except ValueError as exc:
        raise fail(str(exc), "job.expiration", key="expiration") from None
    redundancy = get("redundancy", int, 1)
    if not 1 <= redundancy <= 15:
        raise fail(f"must be from 1 to 15, got {redundancy}", "job.redundancy", key="redundancy")
    max_providers = get("max_providers", int, 3)
    if not 1 <= max_providers <= 100:
        raise fail(f"must be from 1 to 100, got {max_providers}", "job.max_providers", key="max_providers")
    if max_providers < redundancy:
        raise fail(f"must be at least redundancy ({redundancy}): each task needs that many distinct providers",
                   "job.max_providers", key="max_providers")
    retries = get("retries", int, 2)
    if not 0 <= retries <= 20:
        raise fail(f"must be from 0 to 20, got {retries}", "job.retries", key="retries")
    budget = get("budget", (str, int), required=True)
    amounts: dict[str, str | None] = {}
    for key in ("budget", "max_price_cpu_hour", "max_price_hour", "max_start_fee"):
        value = budget if key == "budget" else get(key, (str, int))
        if value is None:
            amounts[key] = None
            continue
        try:
            parse_tokens(value, key)
        except BudgetError as exc:
            raise fail(f"{exc} (write a decimal string of tokens, e.g. \"0.5\")", f"job.{key}", key=key) from None
        amounts[key] = str(value)
    if amounts["budget"] is not None and parse_tokens(amounts["budget"]) == 0:
        raise fail("must be more than 0", "job.budget", key="budget")
    env = get("env", dict, {})
    if not all(isinstance(v, str) for v in env.values()):
        raise fail("expected a table of strings, e.g. { LANG = \"C\" }", "job.env", key="env")
    inputs, outputs = str_list("inputs"), str_list("outputs")
    for o in outputs:
        if o.startswith("/") or ".." in o.split("/"):
            raise fail(f"{o!r}: name a file under /work/out/ relative to it, without '..'", "job.outputs", key="outputs")
    market = Market(constraints=get("constraints", str, ""), subnet=get("subnet", str, "public"),
                    max_price_cpu_hour=amounts["max_price_cpu_hour"], max_price_hour=amounts["max_price_hour"],
                    max_start_fee=amounts["max_start_fee"], deny=frozenset(str_list("deny")),
                    expiration_s=max(expiration, 120))

    raw_tasks = data.get("task", [])
    if not isinstance(raw_tasks, list) or not raw_tasks:
        raise JobFileError("no tasks: add at least one [[task]] with params = { ... }", path=where, field="task",
                           line=len(lines.lines) or 1)
    base = path.parent if path else Path.cwd()
    tasks: list[Task] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_tasks):
        name = f"task[{i + 1}]"
        if not isinstance(raw, dict):
            raise fail("expected a table: write [[task]] sections", name, "task", None, i)
        for key in sorted(set(raw) - _TASK_KEYS):
            raise fail(f"unknown field (known: id, params)", f"{name}.{key}", "task", key, i)
        params_raw = raw.get("params", {})
        if not isinstance(params_raw, dict):
            raise fail("expected a table, e.g. params = { x = \"1\" }", f"{name}.params", "task", "params", i)
        params: dict[str, str] = {}
        for k, v in params_raw.items():
            if isinstance(v, bool) or not isinstance(v, (str, int, float)):
                raise fail(f"{k}: expected a string or number, got {type(v).__name__}", f"{name}.params", "task",
                           "params", i)
            params[k] = str(v)
        tid = raw.get("id", f"task-{i + 1:03d}")
        if not isinstance(tid, str) or not re.fullmatch(r"[A-Za-z0-9._-]{1,100}", tid) or tid in (".", ".."):
            raise fail(f"{tid!r}: letters, digits, '.', '_' and '-' only", f"{name}.id", "task", "id", i)
        if tid in seen:
            raise fail(f"{tid!r} is used by another task", f"{name}.id", "task", "id", i)
        seen.add(tid)

        def fill(template: str, fld: str, key: str) -> str:
            try:
                names = [n for _, n, _, _ in string.Formatter().parse(template) if n is not None]
            except ValueError as exc:
                raise fail(f"{template!r}: {exc} (write {{{{ and }}}} for literal braces)", fld, key=key) from None
            missing = [n for n in names if n not in params]
            if missing:
                raise fail(f"{template!r} uses {{{missing[0]}}} but params has no {missing[0]!r} "
                           f"(params: {', '.join(sorted(params)) or 'none'})", f"{name}.params", "task", "params", i)
            try:
                return template.format_map(params)
            except (ValueError, KeyError, AttributeError, IndexError) as exc:  # "{x:d}", "{x:{z}}", "{x.real}"
                raise fail(f"{template!r}: cannot fill it from params: {type(exc).__name__}: {exc} "
                           "(use plain {name} fields)", fld, key=key) from None

        argv = [fill(a, "job.command", "command") for a in command]
        files: dict[str, Path] = {}
        for spec in inputs:
            local = Path(fill(spec, "job.inputs", "inputs"))
            local = local if local.is_absolute() else base / local
            if not local.is_file():
                raise fail(f"{name}: input {str(local)!r} is not a file", "job.inputs", key="inputs")
            if local.name in files:
                raise fail(f"{name}: two inputs named {local.name!r} in /work/in/", "job.inputs", key="inputs")
            files[local.name] = local
        outs = [fill(o, "job.outputs", "outputs") for o in outputs]
        task_env = {k: fill(v, "job.env", "env") for k, v in env.items()}
        tasks.append(Task(id=tid, argv=argv, inputs=files, outputs=outs, env=task_env, timeout=timeout,
                          params=params))
    return Job(path=path, image=image, command=tuple(command), timeout=timeout, redundancy=redundancy,
               budget=str(budget), max_providers=max_providers, retries=retries, market=market, tasks=tuple(tasks),
               env=env)
