"""Job files: what a valid one gives, and errors that name the field and the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from requestor_sdk.errors import JobFileError
from requestor_sdk.jobfile import load_job, parse_duration, parse_job

GOOD = '''\
[job]
image = "local/busybox:1"
command = ["sh", "-c", "md5sum /work/in/{f} > /work/out/{f}.md5; echo {x}"]
timeout = "90s"
redundancy = 2
budget = "5"
max_providers = 3
inputs = ["data/{f}"]
outputs = ["{f}.md5"]
env = { NAME = "{x}" }
max_price_cpu_hour = "0.1"
deny = ["12D3KooWbad"]

[[task]]
params = { f = "a.txt", x = "1" }

[[task]]
id = "second"
params = { f = "b.txt", x = 2 }
'''


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "data").mkdir(exist_ok=True)
    for name in ("a.txt", "b.txt"):
        (tmp_path / "data" / name).write_text(name)
    path = tmp_path / "job.toml"
    path.write_text(text)
    return path


def test_good_job(tmp_path: Path) -> None:
    job = load_job(write(tmp_path, GOOD))
    assert job.image == "local/busybox:1" and job.timeout == 90 and job.redundancy == 2 and job.budget == "5"
    assert job.market.max_price_cpu_hour == "0.1" and job.market.deny == frozenset({"12D3KooWbad"})
    t1, t2 = job.tasks
    assert t1.id == "task-001" and t2.id == "second"
    assert t1.argv == ["sh", "-c", "md5sum /work/in/a.txt > /work/out/a.txt.md5; echo 1"]
    assert t1.inputs == {"a.txt": tmp_path / "data" / "a.txt"}
    assert t1.outputs == ["a.txt.md5"] and t2.env == {"NAME": "2"} and t2.params == {"f": "b.txt", "x": "2"}


def error(tmp_path: Path, text: str) -> JobFileError:
    with pytest.raises(JobFileError) as info:
        load_job(write(tmp_path, text))
    return info.value


@pytest.mark.parametrize(("old", "new", "field", "line", "words"), [
    ('timeout = "90s"', 'timeout = "soon"', "job.timeout", 4, "duration"),
    ('redundancy = 2', 'redundancy = 0', "job.redundancy", 5, "from 1"),
    ('redundancy = 2', 'redundancy = 5', "job.max_providers", 7, "at least redundancy"),
    ('budget = "5"', 'budget = 5.0', "job.budget", 6, "expected str or int"),
    ('budget = "5"', 'budget = "-1"', "job.budget", 6, "decimal string"),
    ('budget = "5"\n', '', "job.budget", None, "required"),
    ('max_price_cpu_hour = "0.1"', 'max_price_cpu_hour = "cheap"', "job.max_price_cpu_hour", 11, "decimal"),
    ('command = [', 'comand = [', "job.comand", 3, "unknown field"),
    ('inputs = ["data/{f}"]', 'inputs = ["data/{f}.missing"]', "job.inputs", 8, "not a file"),
    ('params = { f = "a.txt", x = "1" }', 'params = { f = "a.txt" }', "task[1].params", 15, "no 'x'"),
    ('id = "second"', 'id = "a/b"', "task[2].id", 18, "letters"),
    ('id = "second"', 'id = "task-001"', "task[2].id", 18, "used by another"),
    ('id = "second"', 'name = "x"', "task[2].name", 18, "unknown field"),
    ('outputs = ["{f}.md5"]', 'outputs = ["../x"]', "job.outputs", 9, "without '..'"),
])
def test_errors_name_field_and_line(tmp_path: Path, old: str, new: str, field: str, line: int | None,
                                    words: str) -> None:
    assert old in GOOD
    err = error(tmp_path, GOOD.replace(old, new, 1))
    assert err.field == field, str(err)
    if line is not None:
        assert err.line == line, str(err)
        assert f"job.toml:{line}: {field}:" in str(err)
    assert words in str(err)


def test_toml_syntax_error_has_the_line(tmp_path: Path) -> None:
    err = error(tmp_path, GOOD.replace('budget = "5"', 'budget = "5'))
    assert err.line == 6 and "not valid TOML" in str(err)


def test_no_tasks_and_no_job(tmp_path: Path) -> None:
    assert "no tasks" in str(error(tmp_path, GOOD.split("[[task]]")[0]))
    assert error(tmp_path, "[[task]]\nparams = {}\n").field == "job"


def test_parse_without_a_path_resolves_inputs_from_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, GOOD)
    job = parse_job(GOOD)
    assert job.tasks[0].inputs["a.txt"] == tmp_path / "data" / "a.txt"


@pytest.mark.parametrize(("text", "seconds"), [(60, 60.0), ("60", 60.0), ("1.5m", 90.0), ("1h", 3600.0),
                                               ("500ms", 0.5), (" 2 s ", 2.0)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "0", "-1s", "1d", "25h", True, "1 2"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)
