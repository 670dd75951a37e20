"""CI pipeline files (``yagna pipeline run``): what is read, matrix expansion, cache keys, and an error
naming key and line for everything else (requestor_sdk/pipeline_file.py)."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from requestor_sdk.pipeline_file import (
    MAX_FILE_BYTES, Cache, CacheKey, HashFiles, Job, MatrixCombo, MatrixRef, Pipeline, PipelineError, Step,
    cache_key_value, hash_files, load_pipeline, parse_duration, parse_pipeline,
)

SMALLEST = """\
image: local/busybox:1
steps:
  - name: build
    run: |
      make
  - name: test
    run: make test
artifacts:
  - out/app
"""

FULL = """\
name: ci
image: local/python:3.12
timeout: 45m
budget: "0.5"
env:
  LANG: C.UTF-8
  PY: py${{ matrix.python }}
  DEBUG: false
  RETRIES: 3
secrets: [PYPI_TOKEN, GH_TOKEN]
matrix:
  python: ["3.11", "3.12"]
  os: [alpine, debian]
  exclude:
    - python: "3.11"
      os: debian
  include:
    - python: "3.13"
      os: alpine
      experimental: true
steps:
  - name: install ${{ matrix.python }}
    run: |
      pip install -r requirements.txt
      echo "on ${{ matrix.os }}"
    timeout: 5m
  - run: pytest -q --os=${{ matrix.os }} ${{ matrix.experimental }}
    env:
      PYTEST_ADDOPTS: -x
      WHERE: ${{ matrix.os }}
    continue-on-error: true
    working-directory: ./src/
  - name: build
    run: python -m build
    timeout: 1m30s
    workdir: src
    continue_on_error: false
artifacts:
  - dist/*.whl
  - reports/**
cache:
  - key: pip-${{ matrix.python }}-${{ hashFiles('requirements.txt', 'setup.cfg') }}
    paths: [.cache/pip]
  - key: static
    paths: [node_modules, ./vendor/]
"""


def _error(text: str) -> PipelineError:
    with pytest.raises(PipelineError) as info:
        parse_pipeline(text)
    return info.value


# -- what is read -----------------------------------------------------------------------------------


def test_the_smallest_file() -> None:
    p = parse_pipeline(SMALLEST)
    assert p.image == "local/busybox:1"
    assert [(s.name, s.run) for s in p.steps] == [("build", "make\n"), ("test", "make test")]
    assert [s.line for s in p.steps] == [3, 6]
    assert all(s.timeout_s == 600.0 and not s.continue_on_error and s.workdir == "." and dict(s.env) == {}
               for s in p.steps)
    assert p.artifacts == ("out/app",)
    assert (p.timeout_s, p.budget, p.secrets, p.caches, dict(p.env), p.name) == (3600.0, None, (), (), {}, None)
    assert p.matrix == (MatrixCombo(),)
    (job,) = p.jobs()
    assert job.combo == {} and job.label == "" and job.steps == p.steps and dict(job.env) == {}


def test_a_full_github_actions_like_file() -> None:
    p = parse_pipeline(FULL, source="ci.yml")
    assert p.name == "ci" and p.image == "local/python:3.12"
    assert p.timeout_s == 45 * 60 and p.budget == Decimal("0.5") and str(p.budget) == "0.5"
    assert dict(p.env) == {"LANG": "C.UTF-8", "PY": "py${{ matrix.python }}", "DEBUG": "false", "RETRIES": "3"}
    assert p.secrets == ("PYPI_TOKEN", "GH_TOKEN")
    assert p.artifacts == ("dist/*.whl", "reports/**")
    install, test, build = p.steps
    assert install == Step(name="install ${{ matrix.python }}",
                           run='pip install -r requirements.txt\necho "on ${{ matrix.os }}"\n',
                           timeout_s=300.0, env={}, continue_on_error=False, workdir=".", line=22)
    assert test.name == "pytest -q --os=${{ matrix.os }} ${{ matrix.experimental }}"  # the first line of run
    assert (test.timeout_s, test.continue_on_error, test.workdir, test.line) == (600.0, True, "src", 27)
    assert dict(test.env) == {"PYTEST_ADDOPTS": "-x", "WHERE": "${{ matrix.os }}"}
    assert (build.timeout_s, build.continue_on_error, build.workdir) == (90.0, False, "src")
    assert p.caches == (
        Cache(CacheKey(("pip-", MatrixRef("python"), "-", HashFiles(("requirements.txt", "setup.cfg")))),
              (".cache/pip",)),
        Cache(CacheKey(("static",)), ("node_modules", "vendor")),
    )
    assert [c.label() for c in p.matrix] == ["python=3.11,os=alpine", "python=3.12,os=alpine",
                                             "python=3.12,os=debian", "python=3.13,os=alpine,experimental=true"]

    jobs = p.jobs()
    assert len(jobs) == 4 and all(isinstance(j, Job) for j in jobs)
    first, last = jobs[0], jobs[-1]
    assert dict(first.env) == {"MATRIX_PYTHON": "3.11", "MATRIX_OS": "alpine", "LANG": "C.UTF-8", "PY": "py3.11",
                               "DEBUG": "false", "RETRIES": "3"}
    assert [s.name for s in first.steps] == ["install 3.11", "pytest -q --os=alpine", "build"]
    assert first.steps[0].run == 'pip install -r requirements.txt\necho "on alpine"\n'
    assert first.steps[1].run == "pytest -q --os=alpine "  # a variable this combination lacks is empty
    assert dict(first.steps[1].env) == {"PYTEST_ADDOPTS": "-x", "WHERE": "alpine"}
    assert last.steps[1].run == "pytest -q --os=alpine true"
    assert last.env["MATRIX_EXPERIMENTAL"] == "true"
    assert first.caches[0].key == CacheKey(("pip-3.11-", HashFiles(("requirements.txt", "setup.cfg"))))
    assert first.caches[1] == p.caches[1]
    # the template stays in the pipeline; substitution happens per job
    assert p.steps[0].name == "install ${{ matrix.python }}"


def test_a_pipeline_is_immutable_and_comparable() -> None:
    a, b = parse_pipeline(FULL), parse_pipeline(FULL)
    assert a == b and isinstance(a, Pipeline)
    with pytest.raises(AttributeError):
        a.image = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        a.env["X"] = "1"  # type: ignore[index]
    assert hash(MatrixCombo({"a": "1", "b": "2"})) == hash(MatrixCombo([("b", "2"), ("a", "1")]))


def test_yaml_is_read_like_github_reads_it() -> None:
    """The YAML 1.2 core schema: no Norway problem, 3.10 stays 3.10 where a string is expected."""
    p = parse_pipeline("""\
image: local/busybox:1
env: {A: yes, B: 3.10, C: True, D: 0777, E: off, F: 1e3, G: "", H: 2024-01-01}
matrix:
  country: [no, se]
  python: [3.10, 3.9]
steps:
  - run: echo ${{ matrix.country }} ${{ matrix.python }}
    timeout: 0777
""")
    assert dict(p.env) == {"A": "yes", "B": "3.10", "C": "true", "D": "0777", "E": "off", "F": "1e3", "G": "",
                           "H": "2024-01-01"}
    assert [c.label() for c in p.matrix] == ["country=no,python=3.10", "country=no,python=3.9",
                                             "country=se,python=3.10", "country=se,python=3.9"]
    assert p.steps[0].timeout_s == 777.0  # 0777 is decimal in YAML 1.2
    assert _error("image: x\non: push\nsteps: [{run: x}]\n").key == "on"  # `on` is a key, not True


def test_anchors_aliases_and_merge_keys() -> None:
    p = parse_pipeline("""\
image: local/busybox:1
env: &common
  CI: "1"
steps:
  - &build
    name: build
    run: make
    timeout: 2m
    env: *common
  - <<: *build
    name: again
  - <<: [{timeout: 3m, run: first}, {run: second, name: merged}]
""")
    assert dict(p.env) == {"CI": "1"}
    assert [(s.name, s.run, s.timeout_s, dict(s.env)) for s in p.steps] == [
        ("build", "make", 120.0, {"CI": "1"}), ("again", "make", 120.0, {"CI": "1"}), ("merged", "first", 180.0, {})]
    # templates may live in ignored top-level keys (GitLab's .hidden, compose's x-name)
    p = parse_pipeline("image: x\n.defaults: &d {timeout: 1m, run: a}\nx-env: &e {A: '1'}\n"
                       "steps:\n  - <<: *d\n    env: *e\n")
    assert (p.steps[0].run, p.steps[0].timeout_s, dict(p.steps[0].env)) == ("a", 60.0, {"A": "1"})
    # a merged key is checked like a written one, at the line where it is written
    e = _error("image: x\n.base: &base {run: a, uses: b}\nsteps:\n  - <<: *base\n")
    assert (e.key, e.line) == ("steps[0].uses", 2)
    e = _error("image: x\nsteps:\n  - &a {run: a}\n  - <<: *a\n    <<: {uses: b}\n")
    assert (e.key, e.line) == ("steps[1].uses", 5)


def test_durations() -> None:
    for text, seconds in [(90, 90.0), (1.5, 1.5), ("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("1h", 3600.0),
                          ("1h30m", 5400.0), ("1h 30m 10s", 5410.0), ("500ms", 0.5), ("1.5m", 90.0),
                          ("2m30s", 150.0), (" 5 m ", 300.0), ("24h", 86400.0)]:
        assert parse_duration(text) == seconds, text
    for bad in [0, -1, "0s", "25h", "1d", "10 min", "1h1h", "1m30", "m", "", "1.h", True, None, [1], 86401,
                10**400, float("inf"), float("nan"), "9" * 100]:
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert parse_duration("2h", limit=7200) == 7200.0


@pytest.mark.parametrize("value", [60, 1.5, "60", "60s", "1.5m", "1h", "500ms", "24h", " 2 m ", "0.25s"])
def test_durations_agree_with_the_job_file(value: object) -> None:
    from requestor_sdk.jobfile import parse_duration as job_duration

    assert parse_duration(value) == job_duration(value)


def test_step_and_job_timeouts() -> None:
    p = parse_pipeline("image: x\ntimeout: 5m\nsteps: [{run: a}, {run: b, timeout: 300}]\n")
    assert [s.timeout_s for s in p.steps] == [300.0, 300.0]  # the default is capped by the job's timeout
    e = _error("image: x\ntimeout: 5m\nsteps:\n  - run: a\n    timeout: 6m\n")
    assert (e.key, e.line) == ("steps[0].timeout", 5) and "longer than the job's timeout (5m)" in str(e)


@pytest.mark.parametrize("written,expected", [('"0.5"', "0.5"), ("0.5", "0.5"), ("2", "2"), ('"1e-3"', "0.001"),
                                              ('"0.250"', "0.25"), (".5", "0.5")])
def test_budget(written: str, expected: str) -> None:
    p = parse_pipeline(f"image: x\nbudget: {written}\nsteps: [{{run: x}}]\n")
    assert p.budget == Decimal(expected) and str(p.budget) == expected


def test_paths_are_normalised() -> None:
    p = parse_pipeline("image: x\nartifacts: [./out//app/, 'a b/c', '.', 'x/**/*.log', 'r[0-9].txt']\n"
                       "steps: [{run: x, workdir: ./src/./app/}]\n")
    assert p.artifacts == ("out/app", "a b/c", ".", "x/**/*.log", "r[0-9].txt")
    assert p.steps[0].workdir == "src/app"


def test_an_image_id() -> None:
    image = "sha256:" + "ab" * 32
    assert parse_pipeline(f"image: {image}\nsteps: [{{run: x}}]\n").image == image
    for ok in ["busybox", "local/busybox:1", "registry.example.com:5000/team/app:v1.2-rc_3",
               "app@sha256:" + "0" * 64, "ubuntu:22.04"]:
        assert parse_pipeline(f"image: {ok}\nsteps: [{{run: x}}]\n").image == ok


def test_default_step_names() -> None:
    p = parse_pipeline("image: x\nmatrix: {v: [a]}\nsteps:\n"
                       "  - run: \"\\n\\n  echo ${{ matrix.v }}  \\nmore\"\n"
                       f"  - run: echo {'y' * 100}\n"
                       f"  - run: echo {'y' * 70} ${{{{ matrix.v }}}}\n"
                       "  - run: ${{ matrix.v }}" + "z" * 90 + "\n"
                       "  - run: ${{ '" + "z" * 90 + "' }}\n")
    names = [s.name for s in p.steps]
    assert names[0] == "echo ${{ matrix.v }}"
    assert names[1] == "echo " + "y" * 74 + "…"
    assert names[2] == "echo " + "y" * 70  # shortened before an expression it would cut
    assert names[3] == "${{ matrix.v }}" + "z" * 64 + "…"
    assert names[4] == "step 5"  # the cut would fall inside the expression
    assert [s.name for s in p.jobs()[0].steps][:1] == ["echo a"]


# -- the matrix ---------------------------------------------------------------------------------------


def test_matrix_include_follows_githubs_rules() -> None:
    """The example of GitHub's documentation ("Expanding or adding matrix configurations")."""
    p = parse_pipeline("""\
image: x
matrix:
  fruit: [apple, pear]
  animal: [cat, dog]
  include:
    - color: green
    - color: pink
      animal: cat
    - fruit: apple
      shape: circle
    - fruit: banana
    - fruit: banana
      animal: cat
steps: [{run: "echo ${{ matrix.fruit }} ${{ matrix.color }} ${{ matrix.shape }}"}]
""")
    assert [dict(c) for c in p.matrix] == [
        {"fruit": "apple", "animal": "cat", "color": "pink", "shape": "circle"},
        {"fruit": "apple", "animal": "dog", "color": "green", "shape": "circle"},
        {"fruit": "pear", "animal": "cat", "color": "pink"},
        {"fruit": "pear", "animal": "dog", "color": "green"},
        {"fruit": "banana"},
        {"fruit": "banana", "animal": "cat"},
    ]
    assert [j.steps[0].run for j in p.jobs()] == ["echo apple pink circle", "echo apple green circle",
                                                  "echo pear pink ", "echo pear green ", "echo banana  ",
                                                  "echo banana  "]


def test_matrix_exclude_and_substitution() -> None:
    p = parse_pipeline("""\
image: x
env: {TARGET: "${{ matrix.os }}-${{ matrix.node-version }}"}
matrix:
  os: [linux, mac, windows]
  node-version: [18, 20]
  exclude:
    - os: windows
    - os: mac
      node-version: 18
steps:
  - name: test on ${{ matrix.os }}
    run: |
      nvm use ${{ matrix.node-version }}
      echo ${{ '${{' }} literal }}
    env: {NODE: "${{matrix.node-version}}"}
""")
    assert [c.label() for c in p.matrix] == ["os=linux,node-version=18", "os=linux,node-version=20",
                                             "os=mac,node-version=20"]
    jobs = p.jobs()
    assert [j.steps[0].name for j in jobs] == ["test on linux", "test on linux", "test on mac"]
    assert jobs[2].steps[0].run == "nvm use 20\necho ${{ literal }}\n"
    assert dict(jobs[2].steps[0].env) == {"NODE": "20"}
    assert dict(jobs[2].env) == {"MATRIX_OS": "mac", "MATRIX_NODE_VERSION": "20", "TARGET": "mac-20"}


def test_matrix_of_only_include_and_env_overriding_matrix_variables() -> None:
    p = parse_pipeline("image: x\nenv: {MATRIX_A: mine}\nmatrix:\n  include: [{a: 1}, {a: 2, b: x}]\n"
                       "steps: [{run: 'echo ${{ matrix.b }}'}]\n")
    assert [dict(c) for c in p.matrix] == [{"a": "1"}, {"a": "2", "b": "x"}]
    assert [dict(j.env) for j in p.jobs()] == [{"MATRIX_A": "mine"}, {"MATRIX_A": "mine", "MATRIX_B": "x"}]


# -- caches -------------------------------------------------------------------------------------------


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def test_cache_keys_render_with_a_reader() -> None:
    files = {"package-lock.json": b"lock", "a/yarn.lock": b"yarn", "b.txt": b""}
    reads: list[str] = []

    def read(path: str) -> bytes:
        reads.append(path)
        if path not in files:
            raise FileNotFoundError(path)
        return files[path]

    p = parse_pipeline("""\
image: x
cache:
  key: deps-${{ hashFiles('package-lock.json', 'missing', 'a/yarn.lock') }}-v1
  paths: [node_modules]
steps: [{run: x}]
""")
    (cache,) = p.caches
    assert cache.key.parts == ("deps-", HashFiles(("package-lock.json", "missing", "a/yarn.lock")), "-v1")
    expected = hashlib.sha256(_sha(b"yarn") + _sha(b"lock")).hexdigest()  # sorted: a/yarn.lock first
    assert cache_key_value(cache.key, read) == f"deps-{expected}-v1"
    assert sorted(reads) == ["a/yarn.lock", "missing", "package-lock.json"]
    # the order of the arguments does not matter, a missing file contributes nothing, none at all is ""
    assert hash_files(["package-lock.json", "a/yarn.lock"], read) == expected
    assert hash_files(["nope"], read) == ""
    assert hash_files(["b.txt"], read) == hashlib.sha256(_sha(b"")).hexdigest()
    # contents are not just concatenated
    assert hash_files(["x", "y"], {"x": b"ab", "y": b""}.__getitem__) != \
        hash_files(["x", "y"], {"x": b"a", "y": b"b"}.__getitem__)
    # globs are expanded by the caller's function
    assert hash_files(["**/*.lock"], read, expand=lambda pattern: ["a/yarn.lock"]) == \
        hashlib.sha256(_sha(b"yarn")).hexdigest()
    assert cache_key_value(CacheKey(("plain",)), read) == "plain"


def test_cache_keys_with_the_matrix() -> None:
    p = parse_pipeline(FULL)
    key = p.caches[0].key
    with pytest.raises(ValueError, match="matrix.python"):
        cache_key_value(key, lambda path: b"")
    files = {"requirements.txt": b"r", "setup.cfg": b"s"}
    digest = hashlib.sha256(_sha(b"r") + _sha(b"s")).hexdigest()
    assert cache_key_value(key, files.__getitem__, combo={"python": "3.12"}) == f"pip-3.12-{digest}"
    assert [cache_key_value(j.caches[0].key, files.__getitem__) for j in p.jobs()] == \
        [f"pip-{v}-{digest}" for v in ("3.11", "3.12", "3.12", "3.13")]


def test_cache_key_text_round_trips() -> None:
    p = parse_pipeline("image: x\nmatrix: {v: [a]}\ncache:\n"
                       "  - {key: \"k-${{ matrix.v }}-${{ hashFiles('it''s', 'b') }}-${{ '${{' }}\", paths: [c]}\n"
                       "steps: [{run: x}]\n")
    key = p.caches[0].key
    assert key.parts == ("k-", MatrixRef("v"), "-", HashFiles(("it's", "b")), "-${{")
    again = parse_pipeline(f"image: x\nmatrix: {{v: [a]}}\ncache: {{key: {json.dumps(key.text)}, "
                           "paths: [c]}\nsteps: [{run: x}]\n")
    assert again.caches[0].key == key


# -- errors -------------------------------------------------------------------------------------------

BAD = [
    # (the file, the key named, its line, words of the message)
    ("steps: [{run: x}]\n", "image", 1, "is required"),
    ("image: x\n", "steps", 1, "is required"),
    ("image: x\nsteps: make\n", "steps", 2, "must be a list of steps"),
    ("image: x\nsteps:\n  build: {run: make}\n", "steps", 2, "not a mapping"),
    ("image: x\nsteps: []\n", "steps", 2, "1 to 100 steps"),
    ("image: x\nsteps:\n  - make\n", "steps[0]", 3, "must be a mapping with run"),
    ("image: x\nsteps:\n  - run: a\n  - name: b\n", "steps[1].run", 4, "is required"),
    ("image: x\nsteps:\n  - run: '   '\n", "steps[0].run", 3, "must not be empty"),
    ("image: x\nsteps:\n  - run: [a, b]\n", "steps[0].run", 3, "not a list"),
    ("image: x\nsteps:\n  - run: a\n  - run: b\n    timeout: soon\n", "steps[1].timeout", 5, "not a duration"),
    ("image: x\nsteps:\n  - run: b\n    timeout: 25h\n", "steps[0].timeout", 4, "at most 24h"),
    ("image: x\nsteps:\n  - run: b\n    timeout: -5\n", "steps[0].timeout", 4, "more than 0"),
    ("image: x\ntimeout: forever\nsteps: [{run: b}]\n", "timeout", 2, "not a duration"),
    ("image: x\nbudget: -1\nsteps: [{run: b}]\n", "budget", 2, "negative"),
    ("image: x\nbudget: '-0.5'\nsteps: [{run: b}]\n", "budget", 2, "negative"),
    ("image: x\nbudget: 0\nsteps: [{run: b}]\n", "budget", 2, "more than 0"),
    ("image: x\nbudget: lots\nsteps: [{run: b}]\n", "budget", 2, "not a decimal amount"),
    ("image: x\nbudget: '0.0000000000000000001'\nsteps: [{run: b}]\n", "budget", 2, "18 decimal places"),
    ("image: x\nbudget: true\nsteps: [{run: b}]\n", "budget", 2, "decimal number of tokens"),
    ("image: x\nartifacts: [/etc/passwd]\nsteps: [{run: b}]\n", "artifacts[0]", 2, "no leading /"),
    ("image: x\nartifacts:\n  - out\n  - ../secrets\nsteps: [{run: b}]\n", "artifacts[1]", 4, "no .."),
    ("image: x\nartifacts: [a/../../b]\nsteps: [{run: b}]\n", "artifacts[0]", 2, "no .."),
    ("image: x\nartifacts: ['~/x']\nsteps: [{run: b}]\n", "artifacts[0]", 2, "~ is not expanded"),
    ("image: x\nartifacts: ['!*.map']\nsteps: [{run: b}]\n", "artifacts[0]", 2, "exclusions"),
    ("image: x\nartifacts: ['a\\b']\nsteps: [{run: b}]\n", "artifacts[0]", 2, "separate folders with /"),
    ("image: x\nartifacts: [a, ./a]\nsteps: [{run: b}]\n", "artifacts[1]", 2, "already listed"),
    ("image: x\nartifacts: {paths: [a]}\nsteps: [{run: b}]\n", "artifacts", 2, "GitLab"),
    ("image: x\nartifacts: [" + ", ".join(f"a{i}" for i in range(65)) + "]\nsteps: [{run: b}]\n", "artifacts", 2,
     "at most 64"),
    ("image: x\nsteps:\n  - run: b\n    workdir: ../up\n", "steps[0].workdir", 4, "no .."),
    ("image: x\nsteps:\n  - run: b\n    workdir: /abs\n", "steps[0].workdir", 4, "relative"),
    ("image: x\nsteps:\n  - run: b\n    workdir: 'src/*'\n", "steps[0].workdir", 4, "not a glob"),
    ("image: x\nsteps:\n  - run: b\n    workdir: a\n    working-directory: b\n", "steps[0].working-directory", 5,
     "write one of them"),
    ("image: x\nsteps:\n  - uses: actions/checkout@v4\n", "steps[0].uses", 3, "actions (uses) are not supported"),
    ("image: x\nsteps:\n  - run: a\n    with: {x: 1}\n", "steps[0].with", 4, "inputs of actions"),
    ("image: x\nsteps:\n  - run: a\n    if: always()\n", "steps[0].if", 4, "conditions (if) are not supported"),
    ("image: x\nsteps:\n  - run: a\n    shell: bash\n", "steps[0].shell", 4, "sh -e"),
    ("image: x\nsteps:\n  - run: a\n    timeout-minutes: 5\n", "steps[0].timeout-minutes", 4, "timeout: 10m"),
    ("image: x\nsteps:\n  - run: a\n    colour: red\n", "steps[0].colour", 4, "unknown key (known: "),
    ("image: x\nservices: {db: {image: postgres}}\nsteps: [{run: a}]\n", "services", 2, "service containers"),
    ("image: x\nneeds: [build]\nsteps: [{run: a}]\n", "needs", 2, "no dependencies"),
    ("image: x\nif: github.ref\nsteps: [{run: a}]\n", "if", 2, "conditions"),
    ("image: x\nruns-on: ubuntu-latest\nsteps: [{run: a}]\n", "runs-on", 2, "the image is the machine"),
    ("image: x\njobs: {build: {}}\nsteps: [{run: a}]\n", "jobs", 2, "one job"),
    ("image: x\nstrategy: {matrix: {a: [1]}}\nsteps: [{run: a}]\n", "strategy", 2, "write matrix:"),
    ("image: x\nimage: y\nsteps: [{run: a}]\n", "image", 2, "repeated (first on line 1)"),
    ("image: x\nsteps:\n  - run: a\n    env:\n      A: 1\n      A: 2\n", "steps[0].env.A", 6,
     "repeated (first on line 5)"),
    ("image: x\nsteps:\n\t- run: make\n", "", 3, "indent with spaces"),
    ("image: x\nsteps:\n  - run: make\n   name: x\n", "", 4, "not valid YAML"),
    ("image: x\nsteps: [{run: a}\n", "", 3, "not valid YAML"),
    ("image: x\n---\nimage: y\n", "", 2, "not valid YAML"),
    ("image: x\nsteps: [{run: *nowhere}]\n", "", 2, "not valid YAML"),
    ("image: x\nsteps: [{run: \"a\x01\"}]\n", "", 2, "characters are not allowed"),
    ("", "", 1, "empty"),
    ("# nothing\n", "", 1, "empty"),
    ("- image: x\n", "", 1, "a mapping with image and steps"),
    ("just words\n", "", 1, "a mapping with image and steps"),
    ("image: [a]\nsteps: [{run: a}]\n", "image", 1, "not a list"),
    ("image: 'Bad Image'\nsteps: [{run: a}]\n", "image", 1, "local Docker image name"),
    ("image: -rm\nsteps: [{run: a}]\n", "image", 1, "local Docker image name"),
    ("image: sha256:abc\nsteps: [{run: a}]\n", "image", 1, "64 hex digits"),
    ("image: local/${{ matrix.x }}\nsteps: [{run: a}]\n", "image", 1, "substituted only in"),
    ("image: x\nenv: [A=1]\nsteps: [{run: a}]\n", "env", 2, "must be a mapping"),
    ("image: x\nenv:\n  1A: x\nsteps: [{run: a}]\n", "env.1A", 3, "letters, digits and _"),
    ("image: x\nenv:\n  A: {b: c}\nsteps: [{run: a}]\n", "env.A", 3, "a string, a number or a boolean"),
    ("image: x\nenv:\n  A:\nsteps: [{run: a}]\n", "env.A", 3, "write \"\" for an empty one"),
    ("image: x\nenv:\n  TOKEN: x\nsecrets: [TOKEN]\nsteps: [{run: a}]\n", "env.TOKEN", 3, "is a secret"),
    ("image: x\nsecrets: [A, B, A]\nsteps: [{run: a}]\n", "secrets[2]", 2, "already listed"),
    ("image: x\nsecrets: [my-token]\nsteps: [{run: a}]\n", "secrets[0]", 2, "letters, digits and _"),
    ("image: x\nsecrets: TOKEN\nsteps: [{run: a}]\n", "secrets", 2, "must be a list of names"),
    ("image: x\nsteps:\n  - run: a\n    continue_on_error: yes\n", "steps[0].continue_on_error", 4, "true or false"),
    ("image: x\nsteps:\n  - run: a\n    name: \"two\\nlines\"\n", "steps[0].name", 4, "on one line"),
    ("image: x\nsteps:\n  - run: a\n    name: true\n", "steps[0].name", 4, "quote it"),
    # expressions
    ("image: x\nsteps:\n  - run: |\n      make\n      echo ${{ matrix.os }}\n", "steps[0].run", 5,
     "there is no matrix"),
    ("image: x\nmatrix: {os: [a]}\nsteps:\n  - name: ok\n    run: |\n      make\n\n      echo ${{ matrix.oss }}\n",
     "steps[0].run", 8, "no such matrix variable (the matrix has os)"),
    ("image: x\nmatrix: {os: [a]}\nsteps:\n  - name: on ${{ matrix.arch }}\n    run: a\n", "steps[0].name", 4,
     "matrix.arch"),
    ("image: x\nmatrix: {os: [a]}\nenv: {A: '${{ matrix.b }}'}\nsteps: [{run: a}]\n", "env.A", 3, "matrix.b"),
    ("image: x\nsteps:\n  - run: echo ${{ secrets.TOKEN }}\n", "steps[0].run", 3, "write $NAME in run"),
    ("image: x\nsteps:\n  - run: echo ${{ github.sha }}\n", "steps[0].run", 3, "no github context"),
    ("image: x\nsteps:\n  - run: echo ${{ 1 + 1 }}\n", "steps[0].run", 3, "unsupported expression"),
    ("image: x\nsteps:\n  - run: echo ${{ matrix.os\n", "steps[0].run", 3, "not closed"),
    ("image: x\nsteps:\n  - run: echo ${{ hashFiles('a') }}\n", "steps[0].run", 3, "only for cache.key"),
    # the matrix
    ("image: x\nmatrix: [a, b]\nsteps: [{run: a}]\n", "matrix", 2, "must be a mapping"),
    ("image: x\nmatrix: {}\nsteps: [{run: a}]\n", "matrix", 2, "names no variable"),
    ("image: x\nmatrix:\n  os: linux\nsteps: [{run: a}]\n", "matrix.os", 3, "must be a list of values"),
    ("image: x\nmatrix:\n  os: []\nsteps: [{run: a}]\n", "matrix.os", 3, "1 to 64 values"),
    ("image: x\nmatrix:\n  os: [a, a]\nsteps: [{run: a}]\n", "matrix.os[1]", 3, "already in the list"),
    ("image: x\nmatrix:\n  os: [{name: a}]\nsteps: [{run: a}]\n", "matrix.os[0]", 3, "objects are not supported"),
    ("image: x\nmatrix:\n  os: [~]\nsteps: [{run: a}]\n", "matrix.os[0]", 3, "must be a string"),
    ("image: x\nmatrix:\n  o s: [a]\nsteps: [{run: a}]\n", "matrix.o s", 3, "letters, digits, _ and -"),
    ("image: x\nmatrix:\n  a: [1, 2, 3, 4, 5, 6, 7, 8]\n  b: [1, 2, 3, 4, 5, 6, 7, 8]\n  c: [1, 2]\n"
     "steps: [{run: a}]\n", "matrix", 2, "128 combinations: at most 64"),
    ("image: x\nmatrix:\n" + "".join(f"  v{i}: [1, 2, 3, 4]\n" for i in range(7)) + "steps: [{run: a}]\n",
     "matrix", 2, "at most 4096 before exclude"),
    ("image: x\nmatrix:\n" + "".join(f"  v{i}: [1]\n" for i in range(9)) + "steps: [{run: a}]\n",
     "matrix", 2, "at most 8 variables"),
    ("image: x\nmatrix:\n  a: [1]\n  include: [{b: 1, c: 2, d: 3, e: 4, f: 5, g: 6, h: 7, i: 8}]\nsteps: [{run: a}]\n",
     "matrix", 2, "at most 8 variables (with those include adds)"),
    ("image: x\nmatrix:\n  a: [1, 2]\n  exclude:\n    - a: 3\nsteps: [{run: a}]\n", "matrix.exclude[0]", 5,
     "matches no combination"),
    ("image: x\nmatrix:\n  a: [1, 2]\n  exclude:\n    - b: 1\nsteps: [{run: a}]\n", "matrix.exclude[0].b", 5,
     "the matrix's own variables (a)"),
    ("image: x\nmatrix:\n  a: [1]\n  exclude:\n    - a: 1\nsteps: [{run: a}]\n", "matrix", 2, "removes every"),
    ("image: x\nmatrix:\n  a: [1]\n  include:\n    - {}\nsteps: [{run: a}]\n", "matrix.include[0]", 5,
     "must be a mapping"),
    ("image: x\nmatrix:\n  a: [1]\n  include: [{a: 2}, {a: 2}]\nsteps: [{run: a}]\n", "matrix.include", 4,
     "same combination twice"),
    ("image: x\nmatrix:\n  a-b: [1]\n  a_b: [2]\nsteps: [{run: a}]\n", "matrix.a_b", 4, "MATRIX_A_B"),
    ("image: x\nmatrix:\n  a: ['${{ x }}']\nsteps: [{run: a}]\n", "matrix.a[0]", 3, "substituted only in"),
    # caches
    ("image: x\ncache: pip\nsteps: [{run: a}]\n", "cache", 2, "must be a mapping {key, paths}"),
    ("image: x\ncache: {paths: [a]}\nsteps: [{run: a}]\n", "cache.key", 2, "is required"),
    ("image: x\ncache:\n  - {key: k}\nsteps: [{run: a}]\n", "cache[0].paths", 3, "is required"),
    ("image: x\ncache: {key: k, paths: [/root/.cache]}\nsteps: [{run: a}]\n", "cache.paths[0]", 2, "relative"),
    ("image: x\ncache:\n  key: k\n  paths: [a]\n  restore-keys: [k-]\nsteps: [{run: a}]\n", "cache.restore-keys", 5,
     "exactly"),
    ("image: x\ncache:\n  key: k\n  path: a\nsteps: [{run: a}]\n", "cache.path", 4, "write paths:"),
    ("image: x\ncache:\n  key: k-${{ hashFiles() }}\n  paths: [a]\nsteps: [{run: a}]\n", "cache.key", 3,
     "at least one path"),
    ("image: x\ncache:\n  key: k-${{ hashFiles(\"a\") }}\n  paths: [a]\nsteps: [{run: a}]\n", "cache.key", 3,
     "single quotes"),
    ("image: x\ncache:\n  key: k-${{ hashFiles('../a') }}\n  paths: [a]\nsteps: [{run: a}]\n", "cache.key", 3,
     "no .."),
    ("image: x\ncache:\n  key: ${{ matrix.python }}\n  paths: [a]\nsteps: [{run: a}]\n", "cache.key", 3,
     "no matrix"),
    ("image: x\ncache:\n  - {key: k, paths: [a]}\n  - {key: k, paths: [b]}\nsteps: [{run: a}]\n", "cache[1].key", 4,
     "the same key as cache[0]"),
    ("image: x\ncache: [" + ", ".join(f"{{key: k{i}, paths: [a]}}" for i in range(9)) + "]\nsteps: [{run: a}]\n",
     "cache", 2, "at most 8 caches"),
    # YAML features we refuse, and bounds
    ("image: !!binary aGk=\nsteps: [{run: a}]\n", "image", 1, "unsupported YAML tag '!!binary'"),
    ("image: x\nsteps: !reference [.setup, script]\n", "steps", 2, "GitLab's !reference"),
    ("image: x\nsteps: !!set {a, b}\n", "steps", 2, "unsupported YAML tag"),
    ("image: x\n? [a, b]\n: c\nsteps: [{run: a}]\n", "", 2, "keys must be strings"),
    ("image: x\nenv: \"\\0\"\nsteps: [{run: a}]\n", "env", 2, "NUL"),
    ("image: x\nsteps:\n  - run: " + "[" * 40 + "\n", "", 3, "nested more than 32 levels deep"),
    ("image: x\na: &a [*a]\nsteps: [{run: a}]\n", "a" + "[0]" * 32, 2, "nested more than 32 levels deep"),
    ("image: x\nx: &x {<<: *x}\nsteps: [{run: a}]\n", "x", 2, "nested more than 32 levels deep"),
    ("image: x\nsteps:\n  - run: '" + "y" * (64 * 1024 + 1) + "'\n", "steps[0].run", 3, "longer than 64 KiB"),
    ("image: x\nsteps: [" + ", ".join(["{run: a}"] * 101) + "]\n", "steps", 2, "1 to 100 steps"),
    ("image: x\nmatrix: {v: ['" + "v" * 256 + "']}\nsteps:\n  - run: '" + "${{matrix.v}}" * 300 + "'\n",
     "steps[0].run", 4, "once the matrix is substituted"),
    ("image: x\nmatrix: {v: ['" + "v" * 256 + "']}\nsteps:\n" + ("  - run: '" + "${{matrix.v}}" * 200 + "'\n") * 25,
     "steps[20].run", 24, "pass 1 MiB once the matrix is substituted"),
]


@pytest.mark.parametrize("libyaml", [True, False], ids=["libyaml", "pure-python"])
@pytest.mark.parametrize("text,key,line,words", BAD, ids=[f"{i}-{b[1] or 'yaml'}" for i, b in enumerate(BAD)])
def test_every_error_names_key_and_line(monkeypatch: pytest.MonkeyPatch, libyaml: bool, text: str, key: str,
                                        line: int, words: str) -> None:
    if not libyaml:
        monkeypatch.delattr(yaml, "CSafeLoader", raising=False)
    e = _error(text)
    assert (e.key, e.line) == (key, line), str(e)
    assert words in e.message, str(e)
    assert str(e).startswith(f".yagna/pipeline.yml:{line}: " + (f"{key}: " if key else ""))
    assert e.source == ".yagna/pipeline.yml" and isinstance(e, ValueError)


def test_deep_nesting_without_libyaml(monkeypatch: pytest.MonkeyPatch) -> None:
    """PyYAML's pure-Python composer recurses: the nesting is bounded before it runs."""
    monkeypatch.delattr(yaml, "CSafeLoader", raising=False)
    assert _error("a: " + "[" * 100_000).message == "nested more than 32 levels deep"
    assert parse_pipeline(FULL) == parse_pipeline(FULL)


def test_an_alias_bomb_is_refused_quickly() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    e = _error("\n".join(lines) + "\nimage: x\nsteps: [{run: a}]\n")
    assert "aliases repeat more than 10000 values" in e.message and e.line is not None


def test_too_big_a_file() -> None:
    text = "image: x\nsteps: [{run: a}]\n# " + "x" * MAX_FILE_BYTES + "\n"
    e = _error(text)
    assert (e.key, e.line) == ("", None) and "at most 256 KiB" in str(e)
    assert _error("image: x\nsteps: [{run: a}]\n# " + "é" * (MAX_FILE_BYTES // 2)).line is None  # counted in bytes


@pytest.mark.parametrize("libyaml", [True, False], ids=["libyaml", "pure-python"])
def test_a_character_yaml_refuses_is_reported_at_its_line(monkeypatch: pytest.MonkeyPatch, libyaml: bool) -> None:
    if not libyaml:
        monkeypatch.delattr(yaml, "CSafeLoader", raising=False)
    e = _error("image: é\nsteps:\n  - run: \"é\x01\"\n")
    assert (e.key, e.line) == ("", 3) and "characters are not allowed" in e.message


def test_a_lone_surrogate_is_an_error_not_a_crash() -> None:
    e = _error("image: x\nsteps: [{run: \"\ud800\"}]\n")
    assert e.line == 2


def test_load_pipeline(tmp_path: Path) -> None:
    f = tmp_path / "pipeline.yml"
    f.write_text(SMALLEST)
    assert load_pipeline(f) == parse_pipeline(SMALLEST)
    f.write_text("image: x\nsteps: 1\n")
    with pytest.raises(PipelineError, match=r"pipeline\.yml:2: steps: must be a list") as info:
        load_pipeline(str(f))
    assert info.value.source == str(f)
    with pytest.raises(PipelineError, match="cannot read the pipeline file") as info:
        load_pipeline(tmp_path / "missing.yml")
    assert info.value.line is None
    with pytest.raises(PipelineError, match="cannot read"):
        load_pipeline(tmp_path)
    with pytest.raises(PipelineError, match="cannot read"):
        load_pipeline("nul\x00in/the/path")
    f.write_bytes(b"image: x\nsteps:\n  - run: \xff\n")
    with pytest.raises(PipelineError, match="not UTF-8") as info:
        load_pipeline(f)
    assert info.value.line == 3
    f.write_bytes(b"#" * (MAX_FILE_BYTES + 1))
    with pytest.raises(PipelineError, match="at most 256 KiB"):
        load_pipeline(f)


# -- any input gives a Pipeline or a PipelineError --------------------------------------------------


def _total(text: str) -> None:
    try:
        p = parse_pipeline(text)
    except PipelineError as exc:
        assert exc.line is None or exc.line >= 1
        str(exc)
        return
    for job in p.jobs():
        assert len(job.steps) == len(p.steps)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_random_text_gives_a_pipeline_or_a_pipeline_error(text: str) -> None:
    _total(text)


_YAMLISH = st.lists(st.sampled_from(list("image:steps-run matrix${{}}[]{},'\"&*<|>!#?%@`\t\n x.0123") + [
    "\n  - ", "\n    ", "image: x\n", "steps:\n", "  - run: ", "matrix:\n", "${{ matrix.a }}", "&a ", "*a", "<<: ",
    "hashFiles('a')", "cache:\n", "include:", "exclude:"]), max_size=60).map("".join)

_KEYS = st.sampled_from(["image", "steps", "run", "name", "env", "matrix", "include", "exclude", "cache", "key",
                         "paths", "timeout", "budget", "secrets", "artifacts", "workdir", "continue_on_error",
                         "a", "A", "uses", "os"])
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**30), st.floats(allow_nan=True),
                     st.sampled_from(["x", "local/busybox:1", "1h30m", "0.5", "-1", "${{ matrix.a }}", "a/../b",
                                      "${{ hashFiles('a') }}", "/abs", "", "${{", "}}"]),
                     st.text(max_size=8))
_DOCS = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=5),
                     max_leaves=25)


@settings(max_examples=200, deadline=None)
@given(_YAMLISH)
def test_yaml_like_text_gives_a_pipeline_or_a_pipeline_error(text: str) -> None:
    _total(text)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_KEYS, _DOCS, max_size=8))
def test_random_documents_give_a_pipeline_or_a_pipeline_error(doc: dict[str, object]) -> None:
    doc.setdefault("image", "local/busybox:1")
    _total(yaml.safe_dump(doc, allow_unicode=True))
