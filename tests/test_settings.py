"""The settings table (yagna/settings.py): precedence, origins, validation with key and line."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from yagna import settings
from yagna.cli.main import service_run
from yagna.settings import FileValues, SettingError, parse_text, resolve

ROOT = Path(__file__).resolve().parent.parent
BOOT_A = "/ip4/198.18.0.10/tcp/7464/p2p/12D3KooWAbc"
BOOT_B = "/ip4/198.18.0.11/tcp/7464/p2p/12D3KooWDef"
FILE = Path("/x/config.toml")


def file_of(text: str) -> FileValues:
    return parse_text(text, FILE)


# -- every flag has a key ----------------------------------------------------------------------------


def test_every_service_run_flag_has_a_setting() -> None:
    """A new `service run` option without a row in the table fails here (add it to yagna/settings.py)."""
    service_run.prepare()  # type: ignore[attr-defined]
    options = {next(o for o in p.opts if o.startswith("--")) for p in service_run.params if isinstance(p, click.Option)}
    missing = sorted(options - set(settings.BY_FLAG) - settings.NOT_SETTINGS)
    assert not missing, f"service run flags without a config key: {missing}"
    stale = sorted(set(settings.BY_FLAG) - options)
    assert not stale, f"settings naming flags service run does not have: {stale}"


def test_service_run_options_take_no_click_default_nor_envvar() -> None:
    """Not given must be known as such, so the environment and the file can fill it."""
    service_run.prepare()  # type: ignore[attr-defined]
    for p in service_run.params:
        if isinstance(p, click.Option) and next(o for o in p.opts if o.startswith("--")) in settings.BY_FLAG:
            assert p.default is None and p.envvar is None, p.name
            s = settings.BY_FLAG[next(o for o in p.opts if o.startswith("--"))]
            assert f"config: {s.key}; env: {s.env}" in (p.help or "")


def test_the_table_is_consistent() -> None:
    for s in settings.SETTINGS:
        assert s.env.startswith("YAGNA_") and s.env == s.env.upper()
        if s.default is not None:
            assert s.kind.check(s.default) == s.default, s.key
        if s.flag:
            assert s.env == "YAGNA_" + s.flag[2:].upper().replace("-", "_")
    # the variables that existed before the table keep their names
    for flag, env in (("--api-port", "YAGNA_API_PORT"), ("--payment-driver", "YAGNA_PAYMENT_DRIVER"),
                      ("--rpc-url", "YAGNA_RPC_URL"), ("--token", "YAGNA_TOKEN"), ("--contract", "YAGNA_CONTRACT"),
                      ("--network-id", "YAGNA_NETWORK_ID")):
        assert settings.BY_FLAG[flag].env == env


def test_docs_list_every_setting() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert settings.markdown_table() in page, "docs/configuration.md is behind: paste `python -m yagna.settings`"


# -- precedence ----------------------------------------------------------------------------------------

CASES = [
    # key, flag value, env text, file text, (flag, env, file, default) expected values
    ("net.target_peers", 3, "5", "[net]\ntarget_peers = 7\n", (3, 5, 7, 8)),
    ("market.anti_entropy_interval", 0.5, "1.5", "[market]\nanti_entropy_interval = 2\n", (0.5, 1.5, 2.0, 3.0)),
    ("net.hole_punching", False, "off", "[net]\nhole_punching = false\n", (False, False, False, True)),
    ("market.subnets", ["f"], "e1, e2", '[market]\nsubnets = ["file"]\n', (["f"], ["e1", "e2"], ["file"], ["public"])),
    ("payment.driver", "erc20", "erc20", '[payment]\ndriver = "erc20"\n', ("erc20", "erc20", "erc20", "testnet-ledger")),
    ("log.file", "/f.log", "/e.log", '[log]\nfile = "/file.log"\n', ("/f.log", "/e.log", "/file.log", None)),
    ("provider.preset.price_cpu_hour", "0.1", "0.2", '[provider.preset]\nprice_cpu_hour = "0.3"\n',
     ("0.1", "0.2", "0.3", "0.025")),
]


@pytest.mark.parametrize(("key", "flag", "env_text", "file_text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_flag_beats_env_beats_file_beats_default(key: str, flag: object, env_text: str, file_text: str,
                                                 expected: tuple[object, object, object, object]) -> None:
    env = {settings.BY_KEY[key].env: env_text}
    f = file_of(file_text)
    layers = [
        ({key: flag}, env, f, "flag"),
        ({}, env, f, "env"),
        ({}, {}, f, "file"),
        ({}, {}, FileValues(), "default"),
    ]
    for (flags, e, fv, origin), want in zip(layers, expected, strict=True):
        got = resolve(flags, e, fv)
        assert (got[key], got.origins[key]) == (want, origin)


def test_bootstrap_flags_add_to_the_files_list() -> None:
    f = file_of(f'[net]\nbootstrap = ["{BOOT_A}"]\n')
    got = resolve({"net.bootstrap": [BOOT_B, BOOT_A]}, {}, f)
    assert got["net.bootstrap"] == [BOOT_A, BOOT_B] and got.origins["net.bootstrap"] == "flag+file"
    got = resolve({}, {"YAGNA_BOOTSTRAP": BOOT_B}, f)
    assert got["net.bootstrap"] == [BOOT_A, BOOT_B] and got.origins["net.bootstrap"] == "env+file"


def test_empty_environment_variables_are_ignored() -> None:
    got = resolve({}, {"YAGNA_MAX_PEERS": "  "}, file_of("[net]\nmax_peers = 9\n"))
    assert (got["net.max_peers"], got.origins["net.max_peers"]) == (9, "file")


@pytest.mark.parametrize(("env", "message"), [
    ({"YAGNA_MAX_PEERS": "many"}, "YAGNA_MAX_PEERS (net.max_peers) must be a whole number from 1 to 10000"),
    ({"YAGNA_HOLE_PUNCHING": "maybe"}, "YAGNA_HOLE_PUNCHING (net.hole_punching) must be true or false"),
    ({"YAGNA_ROLE": "miner"}, "YAGNA_ROLE (node.role) must be one of"),
    ({"YAGNA_TOKEN": "0x12"}, "YAGNA_TOKEN (payment.token) must be a 0x address"),
])
def test_a_bad_environment_variable_is_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve({}, env, FileValues())


def test_a_bad_flag_value_is_named() -> None:
    with pytest.raises(SettingError, match="--px-interval must be a number of seconds more than 0"):
        resolve({"net.px_interval": 0.0}, {}, FileValues())


# -- the file --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "line", "message"), [
    ("[net]\n# comment\nmax_peers = 0\n", 3, "net.max_peers must be a whole number from 1 to 10000, not 0"),
    ('[net]\ntarget_peers = 4\nhole_punching = "yes"\n', 3, "net.hole_punching must be true or false"),
    ("[market]\n\n\nsubnets = [1]\n", 4, "market.subnets must be a list of strings"),
    ('[provider.preset]\nprice_cpu_hour = 0.1\n', 2, "provider.preset.price_cpu_hour must be an amount of tokens"),
    ('[provider]\nmax_threads = 2\n[provider.preset]\nthreads = 0\n', 4, "provider.preset.threads must be a whole number"),
    ('[payment]\ndriver = "erc20"\ncontract = "0x1"\n', 3, "payment.contract must be a 0x address of 40 hex digits"),
    ('[log]\nlevel = "loud"\n', 2, 'log.level must be one of "debug"'),
    ("[net]\nmax_peers = 8\nmaxpeers = 9\n", 3, r"unknown key\(s\) in \[net\]: maxpeers"),
    ("[node]\nrole = \"both\"\n[nodes]\nx = 1\n", 3, r"unknown section\(s\) nodes"),
    ("api_port = 1\n", 1, "unknown key api_port outside any section"),
    ('[provider]\npreset = 3\n', 2, r"\[provider.preset\] must be a table"),
])
def test_file_errors_name_the_key_and_its_line(text: str, line: int, message: str) -> None:
    with pytest.raises(SettingError, match=f"config file {FILE}, line {line}: {message}"):
        file_of(text)


def test_a_toml_syntax_error_names_its_line() -> None:
    with pytest.raises(SettingError, match=r"is not valid TOML: .*line 2"):
        file_of("[net]\nmax_peers = = 3\n")


def test_inline_and_dotted_tables_are_read() -> None:
    got = file_of('provider.preset = { threads = 2, price_hour = "0.01" }\n[net]\nmax_peers = 9\n')
    assert got.values == {"provider.preset.threads": 2, "provider.preset.price_hour": "0.01", "net.max_peers": 9}
    assert got.lines["net.max_peers"] == 3


def test_the_file_and_its_older_name(tmp_path: Path) -> None:
    assert settings.config_path(tmp_path) == (tmp_path / "config.toml", False)
    (tmp_path / "yagna.toml").write_text("[net]\nmax_peers = 9\n")
    assert settings.config_path(tmp_path) == (tmp_path / "yagna.toml", False)
    assert settings.load(tmp_path, env={})["net.max_peers"] == 9
    (tmp_path / "config.toml").write_text("[net]\nmax_peers = 10\n")
    with pytest.raises(SettingError, match="both .*config.toml and .*yagna.toml exist.*move the settings of yagna.toml"):
        settings.load(tmp_path, env={})
    explicit = tmp_path / "other.toml"
    with pytest.raises(SettingError, match="other.toml does not exist"):
        settings.load(tmp_path, explicit=explicit, env={})
    explicit.write_text("[net]\nmax_peers = 11\n")
    assert settings.load(tmp_path, explicit=explicit, env={})["net.max_peers"] == 11


# -- what the daemon makes of them ---------------------------------------------------------------------


def test_node_config_from_settings(tmp_path: Path) -> None:
    f = file_of('[node]\nrole = "provider"\n[net]\nrelay_circuit_mib = 64\n[provider]\nmax_threads = 2\n'
                '[market]\nsubnets = ["lab"]\n[provider.preset]\nthreads = 2\nprice_cpu_hour = "0.36"\n')
    config = settings.node_config(resolve({"node.api_port": 0}, {}, f), tmp_path, test_faults=["wrong-results"])
    assert (config.role, config.api_port, config.max_threads, config.subnets) == ("provider", 0, 2, ["lab"])
    assert config.relay_limits is not None and config.relay_limits.circuit_bytes == 64 * 2**20
    assert config.test_faults == frozenset({"wrong-results"})
    preset = config.provider_preset
    assert preset is not None and (preset.name, preset.threads, preset.subnet) == ("default", 2, "lab")
    assert preset.pricing.per_cpu_sec == 10**14  # 0.36 per hour = 0.0001 per second
    assert settings.node_config(resolve({}, {}, FileValues()), tmp_path).provider_preset is None


def test_a_fixed_price_preset() -> None:
    got = settings.provider_preset(resolve({}, {}, file_of('[provider.preset]\nfixed_price_hour = "3.6"\n')))
    assert got is not None and got.fixed and got.pricing.per_cpu_sec == 0 and got.pricing.per_duration_sec == 10**15
