"""Fuzz the SDK's parsers: batch job files (TOML), an agreement's pricing as the daemon reports it,
and the daemon's ``node.json`` the SDK reads to find it."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from market.presets import Preset, offer_properties
from requestor_sdk.budget import Pricing
from requestor_sdk.errors import BudgetError, DaemonNotFound, JobFileError
from requestor_sdk.jobfile import parse_job
from requestor_sdk.locate import locate_in
from yagna.core.paths import DataDir

from .strategies import FUZZ, cbor_values, json_values, mutated, only, texts

JOB = """\
[job]
image = "local/busybox:1"
command = ["sh", "-c", "echo {x} {y}"]
timeout = "60s"
redundancy = 2
budget = "5"
max_providers = 3
outputs = ["out-{x}.txt"]
env = { A = "{y}" }
deny = []

[[task]]
params = { x = "1", y = 2 }

[[task]]
id = "second"
params = { x = "a", y = 1.5 }
"""

LINES = JOB.splitlines(keepends=True)
TOML_BITS = ["{x}", "{x:d}", "{x!r}", "{x.real}", "{x[0]}", "{}", "{0}", "{x:{y}}", "{", "}", "[[task]]", "[job]",
             "params = 1", "task = 3", "timeout = -1", "timeout = \"1e9h\"", "budget = 0", "budget = \"-1\"",
             "redundancy = true", "id = \"..\"", "inputs = [\"/etc/passwd\"]", "outputs = [\"../x\"]", "env = { A = 1 }",
             "[task]", "[[job]]", "x = { a = [] }", "\"command\" = []", "deny = [1]", "expiration = \"0.0001s\""]

job_texts = st.one_of(
    texts,
    st.lists(st.one_of(st.sampled_from(LINES), st.sampled_from(TOML_BITS).map(lambda b: b + "\n")), max_size=24).map("".join),
    st.tuples(st.integers(0, len(LINES)), st.sampled_from(TOML_BITS)).map(
        lambda t: "".join(LINES[: t[0]]) + t[1] + "\n" + "".join(LINES[t[0]:])),
    st.tuples(st.integers(0, len(LINES) - 1), st.sampled_from(TOML_BITS)).map(
        lambda t: "".join(LINES[: t[0]]) + LINES[t[0]].replace("{x}", t[1]).replace("\"5\"", t[1]) + "".join(LINES[t[0] + 1:])),
)


@FUZZ
@given(job_texts)
@example(JOB)
@example(JOB.replace("echo {x} {y}", "echo {x:d}"))  # a format spec the value does not take
@example(JOB.replace("echo {x} {y}", "echo {x:{z}}"))  # a nested field params lacks
@example(JOB.replace("echo {x} {y}", "echo {x.real}"))
@example("task = [1]\n[job]\nimage = \"i\"\ncommand = [\"x\"]\nbudget = \"1\"\n")  # a task that is not a table
@example("[job]\nimage = \"i\"\ncommand = [\"x\"]\nbudget = \"1\"\ntask = [1]\n")
@example("[job]\nimage = \"i\"\ncommand = [\"x\"]\nbudget = \"1\"\n[[task]]\nparams = { x = 1 }\n" * 2)
def test_job_file_parser_raises_only_job_file_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        only(JobFileError, parse_job, text, path=Path(d) / "job.toml")


PROPS = offer_properties(Preset("small"), node_name="fuzz")


@FUZZ
@given(st.one_of(mutated(PROPS), st.dictionaries(st.text(max_size=30), cbor_values, max_size=4)))
def test_agreement_pricing_reader_raises_only_budget_error(props: dict[str, object]) -> None:
    only(BudgetError, Pricing.from_offer, props)


@FUZZ
@given(st.one_of(mutated({"pid": os.getpid(), "api_url": "http://127.0.0.1:7465", "node_id": "x"}, json_values),
                 json_values).map(json.dumps),
       st.booleans())
@example(json.dumps({"pid": 2**70, "api_url": "x"}), True)
@example(json.dumps({"pid": os.getpid()}), True)
@example(json.dumps([os.getpid()]), True)
@example("[" * 100_000, True)
def test_node_file_reader_raises_only_daemon_not_found(text: str, with_key: bool) -> None:
    with tempfile.TemporaryDirectory() as d:
        data = DataDir(d)
        data.node_file.write_text(text)
        if with_key:
            data.app_key_file.write_text("key\n")
        only(DaemonNotFound, locate_in, data)
