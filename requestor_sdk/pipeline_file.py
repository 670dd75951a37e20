"""CI pipeline files (``yagna pipeline run [.yagna/pipeline.yml]``): parsed and checked, sans-io and pure.

The shape is GitHub Actions' (and GitLab CI's) where it can be: one job of ordered shell steps in one
image, run in one workspace (the packed source tree), optionally once per matrix combination::

    name: ci                        # optional, shown by the CLI
    image: local/python:3.12        # required: a local Docker image name or sha256:<64 hex> id
    timeout: 1h                     # the whole job (default 1h, at most 24h)
    budget: "0.5"                   # most the run may cost, tokens (default: the CLI's)
    env:                            # NAME: value (numbers and booleans are taken as written: 3.10 -> "3.10")
      LANG: C.UTF-8
    secrets: [PYPI_TOKEN]           # local environment variables passed in under the same name, masked in logs
    matrix:                         # one job per combination (see below)
      python: ["3.11", "3.12"]
      os: [alpine, debian]
      exclude: [{python: "3.11", os: debian}]
      include: [{python: "3.13", os: alpine, experimental: true}]
    steps:                          # required, 1 to 100, run in order with ``sh -e`` in the workspace
      - name: test ${{ matrix.python }}        # optional: the first line of run
        run: |
          make test
        timeout: 10m                # default 10m: "90s", "10m", "1h30m", "500ms" or seconds (90)
        env: {PY: "${{ matrix.python }}"}      # overrides the top-level env for this step
        continue_on_error: false    # also spelled continue-on-error; a failing step stops the job unless true
        workdir: src                # also working-directory; relative to the workspace (default: its root)
    artifacts: [dist/*.whl, "reports/**"]     # brought back after the job (globs * ** ? [] allowed)
    cache:                          # a mapping or a list of them (at most 8)
      key: pip-${{ matrix.python }}-${{ hashFiles('requirements.txt', 'setup.cfg') }}
      paths: [.cache/pip]

Reading. YAML is read with the 1.2 core schema, like GitHub Actions: ``yes``/``no``/``on``/``off`` are
strings, ``0777`` is 777, and a scalar where a string is expected is taken as written (``3.10`` stays
"3.10", not "3.1"). Keys are strings as written and must be unique; anchors, aliases and merge keys
(``<<: *defaults``) work, and top-level keys starting with ``.`` or ``x-`` (GitLab's hidden keys,
compose's extension fields) are ignored, so templates for anchors can live there. Every other unknown
key is an error naming the key and its line; well-known keys of other CI systems that we do not
support (``uses``, ``if``, ``shell``, ``services``, ``needs``, ``runs-on`` ...) say why. A name in
``env`` may not also be a secret (secrets reach every step under their own name).

Expressions. ``${{ matrix.NAME }}`` is substituted per combination in a step's ``name`` and ``run``,
in ``env`` values (top-level and step) and in ``cache.key``; ``${{ 'text' }}`` is the text (the way to
write a literal ``${{``); ``${{ hashFiles('a', 'b') }}`` is allowed in ``cache.key`` only. A reference to
a matrix variable that no combination has is an error naming key and line; a variable that only some
combinations have (added by ``include``) is empty in the others, as in GitHub. ``${{`` anywhere else
(image, paths, matrix values) is an error, so nothing is passed on unsubstituted.

Matrix (GitHub's semantics, simplified: values are scalars, not objects). The variables' lists make
a cartesian product (the first variable varies slowest), at most 4096 before ``exclude``;
``exclude`` entries (mappings of the matrix's own variables) remove every combination they match and
each must match one; then each ``include`` entry is added to every original combination whose values
it does not change (its other keys are added, and may replace what an earlier include added), and
when it fits none it becomes a combination of its own. At most 8 variables (with those ``include``
adds) and 64 combinations in all. Each job's env also has ``MATRIX_<NAME>`` (upper case, ``-`` as
``_``) for every variable of its combination, which the file's own ``env`` may override.

Bounds: the file at most 256 KiB, nesting depth 32, strings (a ``run`` script) at most 64 KiB, also
once the matrix is substituted (and a job's steps and env at most 1 MiB then); aliases may repeat at
most 10000 values; the counts of steps, variables, paths and caches are bounded too (``MAX_*``).

The result is a typed :class:`Pipeline`; :meth:`Pipeline.jobs` gives one :class:`Job` per combination
with the substitution done. Any text gives a :class:`Pipeline` or a :class:`PipelineError` (a
``ValueError``) naming the key (``steps[1].timeout``, indexes from 0) and its line, never another
exception. Nothing here reads files but :func:`load_pipeline`; :func:`cache_key_value` renders a cache
key with a file reader the caller gives.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any, Union

from yagna.core.errors import MoneyError
from yagna.core.money import format_amount, parse_amount

__all__ = [
    "Cache",
    "CacheKey",
    "HashFiles",
    "Job",
    "MatrixCombo",
    "MatrixRef",
    "Pipeline",
    "PipelineError",
    "Step",
    "cache_key_value",
    "hash_files",
    "load_pipeline",
    "parse_duration",
    "parse_pipeline",
]

DEFAULT_SOURCE = ".yagna/pipeline.yml"
MAX_FILE_BYTES = 256 * 1024
MAX_DEPTH = 32
MAX_STRING_BYTES = 64 * 1024
MAX_KEY_CHARS = 256
MAX_ALIASED = 10_000
"""Values that aliases repeat (a guard against alias bombs)."""
MAX_STEPS = 100
MAX_ENV = 256
MAX_SECRETS = 64
MAX_ARTIFACTS = 64
MAX_CACHES = 8
MAX_CACHE_PATHS = 32
MAX_CACHE_KEY_CHARS = 512
MAX_PATH_CHARS = 1024
MAX_NAME_CHARS = 256
MAX_MATRIX_VARS = 8
MAX_MATRIX_VALUES = 64
"""Values of one variable, and entries of ``include`` or of ``exclude``."""
MAX_MATRIX_VALUE_CHARS = 256
MAX_COMBOS = 64
MAX_PRODUCT = 4096
"""The cartesian product before ``exclude``."""
MAX_RENDERED_BYTES = 1024 * 1024
"""A job's steps and env once the matrix is substituted."""
MAX_DURATION_S = 24 * 3600.0
DEFAULT_TIMEOUT_S = 3600.0
DEFAULT_STEP_TIMEOUT_S = 600.0

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}")
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = (r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
           r"(?::[0-9]+)?")
_IMAGE = re.compile(rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
                    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?")
_DURATION_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_DURATION_ALL = re.compile(r"(?:[0-9]+(?:\.[0-9]+)?\s*(?:ms|s|m|h)\s*)+")
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

# YAML 1.2 core schema (what GitHub Actions reads), applied to plain scalars
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_TRUE, _FALSE = frozenset({"true", "True", "TRUE"}), frozenset({"false", "False", "FALSE"})
_INT10 = re.compile(r"[-+]?[0-9]+")
_INT8 = re.compile(r"0o[0-7]+")
_INT16 = re.compile(r"0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
_INF = re.compile(r"[-+]?\.(?:inf|Inf|INF)")
_NAN = re.compile(r"\.(?:nan|NaN|NAN)")
_YAML = "tag:yaml.org,2002:"
_CORE_SCALAR_TAGS = frozenset(_YAML + t for t in ("str", "int", "float", "bool", "null", "timestamp"))
_MERGE_TAG = _YAML + "merge"
_KEY_TAGS = _CORE_SCALAR_TAGS | {_MERGE_TAG}


class PipelineError(ValueError):
    """A pipeline file we cannot run; names the key (``steps[1].timeout``) and its line."""

    def __init__(self, source: str, line: int | None, key: str, message: str) -> None:
        self.source, self.line, self.key, self.message = source, line, key, message
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")


# -- the result ---------------------------------------------------------------------------------


class MatrixCombo(Mapping[str, str]):
    """One matrix combination: variable -> value, in the matrix's order; immutable and hashable."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._items: dict[str, str] = {}
        for k, v in pairs:
            self._items[str(k)] = str(v)

    def __getitem__(self, key: str) -> str:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __repr__(self) -> str:
        return f"MatrixCombo({self._items!r})"

    def label(self) -> str:
        """``python=3.12,os=alpine`` ("" for the combination of a pipeline without a matrix)."""
        return ",".join(f"{k}={v}" for k, v in self._items.items())

    def env(self) -> dict[str, str]:
        """``MATRIX_<NAME>`` -> value for each variable (upper case, ``-`` as ``_``)."""
        return {_matrix_env_name(k): v for k, v in self._items.items()}


@dataclass(frozen=True)
class Step:
    name: str
    """As written (``${{ matrix.X }}`` left in) or the first line of ``run``; substituted in :class:`Job`."""
    run: str
    """The shell script (run with ``sh -e`` in the image)."""
    timeout_s: float
    env: Mapping[str, str]
    """This step's own variables: they override the pipeline's (the runner merges them)."""
    continue_on_error: bool
    workdir: str
    """Relative to the workspace, normalised (``src/app``); ``.`` is the workspace itself."""
    line: int


@dataclass(frozen=True)
class HashFiles:
    """``hashFiles('a', 'b')`` in a cache key: paths (or glob patterns) relative to the workspace."""

    patterns: tuple[str, ...]


@dataclass(frozen=True)
class MatrixRef:
    """``${{ matrix.NAME }}`` in a cache key (substituted in :attr:`Job.caches`)."""

    name: str


CacheKeyPart = Union[str, HashFiles, MatrixRef]


@dataclass(frozen=True)
class CacheKey:
    parts: tuple[CacheKeyPart, ...]
    """Literal text, :class:`HashFiles` and :class:`MatrixRef` parts in order."""

    @property
    def text(self) -> str:
        """The key as it would be written in the file."""
        out = []
        for part in self.parts:
            if isinstance(part, HashFiles):
                args = ", ".join("'" + p.replace("'", "''") + "'" for p in part.patterns)
                out.append(f"${{{{ hashFiles({args}) }}}}")
            elif isinstance(part, MatrixRef):
                out.append(f"${{{{ matrix.{part.name} }}}}")
            else:
                out.append(part.replace("${{", "${{ '${{' }}"))
        return "".join(out)


@dataclass(frozen=True)
class Cache:
    key: CacheKey
    paths: tuple[str, ...]


@dataclass(frozen=True)
class Job:
    """What one matrix combination runs: steps and env with ``${{ ... }}`` substituted."""

    combo: MatrixCombo
    steps: tuple[Step, ...]
    env: Mapping[str, str]
    """``MATRIX_*`` variables of the combination, then the pipeline's env (which wins)."""
    caches: tuple[Cache, ...] = ()
    """The pipeline's caches with the matrix substituted in their keys (only :class:`HashFiles` is left)."""

    @property
    def label(self) -> str:
        return self.combo.label()


@dataclass(frozen=True)
class Pipeline:
    image: str
    env: Mapping[str, str]
    steps: tuple[Step, ...]
    timeout_s: float
    budget: Decimal | None
    """Tokens, > 0; None: the CLI's default."""
    secrets: tuple[str, ...]
    artifacts: tuple[str, ...]
    caches: tuple[Cache, ...]
    matrix: tuple[MatrixCombo, ...]
    """One empty combination when the file has no matrix."""
    name: str | None = None

    def jobs(self) -> list[Job]:
        """One job per matrix combination, with ``${{ matrix.X }}`` and ``${{ 'text' }}`` substituted."""
        return [self._job(combo) for combo in self.matrix]

    def _job(self, combo: MatrixCombo) -> Job:
        env = {**combo.env(), **{k: _render(v, combo) for k, v in self.env.items()}}
        steps = tuple(replace(s, name=_render(s.name, combo).strip() or f"step {i + 1}", run=_render(s.run, combo),
                              env=MappingProxyType({k: _render(v, combo) for k, v in s.env.items()}))
                      for i, s in enumerate(self.steps))
        caches = tuple(Cache(CacheKey(_merge_literals(
            combo.get(p.name, "") if isinstance(p, MatrixRef) else p for p in c.key.parts)), c.paths)
            for c in self.caches)
        return Job(combo, steps, MappingProxyType(env), caches)


# -- durations and cache keys (pure helpers) ----------------------------------------------------


def parse_duration(value: object, *, limit: float = MAX_DURATION_S) -> float:
    """``90``, ``"90"``, ``"90s"``, ``"1.5m"``, ``"1h30m"``, ``"500ms"`` -> seconds (> 0, at most ``limit``).

    The forms of :func:`requestor_sdk.jobfile.parse_duration` (seconds, or a number with ms, s, m or h), and
    compound ones
    (``1h30m``, ``1h 30m 10s``); ValueError saying why otherwise.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"must be a duration such as \"90s\", \"10m\" or \"1h30m\", not {_kind(value)}")
    if isinstance(value, int):
        if not 0 < value <= limit:  # compared as an int: a huge one would overflow a float
            shown = str(value) if abs(value) < 10**15 else "a larger number"
            raise ValueError(f"must be more than 0 and at most {_show_duration(limit)}, got {shown}")
        return float(value)
    if isinstance(value, float):
        seconds = value
    else:
        text = value.strip()
        if len(text) > 64:
            raise ValueError(f"{text[:64]!r}... is not a duration")
        if _DURATION_NUMBER.fullmatch(text):
            seconds = float(text)
        elif _DURATION_ALL.fullmatch(text):
            seconds, seen = 0.0, set()
            for number, unit in _DURATION_PART.findall(text):
                if unit in seen:
                    raise ValueError(f"{value!r} names {unit!r} twice")
                seen.add(unit)
                seconds += float(number) * _UNITS[unit]
        else:
            raise ValueError(f"{value[:64]!r} is not a duration: write \"90s\", \"10m\", \"1h30m\", \"500ms\" or "
                             "a number of seconds")
    if not 0 < seconds <= limit:  # NaN fails too
        shown = value[:64] if isinstance(value, str) else "a larger number" if abs(value) >= 1e15 else f"{value:g}"
        raise ValueError(f"must be more than 0 and at most {_show_duration(limit)}, got {shown}")
    return seconds


def _show_duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


_MISSING = (FileNotFoundError, NotADirectoryError, IsADirectoryError)


def hash_files(patterns: Iterable[str], read: Callable[[str], bytes], *,
               expand: Callable[[str], Iterable[str]] | None = None) -> str:
    """``hashFiles(...)``: sha256 hex over the sha256 of each file's contents, files in sorted order.

    ``read(path)`` gives a file's bytes (a missing file - FileNotFoundError, NotADirectoryError or
    IsADirectoryError - contributes nothing; other errors propagate); ``expand(pattern)`` lists the
    paths a glob pattern matches (without it each pattern is a path). Like GitHub's: hashing each
    file's digest keeps ``a="ab", b=""`` apart from ``a="a", b="b"``; "" when no file was read.
    """
    paths = sorted({path for pattern in patterns for path in (expand(pattern) if expand else (pattern,))})
    digest = hashlib.sha256()
    found = False
    for path in paths:
        try:
            data = read(path)
        except _MISSING:
            continue
        digest.update(hashlib.sha256(data).digest())
        found = True
    return digest.hexdigest() if found else ""


def cache_key_value(key: CacheKey, read: Callable[[str], bytes], *,
                    expand: Callable[[str], Iterable[str]] | None = None,
                    combo: Mapping[str, str] | None = None) -> str:
    """The key's value: literal parts as they are, :class:`HashFiles` parts by :func:`hash_files`.

    :class:`MatrixRef` parts take the value in ``combo`` (a job's keys, :attr:`Job.caches`, have
    none left); ValueError if there is one and no ``combo``.
    """
    out = []
    for part in key.parts:
        if isinstance(part, HashFiles):
            out.append(hash_files(part.patterns, read, expand=expand))
        elif isinstance(part, MatrixRef):
            if combo is None:
                raise ValueError(f"the key uses matrix.{part.name}: give the combination (or use Job.caches)")
            out.append(combo.get(part.name, ""))
        else:
            out.append(part)
    return "".join(out)


# -- reading --------------------------------------------------------------------------------------


def load_pipeline(path: Path | str, *, source: str | None = None) -> Pipeline:
    """Read and parse a pipeline file; an unreadable or non-UTF-8 file is a :class:`PipelineError` too."""
    path = Path(path)
    where = source if source is not None else str(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise PipelineError(where, None, "", f"cannot read the pipeline file: {reason}") from None
    if len(data) > MAX_FILE_BYTES:
        raise PipelineError(where, None, "", f"a pipeline file is at most {MAX_FILE_BYTES // 1024} KiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PipelineError(where, data.count(b"\n", 0, exc.start) + 1, "", "not UTF-8 text") from None
    return parse_pipeline(text, source=where)


def parse_pipeline(text: str, *, source: str = DEFAULT_SOURCE) -> Pipeline:
    """Parse and check a pipeline file's text; :class:`PipelineError` names the first problem (key, line)."""
    ctx = _Ctx(source)
    root = _Reader(source).load(text)
    if isinstance(root.value, dict):  # templates for anchors: GitLab's hidden ``.name``, compose's ``x-name``
        root.value = {k: v for k, v in root.value.items() if not k.startswith((".", "x-"))}
    top = ctx.mapping(root, "", _TOP_KEYS, why=_TOP_WHY, what="a pipeline file is a mapping with image and steps")
    for need in ("image", "steps"):
        if need not in top:
            raise ctx.fail(root, need, "is required")
    image = _image(ctx, top["image"])
    name = None
    if "name" in top:
        name = ctx.line_text(top["name"], "name")
        ctx.no_expression(top["name"], "name", name)
    combos, variables = _matrix(ctx, top["matrix"]) if "matrix" in top else ((MatrixCombo(),), set())
    secrets = _secrets(ctx, top["secrets"]) if "secrets" in top else ()
    env = _env(ctx, top["env"], "env", variables, secrets) if "env" in top else {}
    timeout = ctx.duration(top["timeout"], "timeout") if "timeout" in top else DEFAULT_TIMEOUT_S
    steps = _steps(ctx, top["steps"], variables, secrets, timeout)
    budget = _budget(ctx, top["budget"]) if "budget" in top else None
    artifacts = _paths(ctx, top["artifacts"], "artifacts", 0, MAX_ARTIFACTS) if "artifacts" in top else ()
    caches = _caches(ctx, top["cache"], variables) if "cache" in top else ()
    return Pipeline(image=image, env=MappingProxyType(env), steps=steps, timeout_s=timeout, budget=budget,
                    secrets=secrets, artifacts=artifacts, caches=caches, matrix=combos, name=name)


# -- a YAML tree that remembers lines (YAML 1.2 core schema) -----------------------------------


class _Node:
    __slots__ = ("value", "line", "text", "vline", "style")

    def __init__(self, value: Any, line: int, text: str | None = None, vline: int | None = None,
                 style: str | None = None) -> None:
        self.value = value
        """dict[str, _Node], list[_Node], or a scalar: str, int, float, bool or None."""
        self.line = line
        """1-based; a mapping's value is reported at its key's line."""
        self.text = text
        """A scalar as written (``3.10``), None for a collection."""
        self.vline = vline if vline is not None else line
        """Where a scalar's own text starts (``|`` for a block)."""
        self.style = style


class _Reader:
    """PyYAML's compose nodes (libyaml when present) turned into :class:`_Node` with key paths for errors."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.seen: set[int] = set()
        self.aliased = 0

    def fail(self, line: int | None, key: str, message: str) -> PipelineError:
        return PipelineError(self.source, line, key, message)

    def load(self, text: str) -> _Node:
        import yaml

        bad = _SURROGATE.search(text)
        if bad:
            raise self.fail(text.count("\n", 0, bad.start()) + 1, "", "not valid text (a lone surrogate)")
        data = text.encode("utf-8")
        if len(data) > MAX_FILE_BYTES:
            raise self.fail(None, "", f"a pipeline file is at most {MAX_FILE_BYTES // 1024} KiB")
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        try:
            # the composers recurse: bound the nesting first, on the (iterative) parser's events
            depth = 0
            for event in yaml.parse(text, Loader=loader):
                if isinstance(event, yaml.CollectionStartEvent):
                    depth += 1
                    if depth > MAX_DEPTH:
                        raise self.fail(event.start_mark.line + 1, "", f"nested more than {MAX_DEPTH} levels deep")
                elif isinstance(event, yaml.CollectionEndEvent):
                    depth -= 1
            root = yaml.compose(text, Loader=loader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            problem = exc.problem or exc.context or "cannot be read"
            row = text.split("\n")[mark.line] if mark is not None and mark.line < text.count("\n") + 1 else ""
            tabbed = "tab" in problem or "\t" in row[:len(row) - len(row.lstrip())]
            hint = " (indent with spaces, not tabs)" if tabbed else ""
            raise self.fail(mark.line + 1 if mark is not None else None, "",
                            f"not valid YAML: {problem}{hint}") from None
        except yaml.YAMLError as exc:  # ReaderError: a character YAML does not allow
            position = getattr(exc, "position", None)  # in bytes for libyaml, in characters for PyYAML
            line = None
            if isinstance(position, int):
                line = (data.count(b"\n", 0, position) if loader is not yaml.SafeLoader
                        else text.count("\n", 0, position)) + 1
            reason = getattr(exc, "reason", None) or "unreadable"
            raise self.fail(line, "", f"not valid YAML: {reason}") from None
        if root is None:
            raise self.fail(1, "", "the pipeline file is empty")
        return self.convert(root, "", 0)

    def convert(self, node: Any, path: str, depth: int) -> _Node:
        import yaml

        line = node.start_mark.line + 1
        if id(node) in self.seen:  # an alias repeats this node (the tree lives until the end of load)
            self.aliased += 1
            if self.aliased > MAX_ALIASED:
                raise self.fail(line, path, f"aliases repeat more than {MAX_ALIASED} values")
        self.seen.add(id(node))
        if depth > MAX_DEPTH:
            raise self.fail(line, path, f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path, line)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _YAML + "seq":
                raise self.fail(line, path, f"unsupported YAML tag {_tag(node.tag)}")
            return _Node([self.convert(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(node.value)], line)
        if not isinstance(node, yaml.MappingNode) or node.tag != _YAML + "map":
            raise self.fail(line, path, f"unsupported YAML tag {_tag(node.tag)}")
        out: dict[str, _Node] = {}
        first: dict[str, int] = {}
        merges: list[Any] = []
        for key_node, value_node in node.value:
            kline = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _KEY_TAGS:
                raise self.fail(kline, path, "keys must be strings")
            if key_node.tag == _MERGE_TAG and not key_node.style:
                merges.append(value_node)
                continue
            key = key_node.value
            child_path = f"{path}.{key}" if path else key
            if len(key) > MAX_KEY_CHARS or _CONTROL.search(key):
                raise self.fail(kline, f"{path}.{key[:40]}" if path else key[:40],
                                f"keys are at most {MAX_KEY_CHARS} characters on one line")
            if key in first:
                raise self.fail(kline, child_path, f"repeated (first on line {first[key]})")
            first[key] = kline
            child = self.convert(value_node, child_path, depth + 1)
            child.line = kline
            out[key] = child
        for value_node in merges:  # ``<<: *a`` or ``<<: [*a, *b]``: keys written here win, then earlier ones
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for src in sources:
                if not isinstance(src, yaml.MappingNode):
                    raise self.fail(src.start_mark.line + 1, path, "<< merges a mapping or a list of mappings")
                merged = self.convert(src, path, depth + 1)
                for key, child in merged.value.items():
                    out.setdefault(key, child)
        return _Node(out, line)

    def scalar(self, node: Any, path: str, line: int) -> _Node:
        text: str = node.value
        if node.tag not in _CORE_SCALAR_TAGS and node.tag != _MERGE_TAG:
            raise self.fail(line, path, f"unsupported YAML tag {_tag(node.tag)}")
        if "\x00" in text or _SURROGATE.search(text):
            raise self.fail(line, path, "must not hold a NUL character or a lone surrogate")
        if len(text.encode("utf-8")) > MAX_STRING_BYTES:
            raise self.fail(line, path, f"longer than {MAX_STRING_BYTES // 1024} KiB")
        value: Any = text
        style = node.style or None  # libyaml says "" for plain, PyYAML None
        if style is None:  # plain: the YAML 1.2 core schema decides
            if text in _NULLS:
                value = None
            elif text in _TRUE or text in _FALSE:
                value = text in _TRUE
            elif _INT10.fullmatch(text):
                value = int(text) if len(text) <= 600 else float(text)  # int() may refuse long digit strings
            elif _INT8.fullmatch(text):
                value = int(text[2:], 8)
            elif _INT16.fullmatch(text):
                value = int(text[2:], 16)
            elif _FLOAT.fullmatch(text):
                value = float(text)
            elif _INF.fullmatch(text):
                value = float("-inf") if text.startswith("-") else float("inf")
            elif _NAN.fullmatch(text):
                value = float("nan")
        return _Node(value, line, text, line, style)


def _tag(tag: str) -> str:
    shown = "!!" + tag[len(_YAML):] if tag.startswith(_YAML) else tag
    hint = " (GitLab's !reference is not supported: use anchors and aliases)" if shown == "!reference" else ""
    return repr(shown[:64]) + hint


# -- the checks -------------------------------------------------------------------------------


class _TemplateError(Exception):
    def __init__(self, offset: int, message: str) -> None:
        super().__init__(message)
        self.offset, self.message = offset, message


class _Ctx:
    def __init__(self, source: str) -> None:
        self.source = source
        self.widths: dict[str, int] = {}
        """Matrix variable -> the longest of its values (bytes)."""
        self.rendered = 0
        """The most a job's steps and env can hold once substituted (bytes)."""

    def fail(self, node: _Node | None, key: str, message: str, *, line: int | None = None) -> PipelineError:
        return PipelineError(self.source, line if line is not None else node.line if node is not None else None,
                             key, message)

    def mapping(self, node: _Node, key: str, allowed: set[str] | frozenset[str], *,
                why: Mapping[str, str] | None = None, what: str = "must be a mapping") -> dict[str, _Node]:
        if not isinstance(node.value, dict):
            raise self.fail(node, key, what)
        for name, child in node.value.items():
            if name not in allowed:
                reason = (why or {}).get(name) or f"unknown key (known: {', '.join(sorted(allowed))})"
                raise self.fail(child, f"{key}.{name}" if key else name, reason)
        return node.value  # type: ignore[no-any-return]

    def items(self, node: _Node, key: str, lo: int, hi: int, what: str) -> list[_Node]:
        if not isinstance(node.value, list):
            raise self.fail(node, key, f"must be a list of {what}")
        if not lo <= len(node.value) <= hi:
            raise self.fail(node, key, f"must have {lo} to {hi} {what}" if lo else f"at most {hi} {what}")
        return node.value  # type: ignore[no-any-return]

    def scalar_text(self, node: _Node, key: str, *, booleans: bool) -> str:
        """A string, or a number as written; with ``booleans``, true/false too (as ``true``/``false``)."""
        v = node.value
        if isinstance(v, bool):
            if not booleans:
                raise self.fail(node, key, f"must be a string, not a boolean (quote it: \"{node.text}\")")
            return "true" if v else "false"
        if v is None:
            raise self.fail(node, key, "must be a string (write \"\" for an empty one)" if booleans else
                            "must be a string, not empty")
        if not isinstance(v, (str, int, float)) or node.text is None:
            raise self.fail(node, key, "must be a string, not a " + ("list" if isinstance(v, list) else "mapping"))
        return node.text

    def line_text(self, node: _Node, key: str) -> str:
        """A single-line name (templates allowed)."""
        text = self.scalar_text(node, key, booleans=False).strip()
        if not text or len(text) > MAX_NAME_CHARS or _CONTROL.search(text):
            raise self.fail(node, key, f"must be 1 to {MAX_NAME_CHARS} characters on one line")
        return text

    def no_expression(self, node: _Node, key: str, text: str) -> None:
        if "${{" in text:
            raise self.fail(node, key, "expressions (${{ ... }}) are substituted only in name, run, env values "
                                       "and cache.key")

    def boolean(self, node: _Node, key: str) -> bool:
        if not isinstance(node.value, bool):
            raise self.fail(node, key, "must be true or false")
        return node.value

    def duration(self, node: _Node, key: str, limit: float = MAX_DURATION_S) -> float:
        value = node.value
        try:
            return parse_duration(value, limit=limit)
        except ValueError as exc:
            raise self.fail(node, key, str(exc)) from None

    def template(self, node: _Node, key: str, text: str, variables: set[str], *,
                 hash_files: bool = False) -> tuple[CacheKeyPart, ...]:
        """Check the ``${{ ... }}`` expressions in ``text`` and what they can grow to; the parts."""
        try:
            parts, refs = _parse_template(text)
            for offset, part in refs:
                if isinstance(part, HashFiles) and not hash_files:
                    raise _TemplateError(offset, "hashFiles(...) is only for cache.key")
                if isinstance(part, HashFiles):
                    for pattern in part.patterns:
                        problem = _path_problem(pattern, glob=True)
                        if problem:
                            raise _TemplateError(offset, f"hashFiles({pattern[:64]!r}): {problem}")
                if isinstance(part, MatrixRef) and part.name not in variables:
                    raise _TemplateError(offset, f"matrix.{part.name}: " + (
                        f"no such matrix variable (the matrix has {', '.join(sorted(variables))})" if variables
                        else "there is no matrix in this file"))
        except _TemplateError as exc:
            raise self.fail(node, key, exc.message, line=_line_at(node, exc.offset)) from None
        if not hash_files:
            size = sum(len(p.encode()) if isinstance(p, str) else self.widths.get(p.name, 0) if isinstance(
                p, MatrixRef) else 0 for p in parts)
            if size > MAX_STRING_BYTES:
                raise self.fail(node, key, f"longer than {MAX_STRING_BYTES // 1024} KiB once the matrix is "
                                           "substituted")
            self.rendered += size
            if self.rendered > MAX_RENDERED_BYTES:
                raise self.fail(node, key, f"the steps and env of a job pass {MAX_RENDERED_BYTES // 1024 // 1024} "
                                           "MiB once the matrix is substituted")
        return parts


def _line_at(node: _Node, offset: int) -> int:
    """The line of ``offset`` in a scalar's value: exact for ``|`` blocks and one-line scalars."""
    if node.style == "|" and node.text is not None:
        return node.vline + 1 + node.text.count("\n", 0, offset)
    return node.vline


# ``${{ ... }}``: the expressions we support


_EXPR_MATRIX = re.compile(r"matrix\.([A-Za-z_][A-Za-z0-9_-]*)")
_EXPR_STRING = re.compile(r"'((?:[^']|'')*)'", re.DOTALL)
_EXPR_HASH = re.compile(r"hashFiles\s*\((.*)\)", re.DOTALL)
_EXPR_ARG = re.compile(r"\s*'((?:[^']|'')*)'\s*(,|$)", re.DOTALL)
_EXPR_WHY = {
    "secrets.": "secrets are environment variables: list the name under secrets: and write $NAME in run",
    "env.": "env values are environment variables: write $NAME in run",
    "github.": "there is no github context here (the job runs on a provider, from your source tree)",
    "runner.": "there is no runner context here: the image is the machine",
    "steps.": "step outputs are not supported: steps share the workspace, so write files",
    "needs.": "there is one job per file, so no job outputs",
    "jobs.": "there is one job per file, so no job outputs",
    "inputs.": "there are no inputs: use env, secrets or matrix",
    "vars.": "there are no configuration variables: use env",
}


def _parse_template(text: str) -> tuple[tuple[CacheKeyPart, ...], list[tuple[int, CacheKeyPart]]]:
    """Parts of a string with ``${{ ... }}`` in it, and the expressions with their offsets."""
    parts: list[CacheKeyPart] = []
    refs: list[tuple[int, CacheKeyPart]] = []
    i = 0
    while True:
        start = text.find("${{", i)
        if start < 0:
            parts.append(text[i:])
            break
        parts.append(text[i:start])
        end, quoted, k = -1, False, start + 3
        while k < len(text):
            if text[k] == "'":
                quoted = not quoted  # '' inside a string toggles twice
            elif not quoted and text.startswith("}}", k):
                end = k
                break
            k += 1
        if end < 0:
            raise _TemplateError(start, "${{ is not closed with }} (write ${{ '${{' }} for the text ${{)")
        part = _expression(text[start + 3:end].strip(), start)
        parts.append(part)
        if not isinstance(part, str):
            refs.append((start, part))
        i = end + 2
    return _merge_literals(parts), refs


def _expression(body: str, offset: int) -> CacheKeyPart:
    if m := _EXPR_MATRIX.fullmatch(body):
        return MatrixRef(m.group(1))
    if m := _EXPR_STRING.fullmatch(body):
        return m.group(1).replace("''", "'")
    if m := _EXPR_HASH.fullmatch(body):
        args, rest = [], m.group(1)
        while rest.strip():
            arg = _EXPR_ARG.match(rest)
            if arg is None:
                raise _TemplateError(offset, "hashFiles takes paths in single quotes: hashFiles('a.lock', 'b.lock')")
            args.append(arg.group(1).replace("''", "'"))
            rest = rest[arg.end():]
            if arg.group(2) == "," and not rest.strip():
                raise _TemplateError(offset, "hashFiles(...) ends with a comma")
        if not args:
            raise _TemplateError(offset, "hashFiles() needs at least one path")
        return HashFiles(tuple(args))
    shown = body if len(body) <= 60 else body[:57] + "..."
    for prefix, why in _EXPR_WHY.items():
        if body.startswith(prefix):
            raise _TemplateError(offset, f"${{{{ {shown} }}}}: {why}")
    if body.startswith("matrix"):
        raise _TemplateError(offset, f"${{{{ {shown} }}}}: write matrix.NAME (letters, digits, _ and -)")
    raise _TemplateError(offset, f"${{{{ {shown} }}}}: unsupported expression (supported: matrix.NAME, 'text', "
                                 "and hashFiles('path', ...) in cache.key)")


def _merge_literals(parts: Iterable[CacheKeyPart]) -> tuple[CacheKeyPart, ...]:
    out: list[CacheKeyPart] = []
    for part in parts:
        if isinstance(part, str):
            if not part:
                continue
            last = out[-1] if out else None
            if isinstance(last, str):
                out[-1] = last + part
                continue
        out.append(part)
    return tuple(out)


def _render(text: str, combo: Mapping[str, str]) -> str:
    """``text`` with its (already checked) expressions substituted."""
    try:
        parts, _ = _parse_template(text)
    except _TemplateError:  # cannot happen for a checked pipeline; never raise from jobs()
        return text
    return "".join(p if isinstance(p, str) else combo.get(p.name, "") if isinstance(p, MatrixRef) else ""
                   for p in parts)


# the file's keys


_TOP_KEYS = frozenset({"name", "image", "env", "steps", "timeout", "budget", "secrets", "artifacts", "cache",
                       "matrix"})
_TOP_WHY = {
    "on": "triggers (on) do not apply: `yagna pipeline run` runs the pipeline when you call it",
    "jobs": "a pipeline file is one job: write its steps at the top level (a matrix makes variants of it)",
    "runs-on": "the image is the machine: name it with image:",
    "container": "write the image as image: NAME",
    "services": "service containers are not supported: a job is one container (start helpers from a step)",
    "needs": "a pipeline file is one job, so there are no dependencies between jobs",
    "strategy": "write matrix: at the top level (fail-fast and max-parallel are not supported: combinations "
                "run at once, each on its own provider)",
    "permissions": "there is no GitHub token here: pass what the steps need with secrets:",
    "concurrency": "concurrency groups are not supported: each `yagna pipeline run` is a run of its own",
    "defaults": "defaults are not supported: set workdir on each step",
    "if": "conditions (if) are not supported: the pipeline runs when you call it",
    "timeout-minutes": "write timeout: 30m (a duration)",
    "variables": "GitLab's variables are written env:",
    "stages": "GitLab's stages are not supported: a pipeline file is one job whose steps run in order",
    "script": "GitLab's script is written as steps: [{run: ...}]",
    "before_script": "write it as the first step",
    "after_script": "write it as the last step (with continue_on_error: true if it may fail)",
    "version": "pipeline files have no version key",
}
_STEP_KEYS = frozenset({"name", "run", "timeout", "env", "continue_on_error", "continue-on-error", "workdir",
                        "working-directory"})
_STEP_WHY = {
    "uses": "actions (uses) are not supported: every step is a shell script in run",
    "with": "inputs of actions (with) are not supported: every step is a shell script in run (pass values "
            "with env)",
    "if": "conditions (if) are not supported: steps run in order, and a failing step stops the job unless it "
          "has continue_on_error: true",
    "shell": "steps run with sh -e in the image: call another shell from run (bash -c '...', python x.py)",
    "id": "step outputs are not supported: steps share the workspace, so write files",
    "needs": "steps run in the order they are written",
    "services": "service containers are not supported: a job is one container (start helpers from a step)",
    "timeout-minutes": "write timeout: 10m (a duration)",
    "script": "GitLab's script is written run: | with the commands, one per line",
    "image": "one image per pipeline: set image: at the top level",
    "secrets": "secrets are listed at the top level (secrets: [NAME]) and reach every step",
    "artifacts": "artifacts are listed at the top level",
    "cache": "caches are listed at the top level",
    "working_directory": "write workdir: (or working-directory:)",
    "continue_on_failure": "write continue_on_error: true",
    "allow_failure": "write continue_on_error: true",
}
_CACHE_WHY = {
    "path": "write paths: [a, b] (a list)",
    "restore-keys": "partial-match restore keys are not supported: a cache is used when its key matches exactly",
    "restore_keys": "partial-match restore keys are not supported: a cache is used when its key matches exactly",
    "policy": "GitLab's cache policy is not supported",
    "enableCrossOsArchive": "not supported: caches are per key",
}


def _image(ctx: _Ctx, node: _Node) -> str:
    image = ctx.scalar_text(node, "image", booleans=False).strip()
    ctx.no_expression(node, "image", image)
    if len(image) > 255 or not (_IMAGE_ID.fullmatch(image) if image.startswith("sha256:") else _IMAGE.fullmatch(image)):
        raise ctx.fail(node, "image", f"{image[:80]!r}: must be a local Docker image name (local/busybox:1) or an "
                                      "image id (sha256: and 64 hex digits)")
    return image


def _matrix_env_name(var: str) -> str:
    return "MATRIX_" + var.upper().replace("-", "_")


def _matrix_value(ctx: _Ctx, node: _Node, key: str) -> str:
    if isinstance(node.value, (list, dict)):
        raise ctx.fail(node, key, "matrix values are strings, numbers or booleans (objects are not supported: "
                                  "use include to add variables to a combination)")
    text = ctx.scalar_text(node, key, booleans=True)
    ctx.no_expression(node, key, text)
    if len(text) > MAX_MATRIX_VALUE_CHARS or _CONTROL.search(text):
        raise ctx.fail(node, key, f"matrix values are at most {MAX_MATRIX_VALUE_CHARS} characters on one line")
    return text


def _matrix_entries(ctx: _Ctx, node: _Node, key: str, variables: set[str] | None) -> list[tuple[dict[str, str], _Node]]:
    """``include``/``exclude``: lists of non-empty mappings var -> value (``variables``: the names allowed)."""
    out = []
    for i, item in enumerate(ctx.items(node, key, 0, MAX_MATRIX_VALUES, "mappings")):
        ikey = f"{key}[{i}]"
        if not isinstance(item.value, dict) or not item.value:
            raise ctx.fail(item, ikey, "must be a mapping of matrix variables to values")
        entry: dict[str, str] = {}
        for var, child in item.value.items():
            if not _VAR_NAME.fullmatch(var) or var in ("include", "exclude"):
                raise ctx.fail(child, f"{ikey}.{var}", "matrix variables are named with letters, digits, _ and - "
                                                       "(up to 64)")
            if variables is not None and var not in variables:
                raise ctx.fail(child, f"{ikey}.{var}", "exclude names the matrix's own variables "
                                                       f"({', '.join(sorted(variables)) or 'none'})")
            entry[var] = _matrix_value(ctx, child, f"{ikey}.{var}")
        out.append((entry, item))
    return out


def _matrix(ctx: _Ctx, node: _Node) -> tuple[tuple[MatrixCombo, ...], set[str]]:
    if not isinstance(node.value, dict):
        raise ctx.fail(node, "matrix", "must be a mapping: variable -> list of values (and include, exclude)")
    fields: dict[str, _Node] = node.value
    base: dict[str, list[str]] = {}
    for var, child in fields.items():
        if var in ("include", "exclude"):
            continue
        key = f"matrix.{var}"
        if not _VAR_NAME.fullmatch(var):
            raise ctx.fail(child, key, "matrix variables are named with letters, digits, _ and - (up to 64)")
        values: list[str] = []
        for i, item in enumerate(ctx.items(child, key, 1, MAX_MATRIX_VALUES, "values")):
            value = _matrix_value(ctx, item, f"{key}[{i}]")
            if value in values:
                raise ctx.fail(item, f"{key}[{i}]", f"{value!r} is already in the list")
            values.append(value)
        base[var] = values
    product = 1
    for values in base.values():
        product *= len(values)
    if len(base) > MAX_MATRIX_VARS:
        raise ctx.fail(node, "matrix", f"at most {MAX_MATRIX_VARS} variables")
    if product > MAX_PRODUCT:
        raise ctx.fail(node, "matrix", f"the lists make {product} combinations: at most {MAX_PRODUCT} before "
                                       f"exclude, and {MAX_COMBOS} in the end")
    combos: list[dict[str, str]] = [dict(zip(base, values)) for values in itertools.product(*base.values())] \
        if base else []
    if "exclude" in fields:
        for i, (entry, item) in enumerate(_matrix_entries(ctx, fields["exclude"], "matrix.exclude", set(base))):
            kept = [c for c in combos if any(c[k] != v for k, v in entry.items())]
            if len(kept) == len(combos):
                raise ctx.fail(item, f"matrix.exclude[{i}]", "matches no combination")
            combos = kept
    extra: list[dict[str, str]] = []
    includes = _matrix_entries(ctx, fields["include"], "matrix.include", None) if "include" in fields else []
    for entry, item in includes:  # GitHub's rule, against the original combinations only
        fits = [c for c in combos if all(c[k] == v for k, v in entry.items() if k in base)]
        for c in fits:
            c.update((k, v) for k, v in entry.items() if k not in base)
        if not fits:
            extra.append(dict(entry))
    variables = set(base) | {k for entry, _ in includes for k in entry}
    if not variables:
        raise ctx.fail(node, "matrix", "names no variable (write e.g. python: [\"3.11\", \"3.12\"])")
    if len(variables) > MAX_MATRIX_VARS:
        raise ctx.fail(node, "matrix", f"at most {MAX_MATRIX_VARS} variables (with those include adds)")
    envs: dict[str, str] = {}
    for var in [*base, *(k for entry, _ in includes for k in entry)]:
        other = envs.setdefault(_matrix_env_name(var), var)
        if other != var:
            raise ctx.fail(fields.get(var, node), f"matrix.{var}",
                           f"{var!r} and {other!r} both make {_matrix_env_name(var)}")
    result = [MatrixCombo(c) for c in [*combos, *extra]]
    for combo in result:
        for var, value in combo.items():
            ctx.widths[var] = max(ctx.widths.get(var, 0), len(value.encode()))
    if not result:
        raise ctx.fail(node, "matrix", "exclude removes every combination")
    if len(result) > MAX_COMBOS:
        raise ctx.fail(node, "matrix", f"{len(result)} combinations: at most {MAX_COMBOS}")
    if len(set(result)) != len(result):
        raise ctx.fail(fields.get("include", node), "matrix.include", "makes the same combination twice")
    return tuple(result), variables


def _secrets(ctx: _Ctx, node: _Node) -> tuple[str, ...]:
    names: list[str] = []
    for i, item in enumerate(ctx.items(node, "secrets", 0, MAX_SECRETS, "names")):
        key = f"secrets[{i}]"
        name = ctx.scalar_text(item, key, booleans=False)
        if not _ENV_NAME.fullmatch(name) or len(name) > MAX_NAME_CHARS:
            raise ctx.fail(item, key, f"{name[:64]!r}: names are letters, digits and _, not starting with a digit")
        if name in names:
            raise ctx.fail(item, key, f"{name!r} is already listed")
        names.append(name)
    return tuple(names)


def _env(ctx: _Ctx, node: _Node, key: str, variables: set[str], secrets: tuple[str, ...]) -> dict[str, str]:
    if not isinstance(node.value, dict):
        raise ctx.fail(node, key, "must be a mapping NAME: value")
    if len(node.value) > MAX_ENV:
        raise ctx.fail(node, key, f"at most {MAX_ENV} variables")
    env: dict[str, str] = {}
    for name, child in node.value.items():
        nkey = f"{key}.{name}"
        if not _ENV_NAME.fullmatch(name):
            raise ctx.fail(child, nkey, "names are letters, digits and _, not starting with a digit")
        if name in secrets:
            raise ctx.fail(child, nkey, "is a secret: secrets reach every step under their own name")
        if isinstance(child.value, (list, dict)):
            raise ctx.fail(child, nkey, "must be a string, a number or a boolean")
        value = ctx.scalar_text(child, nkey, booleans=True)
        ctx.template(child, nkey, value, variables)
        env[name] = value
    return env


def _path_problem(path: str, *, glob: bool) -> str | None:
    if not path.strip():
        return "must not be empty"
    if len(path) > MAX_PATH_CHARS or _CONTROL.search(path):
        return f"must be at most {MAX_PATH_CHARS} characters on one line"
    if "${{" in path:
        return "expressions (${{ ... }}) are substituted only in name, run, env values and cache.key"
    if path.startswith("/"):
        return "must be relative to the workspace (no leading /)"
    if path.startswith("~"):
        return "must be relative to the workspace (~ is not expanded)"
    if "\\" in path:
        return "separate folders with /, not \\"
    if ".." in path.split("/"):
        return "must stay inside the workspace (no ..)"
    if path.startswith("!"):
        return "exclusions (!pattern) are not supported"
    if not glob and any(c in path for c in "*?["):
        return "must be a path, not a glob pattern"
    return None


def _norm_path(path: str) -> str:
    return "/".join(p for p in path.split("/") if p not in ("", ".")) or "."


def _path(ctx: _Ctx, node: _Node, key: str, *, glob: bool) -> str:
    path = ctx.scalar_text(node, key, booleans=False)
    problem = _path_problem(path, glob=glob)
    if problem:
        raise ctx.fail(node, key, f"{path[:80]!r}: {problem}")
    return _norm_path(path)


def _paths(ctx: _Ctx, node: _Node, key: str, lo: int, hi: int) -> tuple[str, ...]:
    if isinstance(node.value, dict) and "paths" in node.value:
        raise ctx.fail(node, key, "must be a list of paths (GitLab's artifacts: paths: [...] is written "
                                  f"{key}: [...])")
    out: list[str] = []
    for i, item in enumerate(ctx.items(node, key, lo, hi, "paths")):
        path = _path(ctx, item, f"{key}[{i}]", glob=True)
        if path in out:
            raise ctx.fail(item, f"{key}[{i}]", f"{path!r} is already listed")
        out.append(path)
    return tuple(out)


def _budget(ctx: _Ctx, node: _Node) -> Decimal:
    v = node.value
    if isinstance(v, bool) or not isinstance(v, (str, int, float)) or node.text is None:
        raise ctx.fail(node, "budget", "must be a decimal number of tokens, e.g. \"0.5\"")
    try:
        units = parse_amount(node.text.strip())
    except MoneyError as exc:
        raise ctx.fail(node, "budget", f"{exc} (write a decimal number of tokens, e.g. \"0.5\")") from None
    if units == 0:
        raise ctx.fail(node, "budget", "must be more than 0")
    return Decimal(format_amount(units))


def _default_name(run: str, index: int, variables: set[str]) -> str:
    """The first line of the script (shortened), as GitHub shows a step without a name."""
    line = next((ln.strip() for ln in run.splitlines() if ln.strip()), "")
    line = _CONTROL.sub(" ", line)
    if len(line) > 80:
        line = line[:79] + "…"
    try:
        parts, refs = _parse_template(line)
        if all(isinstance(p, MatrixRef) and p.name in variables for _, p in refs):
            return line
    except _TemplateError:
        pass
    return line.split("${{")[0].strip() or f"step {index + 1}"


def _steps(ctx: _Ctx, node: _Node, variables: set[str], secrets: tuple[str, ...],
           job_timeout: float) -> tuple[Step, ...]:
    if isinstance(node.value, dict):
        raise ctx.fail(node, "steps", "must be a list of steps (- name: ..., run: ...), not a mapping")
    steps = []
    for i, item in enumerate(ctx.items(node, "steps", 1, MAX_STEPS, "steps")):
        key = f"steps[{i}]"
        if not isinstance(item.value, dict):
            raise ctx.fail(item, key, "must be a mapping with run: (a shell script) and optionally name, timeout, "
                                      "env, continue_on_error, workdir")
        fields = ctx.mapping(item, key, _STEP_KEYS, why=_STEP_WHY)
        if "run" not in fields:
            raise ctx.fail(item, f"{key}.run", "is required: the step's shell script")
        for a, b in (("continue_on_error", "continue-on-error"), ("workdir", "working-directory")):
            if a in fields and b in fields:
                raise ctx.fail(fields[b], f"{key}.{b}", f"{a} is given too: write one of them")
        run = ctx.scalar_text(fields["run"], f"{key}.run", booleans=False)
        if not run.strip():
            raise ctx.fail(fields["run"], f"{key}.run", "must not be empty")
        ctx.template(fields["run"], f"{key}.run", run, variables)
        if "name" in fields:
            name = ctx.line_text(fields["name"], f"{key}.name")
            ctx.template(fields["name"], f"{key}.name", name, variables)
        else:
            name = _default_name(run, i, variables)
        timeout = DEFAULT_STEP_TIMEOUT_S if DEFAULT_STEP_TIMEOUT_S <= job_timeout else job_timeout
        if "timeout" in fields:
            timeout = ctx.duration(fields["timeout"], f"{key}.timeout")
            if timeout > job_timeout:
                raise ctx.fail(fields["timeout"], f"{key}.timeout", f"is longer than the job's timeout "
                                                                    f"({_show_duration(job_timeout)}): raise timeout")
        env = _env(ctx, fields["env"], f"{key}.env", variables, secrets) if "env" in fields else {}
        continue_on_error, workdir = False, "."
        for spelling in ("continue_on_error", "continue-on-error"):
            if spelling in fields:
                continue_on_error = ctx.boolean(fields[spelling], f"{key}.{spelling}")
        for spelling in ("workdir", "working-directory"):
            if spelling in fields:
                workdir = _path(ctx, fields[spelling], f"{key}.{spelling}", glob=False)
        steps.append(Step(name=name, run=run, timeout_s=timeout, env=MappingProxyType(env),
                          continue_on_error=continue_on_error, workdir=workdir, line=item.line))
    return tuple(steps)


def _caches(ctx: _Ctx, node: _Node, variables: set[str]) -> tuple[Cache, ...]:
    if isinstance(node.value, dict):
        entries = [(node, "cache")]
    elif isinstance(node.value, list):
        entries = [(item, f"cache[{i}]") for i, item in enumerate(ctx.items(node, "cache", 0, MAX_CACHES, "caches"))]
    else:
        raise ctx.fail(node, "cache", "must be a mapping {key, paths} or a list of them")
    caches: list[Cache] = []
    for item, key in entries:
        fields = ctx.mapping(item, key, {"key", "paths"}, why=_CACHE_WHY)
        for need in ("key", "paths"):
            if need not in fields:
                raise ctx.fail(item, f"{key}.{need}", "is required")
        text = ctx.scalar_text(fields["key"], f"{key}.key", booleans=False)
        if not text.strip() or len(text) > MAX_CACHE_KEY_CHARS or _CONTROL.search(text):
            raise ctx.fail(fields["key"], f"{key}.key", f"must be 1 to {MAX_CACHE_KEY_CHARS} characters on one line")
        cache_key = CacheKey(ctx.template(fields["key"], f"{key}.key", text, variables, hash_files=True))
        for i, other in enumerate(caches):
            if other.key == cache_key:
                raise ctx.fail(fields["key"], f"{key}.key", f"the same key as cache[{i}]")
        caches.append(Cache(cache_key, _paths(ctx, fields["paths"], f"{key}.paths", 1, MAX_CACHE_PATHS)))
    return tuple(caches)


def _kind(value: object) -> str:
    return {bool: "a boolean", type(None): "empty", list: "a list", dict: "a mapping"}.get(type(value),
                                                                                         type(value).__name__)
