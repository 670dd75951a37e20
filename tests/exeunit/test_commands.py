"""Exe-script parsing: every limit, every field error, garbage in -> only ScriptError."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exeunit.commands import (
    COMMAND_TYPES,
    DEFAULT_TIMEOUT_S,
    MAX_ARGV_BYTES,
    MAX_ARGV_ITEMS,
    MAX_COMMANDS,
    MAX_ENV_BYTES,
    MAX_ENV_VARS,
    MAX_TIMEOUT_S,
    Command,
    Deploy,
    Run,
    Start,
    Terminate,
    TransferIn,
    TransferOut,
    command_to_wire,
    parse_command,
    parse_script,
    script_to_wire,
)
from exeunit.errors import ExeUnitError, ScriptError
from yagna.core.wire import decode, encode

IMAGE = "sha256:" + "ab" * 32
DIGEST = "0f" * 32

FULL_WIRE: list[dict[str, Any]] = [
    {"deploy": {"image": IMAGE, "env": {"A": "1"}, "name": "python:3.12-slim"}},
    {"start": {}},
    {"transfer_in": {"to": "/work/in/data.csv", "sha256": DIGEST, "size": 12}},
    {"run": {"argv": ["python", "-c", "print(1)"], "env": {"B": "2"}, "workdir": "/work/sub", "timeout": 60.0}},
    {"transfer_out": {"from": "/work/out/result.json"}},
    {"terminate": {}},
]
FULL_COMMANDS: list[Command] = [
    Deploy(image=IMAGE, env={"A": "1"}, name="python:3.12-slim"),
    Start(),
    TransferIn(dest="/work/in/data.csv", sha256=DIGEST, size=12),
    Run(argv=["python", "-c", "print(1)"], env={"B": "2"}, workdir="/work/sub", timeout_s=60.0),
    TransferOut(src="/work/out/result.json"),
    Terminate(),
]


def run(**body: Any) -> list[dict[str, Any]]:
    return [{"run": {"argv": ["true"], **body}}]


def script_error(obj: object) -> ScriptError:
    with pytest.raises(ScriptError) as info:
        parse_script(obj)
    assert type(info.value) is ScriptError
    return info.value


# -- the good path ---------------------------------------------------------------------


def test_full_script_parses_and_round_trips() -> None:
    assert parse_script(FULL_WIRE) == FULL_COMMANDS
    assert script_to_wire(FULL_COMMANDS) == FULL_WIRE
    assert parse_script(decode(encode(script_to_wire(FULL_COMMANDS)))) == FULL_COMMANDS


def test_defaults() -> None:
    (cmd,) = parse_script([{"run": {"argv": ["ls"]}}])
    assert cmd == Run(argv=["ls"])
    assert isinstance(cmd, Run)
    assert (cmd.env, cmd.workdir, cmd.timeout_s) == ({}, "/work", DEFAULT_TIMEOUT_S)
    (dep,) = parse_script([{"deploy": {"image": IMAGE}}])
    assert dep == Deploy(image=IMAGE) and isinstance(dep, Deploy) and dep.name is None
    assert command_to_wire(dep) == {"deploy": {"image": IMAGE, "env": {}}}
    assert parse_script([{"deploy": {"image": IMAGE, "name": None}}]) == [Deploy(image=IMAGE)]


def test_null_body_means_empty() -> None:
    assert parse_script([{"start": None}, {"terminate": None}]) == [Start(), Terminate()]


def test_canonical_wire_form() -> None:
    wire = script_to_wire(parse_script(run(timeout=60, workdir="/work//a/")))
    assert wire == [{"run": {"argv": ["true"], "env": {}, "workdir": "/work/a", "timeout": 60.0}}]
    assert isinstance(wire[0]["run"]["timeout"], float)


@pytest.mark.parametrize("workdir", ["/work", "/tmp", "/work/", "/tmp/x/y", "/work/a/./b"])
def test_workdirs_accepted(workdir: str) -> None:
    (cmd,) = parse_script(run(workdir=workdir))
    assert isinstance(cmd, Run) and cmd.workdir.startswith(("/work", "/tmp"))


def test_kinds_name_the_commands() -> None:
    assert sorted(COMMAND_TYPES) == ["cache_restore", "cache_save", "deploy", "run", "serve", "start", "terminate",
                                     "transfer_in", "transfer_out"]
    for kind, cls in COMMAND_TYPES.items():
        assert cls.kind == kind


def test_commands_do_not_alias_caller_containers() -> None:
    argv, env = ["a"], {"X": "1"}
    cmd = Run(argv=argv, env=env)
    argv.append("b")
    env["Y"] = "2"
    assert cmd.argv == ["a"] and cmd.env == {"X": "1"}


def test_constructors_validate_too() -> None:
    with pytest.raises(ScriptError) as info:
        Run(argv=[])
    assert info.value.field == "argv" and info.value.index is None
    with pytest.raises(ScriptError):
        Deploy(image="python:3")
    with pytest.raises(ScriptError) as info2:
        TransferIn(dest="/etc/x", sha256=DIGEST, size=1)
    assert info2.value.field == "to"


# -- limits at their edges ----------------------------------------------------------------


def test_script_length_limits() -> None:
    assert len(parse_script([{"start": {}}] * MAX_COMMANDS)) == MAX_COMMANDS
    assert "at most" in str(script_error([{"start": {}}] * (MAX_COMMANDS + 1)))
    assert "at least one" in str(script_error([]))


def test_argv_limits() -> None:
    parse_script(run(argv=["x"] * MAX_ARGV_ITEMS))
    assert script_error(run(argv=["x"] * (MAX_ARGV_ITEMS + 1))).field == "argv"
    parse_script(run(argv=["x" * MAX_ARGV_BYTES]))
    assert script_error(run(argv=["x" * (MAX_ARGV_BYTES - 1), "é"])).field == "argv"  # bytes, not chars
    assert script_error(run(argv=["a", "b\0c"])).field == "argv[1]"
    assert script_error(run(argv=[""])).field == "argv[0]"
    parse_script(run(argv=["echo", ""]))


def test_env_limits() -> None:
    many = {f"V{i}": "x" for i in range(MAX_ENV_VARS)}
    parse_script(run(env=many))
    assert script_error(run(env={**many, "EXTRA": "x"})).field == "env"
    assert script_error(run(env={"BIG": "x" * MAX_ENV_BYTES})).field == "env"
    assert script_error(run(env={"A": "x\0y"})).field == "env.A"
    assert script_error(run(env={"A": 1})).field == "env.A"
    for name in ("1A", "A-B", "", "A B", "Ä", "A=B"):
        assert script_error(run(env={name: "x"})).field == "env"
    for name in ("_", "a", "A_1", "_x9"):
        parse_script(run(env={name: "x"}))
    assert script_error([{"deploy": {"image": IMAGE, "env": {"9": "x"}}}]).field == "env"


@pytest.mark.parametrize(
    ("timeout", "ok"),
    [
        (1, True),
        (0.001, True),
        (MAX_TIMEOUT_S, True),
        (int(MAX_TIMEOUT_S), True),
        (0, False),
        (-1, False),
        (MAX_TIMEOUT_S + 0.001, False),
        (math.inf, False),
        (math.nan, False),
        (True, False),
        ("60", False),
        (None, False),
        (10**400, False),
    ],
)
def test_timeout(timeout: object, ok: bool) -> None:
    if ok:
        (cmd,) = parse_script(run(timeout=timeout))
        assert isinstance(cmd, Run) and cmd.timeout_s == float(timeout)  # type: ignore[arg-type]
    else:
        assert script_error(run(timeout=timeout)).field == "timeout"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"to": "/work/in/x", "sha256": DIGEST.upper(), "size": 1}, "sha256"),
        ({"to": "/work/in/x", "sha256": DIGEST[:-1], "size": 1}, "sha256"),
        ({"to": "/work/in/x", "sha256": DIGEST, "size": -1}, "size"),
        ({"to": "/work/in/x", "sha256": DIGEST, "size": 1.0}, "size"),
        ({"to": "/work/in/x", "sha256": DIGEST, "size": True}, "size"),
        ({"to": "/work/in/x", "sha256": DIGEST, "size": 2**70}, "size"),
        ({"to": "/work/in/../../etc/passwd", "sha256": DIGEST, "size": 1}, "to"),
        ({"to": "/work/in", "sha256": DIGEST, "size": 1}, "to"),
        ({"to": "/work/out/x", "sha256": DIGEST, "size": 1}, "to"),
        ({"to": "in/x", "sha256": DIGEST, "size": 1}, "to"),
        ({"sha256": DIGEST, "size": 1}, "to"),
        ({"to": "/work/in/x", "size": 1}, "sha256"),
        ({"to": "/work/in/x", "sha256": DIGEST}, "size"),
        ({"to": "/work/in/x", "sha256": DIGEST, "size": 1, "mode": 7}, "mode"),
    ],
)
def test_transfer_in_fields(body: dict[str, Any], field: str) -> None:
    err = script_error([{"start": {}}, {"transfer_in": body}])
    assert (err.index, err.field) == (1, field)


@pytest.mark.parametrize(
    ("wire", "field"),
    [
        ([{"transfer_out": {"from": "/work/in/x"}}], "from"),
        ([{"transfer_out": {"from": "/work/out/../in/x"}}], "from"),
        ([{"transfer_out": {}}], "from"),
        ([{"deploy": {"image": "python:3.12"}}], "image"),
        ([{"deploy": {"image": "sha256:" + "AB" * 32}}], "image"),
        ([{"deploy": {"image": IMAGE, "name": ""}}], "name"),
        ([{"deploy": {"image": IMAGE, "name": "x" * 257}}], "name"),
        ([{"deploy": {"image": IMAGE, "name": 3}}], "name"),
        ([{"deploy": {"image": IMAGE, "net": []}}], "net"),
        ([{"deploy": {}}], "image"),
        ([{"start": {"x": 1}}], "x"),
        ([{"terminate": {"now": True}}], "now"),
        (run(workdir="/etc"), "workdir"),
        (run(workdir="/work/../etc"), "workdir"),
        (run(workdir="work"), "workdir"),
        (run(workdir="/workshop"), "workdir"),
        (run(workdir=7), "workdir"),
        (run(argv="ls -l"), "argv"),
        (run(argv=[1]), "argv[0]"),
        (run(env=[]), "env"),
        ([{"run": {}}], "argv"),
        (run(stdin="x"), "stdin"),
        ([{"explode": {}}], "explode"),
        ([{"start": []}], "start"),
    ],
)
def test_field_errors_name_the_field(wire: list[Any], field: str) -> None:
    err = script_error(wire)
    assert (err.index, err.field) == (0, field)
    assert f"command 0: field {field!r}" in str(err)


@pytest.mark.parametrize("item", [1, "run", None, [], {}, {"start": {}, "terminate": {}}, {1: {}}])
def test_malformed_items(item: object) -> None:
    err = script_error([{"start": {}}, item])
    assert err.index == 1


@pytest.mark.parametrize("obj", [None, {}, "[]", 1, {"run": {}}, b"x"])
def test_not_a_list(obj: object) -> None:
    assert script_error(obj).index is None


def test_lone_surrogates_are_script_errors() -> None:
    assert script_error(run(argv=["\ud800"])).field == "argv[0]"
    assert script_error(run(env={"A": "\udfff"})).field == "env.A"


def test_parse_command_index_is_optional() -> None:
    assert parse_command({"start": {}}) == Start()
    with pytest.raises(ScriptError) as info:
        parse_command({"start": 1})
    assert info.value.index is None


def test_script_error_is_an_exeunit_error() -> None:
    assert isinstance(script_error(None), ExeUnitError)
    assert script_error(None).code == "bad-script"


# -- properties ---------------------------------------------------------------------------

_json_scalar = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
_json = st.recursive(
    _json_scalar,
    lambda inner: st.lists(inner, max_size=5)
    | st.dictionaries(st.text(max_size=10) | st.integers(), inner, max_size=5),
    max_leaves=30,
)
_keys = st.sampled_from(
    ["image", "env", "name", "argv", "workdir", "timeout", "to", "sha256", "size", "from", "x"]
)
_values = (
    _json
    | st.sampled_from([IMAGE, DIGEST, "/work/in/x", "/work/out/y", "/work", "/tmp/a", 0, 1, 60.0])
    | st.lists(st.text(max_size=5), max_size=4)
    | st.dictionaries(st.text(max_size=5), st.text(max_size=5) | _json_scalar, max_size=4)
)
_near_commands = st.dictionaries(
    st.sampled_from([*COMMAND_TYPES, "bogus"]), st.dictionaries(_keys, _values, max_size=4) | _json, min_size=1, max_size=2
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(_json | st.lists(_near_commands | _json, max_size=8))
def test_property_garbage_raises_only_script_error(obj: object) -> None:
    try:
        commands = parse_script(obj)
    except ScriptError:
        return
    # whatever it accepted is valid: it round-trips and encodes canonically
    assert parse_script(script_to_wire(commands)) == commands
    encode(script_to_wire(commands))


_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=12)
_env = st.dictionaries(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True), _text, max_size=4)
_hex64 = st.binary(min_size=32, max_size=32).map(bytes.hex)
_name = st.from_regex(r"[a-z0-9._-]{1,12}", fullmatch=True).filter(lambda n: n not in (".", ".."))
_commands = st.one_of(
    st.builds(Deploy, image=_hex64.map(lambda h: "sha256:" + h), env=_env, name=st.none() | _name),
    st.just(Start()),
    st.builds(
        Run,
        argv=st.lists(_text, min_size=1, max_size=5).filter(lambda a: a[0] != ""),
        env=_env,
        workdir=st.sampled_from(["/work", "/tmp"]).flatmap(
            lambda root: st.lists(_name, max_size=3).map(lambda parts: "/".join([root, *parts]))
        ),
        timeout_s=st.floats(min_value=0.001, max_value=MAX_TIMEOUT_S),
    ),
    st.builds(
        TransferIn,
        dest=st.lists(_name, min_size=1, max_size=3).map(lambda p: "/work/in/" + "/".join(p)),
        sha256=_hex64,
        size=st.integers(min_value=0, max_value=2**40),
    ),
    st.builds(TransferOut, src=st.lists(_name, min_size=1, max_size=3).map(lambda p: "/work/out/" + "/".join(p))),
    st.just(Terminate()),
)


@given(st.lists(_commands, min_size=1, max_size=10))
def test_property_round_trip(commands: list[Command]) -> None:
    wire = script_to_wire(commands)
    assert parse_script(wire) == commands
    assert script_to_wire(parse_script(wire)) == wire
    # through canonical CBOR and back, unchanged
    assert parse_script(decode(encode(wire))) == commands


def _only_plain_types(obj: object) -> bool:
    if isinstance(obj, dict):
        return all(isinstance(k, str) and _only_plain_types(v) for k, v in obj.items())
    if isinstance(obj, list):
        return all(_only_plain_types(v) for v in obj)
    return obj is None or isinstance(obj, (str, int, float, bool))


@given(st.lists(_commands, min_size=1, max_size=10))
def test_property_wire_form_is_plain(commands: list[Command]) -> None:
    assert _only_plain_types(script_to_wire(commands))


# -- services: deploy's ports, serve -------------------------------------------------------------
IMAGE_ID = "sha256:" + "ab" * 32


def test_a_service_script_round_trips() -> None:
    script = [{"deploy": {"image": IMAGE_ID, "ports": [80, 8080]}}, {"start": {}},
              {"serve": {"args": ["-f"], "env": {"A": "1"}, "health": {"http": 80, "path": "/healthz"}}}]
    commands = parse_script(script)
    assert commands[0].ports == (80, 8080)  # type: ignore[union-attr]
    serve = commands[2]
    assert serve.argv == [] and serve.args == ["-f"] and serve.workdir == ""  # type: ignore[union-attr]
    assert serve.health == {"http": 80, "path": "/healthz"}  # type: ignore[union-attr]
    assert parse_script(script_to_wire(commands)) == commands
    assert "ports" not in script_to_wire(parse_script([{"deploy": {"image": IMAGE_ID}}]))[0]["deploy"]


@pytest.mark.parametrize(("command", "field", "words"), [
    ({"deploy": {"image": IMAGE_ID, "ports": [0]}}, "ports[0]", "1..65535"),
    ({"deploy": {"image": IMAGE_ID, "ports": [80, 80]}}, "ports", "twice"),
    ({"deploy": {"image": IMAGE_ID, "ports": list(range(1, 18))}}, "ports", "at most 16"),
    ({"deploy": {"image": IMAGE_ID, "ports": "80"}}, "ports", "list"),
    ({"serve": {"argv": ["a"], "args": ["b"]}}, "args", "not both"),
    ({"serve": {"health": {"tcp": 80, "http": 80}}}, "health", "exactly one"),
    ({"serve": {"health": {"tcp": 80, "path": "/"}}}, "health.path", "only for an 'http'"),
    ({"serve": {"health": {"http": 80, "path": "no-slash"}}}, "health.path", "absolute"),
    ({"serve": {"health": {"udp": 53}}}, "health", "exactly one"),
    ({"serve": {"workdir": "/etc"}}, "workdir", "/work"),
])
def test_service_fields_are_checked(command: dict, field: str, words: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ScriptError) as info:
        parse_script([command])
    assert info.value.field == field and words in str(info.value)


def test_volumes_round_trip_and_are_checked() -> None:
    vols = [{"name": "data", "path": "/var/lib/db/", "size": 1 << 20, "persistent": True},
            {"name": "cache", "path": "/cache", "size": 4096}]
    (cmd,) = parse_script([{"deploy": {"image": IMAGE_ID, "volumes": vols}}])
    assert cmd.volumes == ({"name": "data", "path": "/var/lib/db", "size": 1 << 20, "persistent": True},  # type: ignore[union-attr]
                           {"name": "cache", "path": "/cache", "size": 4096, "persistent": False})
    assert parse_script(script_to_wire([cmd])) == [cmd]


@pytest.mark.parametrize(("volume", "field", "words"), [
    ({"name": "d", "path": "/work/x", "size": 1}, "volumes[0].path", "may not hold a volume"),
    ({"name": "d", "path": "/", "size": 1}, "volumes[0].path", "may not hold a volume"),
    ({"name": "d", "path": "/proc/x", "size": 1}, "volumes[0].path", "may not hold a volume"),
    ({"name": "d", "path": "/.yagna/tunnel", "size": 1}, "volumes[0].path", "may not hold a volume"),
    ({"name": "D!", "path": "/data", "size": 1}, "volumes[0].name", "a-z"),
    ({"name": "d", "path": "/data", "size": 0}, "volumes[0].size", "bytes"),
    ({"name": "d", "path": "/data", "size": 1, "persistent": "yes"}, "volumes[0].persistent", "true or false"),
    ({"name": "d", "path": "/data"}, "volumes[0]", "a map of"),
    ({"name": "d", "path": "/data", "size": 1, "owner": "root"}, "volumes[0]", "a map of"),
])
def test_bad_volumes_are_refused(volume: dict, field: str, words: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ScriptError) as info:
        parse_script([{"deploy": {"image": IMAGE_ID, "volumes": [volume]}}])
    assert info.value.field == field and words in str(info.value)
