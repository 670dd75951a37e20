"""Deployment manifests in Akash's SDL v2.0 shape: what is read, and an error naming key and line for
every key we cannot honour (requestor_sdk/sdl.py, docs/services.md)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from requestor_sdk.sdl import AKASH_BLOCKS_PER_HOUR, ManifestError, parse_manifest

ROOT = Path(__file__).resolve().parents[2]

AKASH = """\
---
version: "2.0"
services:
  web:
    image: nginx:1.25
    expose:
      - port: 80
        as: 80
        to:
          - global: true
  db:
    image: postgres:16
    env:
      - POSTGRES_PASSWORD=secret
      - PGDATA=/var/lib/postgresql/data/pgdata
    expose:
      - port: 5432
        to:
          - service: web
    params:
      storage:
        data:
          mount: /var/lib/postgresql/data
profiles:
  compute:
    web:
      resources:
        cpu:
          units: 500m
        memory:
          size: 512Mi
        storage:
          size: 1Gi
    db:
      resources:
        cpu:
          units: 1
        memory:
          size: 1Gi
        storage:
          - size: 512Mi
          - name: data
            size: 10Gi
            attributes:
              persistent: true
              class: beta2
  placement:
    dcloud:
      attributes:
        host: akash
      pricing:
        web:
          denom: uakt
          amount: 1000
        db:
          denom: uakt
          amount: 2000
deployment:
  web:
    dcloud:
      profile: web
      count: 2
  db:
    dcloud:
      profile: db
      count: 1
"""


def test_an_akash_file_is_read_as_it_is() -> None:
    m = parse_manifest(AKASH, source="akash.yaml", rates={"uakt": Decimal("0.000001")})
    assert m.version == "2.0" and set(m.services) == {"web", "db"}
    web = m.services["web"]
    assert web.image == "nginx:1.25" and web.expose[0].port == 80 and web.expose[0].to_global
    assert m.services["db"].env == {"POSTGRES_PASSWORD": "secret", "PGDATA": "/var/lib/postgresql/data/pgdata"}
    assert not m.services["db"].expose[0].to_global
    assert m.services["db"].mounts == {"data": "/var/lib/postgresql/data"}
    assert m.profiles["web"].cpu_units == Decimal("0.5") and m.profiles["web"].memory_bytes == 512 * 2**20
    data = m.profiles["db"].storage[1]
    assert (data.name, data.size_bytes, data.persistent) == ("data", 10 * 2**30, True)
    cap = m.placements["dcloud"].pricing["web"]
    assert cap.tokens_per_hour == Decimal(1000) * AKASH_BLOCKS_PER_HOUR * Decimal("0.000001")  # 0.6 tokens/h
    assert m.placements["dcloud"].attributes == {"host": "akash"}
    assert [(d.service, d.count) for d in m.deployments] == [("web", 2), ("db", 1)] and m.replicas() == 3
    assert any("global" in note for note in m.notes)


def test_the_sample_in_examples_parses() -> None:
    m = parse_manifest((ROOT / "examples" / "services" / "web.yaml").read_text(), source="web.yaml")
    assert m.services["web"].command == ["httpd"] and m.replicas() == 2
    assert m.placements["anywhere"].pricing["web"].tokens_per_hour == Decimal("0.05")


def _bad(text: str, **kw: object) -> ManifestError:
    with pytest.raises(ManifestError) as exc:
        parse_manifest(text, source="app.yaml", **kw)  # type: ignore[arg-type]
    return exc.value


@pytest.mark.parametrize(("old", "new", "key", "line", "words"), [
    ("        as: 80\n", "        as: 80\n        proto: udp\n", "services.web.expose[0].proto", 9, "only tcp"),
    ("        as: 80\n", "        as: 80\n        accept:\n          - www.example.com\n", "services.web.expose[0].accept", 9,
     "public ingress"),
    ("    image: nginx:1.25\n", "    image: nginx:1.25\n    credentials:\n      host: docker.io\n", "services.web.credentials", 6,
     "private registries"),
    ("          size: 512Mi\n        storage:\n          size: 1Gi\n",
     "          size: 512Mi\n        storage:\n          size: 1Gi\n        gpu:\n          units: 1\n",
     "profiles.compute.web.resources.gpu.units", 35, "GPUs"),
    ("        host: akash\n", "        host: akash\n      signedBy:\n        anyOf: []\n", "profiles.placement.dcloud.signedBy",
     51, "audits"),
    ("          units: 500m\n", "          units: lots\n", "profiles.compute.web.resources.cpu.units", 29, "CPUs"),
    ("          size: 512Mi\n        storage:\n          size: 1Gi\n", "          size: huge\n        storage:\n          size: 1Gi\n",
     "profiles.compute.web.resources.memory.size", 31, "size like"),
    ("      profile: web\n      count: 2\n", "      profile: wbe\n      count: 2\n", "deployment.web.dcloud.profile", 61,
     "no profile"),
    ("      count: 2\n", "      count: 0\n", "deployment.web.dcloud.count", 62, "whole number"),
    ("version: \"2.0\"\n", "version: \"3.0\"\n", "version", 2, "SDL 2.0"),
    ("          mount: /var/lib/postgresql/data\n", "          mount: data\n", "services.db.params.storage.data.mount",
     23, "absolute"),
])
def test_every_key_we_cannot_honour_is_an_error_with_its_line(old: str, new: str, key: str, line: int,
                                                              words: str) -> None:
    assert old in AKASH
    err = _bad(AKASH.replace(old, new, 1), rates={"uakt": "0.000001"})
    assert (err.key, err.line) == (key, line) and words in str(err), str(err)
    assert str(err).startswith(f"app.yaml:{line}: {key}: ")


def test_a_foreign_denomination_needs_a_rate() -> None:
    err = _bad(AKASH)
    assert err.key == "profiles.placement.dcloud.pricing.web.denom" and "--rate uakt=" in str(err)


@pytest.mark.parametrize(("text", "words"), [
    ("", "empty"), ("version: [", "not valid YAML"), ("a: 1\na: 2\n", "repeated"),
    ("version: '2.0'\nservices: {}\nprofiles: {}\ndeployment: {}\n", "at least one service"),
    (AKASH.replace("deployment:\n  web:", "deployment:\n  wbe:", 1), "no service 'wbe'"),
    (AKASH + "endpoints:\n  myip:\n    kind: ip\n", "leased IP"),
])
def test_bad_files(text: str, words: str) -> None:
    assert words in str(_bad(text, rates={"uakt": "1"}))


def test_size_bound() -> None:
    assert "at most" in str(_bad("a: " + "x" * 300_000))


def test_yagna_deploy_check(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from yagna.cli.main import cli

    runner = CliRunner()
    ok = runner.invoke(cli, ["deploy", "check", str(ROOT / "examples" / "services" / "web.yaml"), "--json"])
    assert ok.exit_code == 0, ok.output
    plan = json.loads(ok.output)
    assert plan["replicas"] == 2 and plan["deployments"][0]["price_cap_per_hour"] == "0.05"
    (tmp_path / "akash.yaml").write_text(AKASH)
    need_rate = runner.invoke(cli, ["deploy", "check", str(tmp_path / "akash.yaml")])
    assert need_rate.exit_code == 1 and "--rate uakt=" in need_rate.output
    with_rate = runner.invoke(cli, ["deploy", "check", str(tmp_path / "akash.yaml"), "--rate", "uakt=0.000001"])
    assert with_rate.exit_code == 0 and "web x2" in with_rate.output, with_rate.output
    bad = runner.invoke(cli, ["deploy", "check", str(tmp_path / "akash.yaml"), "--rate", "uakt"])
    assert bad.exit_code == 2 and "DENOM=TOKENS" in bad.output


def test_our_health_extension_is_read_and_checked() -> None:
    base = """\
version: "2.0"
services:
  web:
    image: x
    expose: [{port: 8080}]
    x-yagna-health: HEALTH
profiles:
  compute:
    web: {resources: {cpu: {units: 1}, memory: {size: 64Mi}}}
  placement:
    dc: {}
deployment:
  web: {dc: {profile: web, count: 1}}
"""
    ok = parse_manifest(base.replace("HEALTH", "{http: 8080, path: /healthz}"), source="a.yaml")
    assert ok.services["web"].health == {"http": 8080, "path": "/healthz"}
    assert parse_manifest(base.replace("    x-yagna-health: HEALTH\n", ""), source="a.yaml").services["web"].health is None
    for health, key, words in (("{tcp: 9}", "x-yagna-health.tcp", "exposed ports"),
                               ("{tcp: 8080, http: 8080}", "x-yagna-health", "exactly one"),
                               ("{tcp: 8080, path: /}", "x-yagna-health.path", "only for an http"),
                               ("{udp: 8080}", "x-yagna-health.udp", "")):
        with pytest.raises(ManifestError) as info:
            parse_manifest(base.replace("HEALTH", health), source="a.yaml")
        assert info.value.key == f"services.web.{key}" and info.value.line == 6 and words in str(info.value)


@pytest.mark.parametrize("text", ["a: !!int x", "<<: 1", "[" * 5000, 'version: "\\ud800"'])
def test_yaml_the_loader_cannot_build_is_a_manifest_error(text: str) -> None:
    """PyYAML raised ValueError, ConstructorError or RecursionError past our checks (found by the pipeline parser's fuzzing)."""
    with pytest.raises(ManifestError):
        parse_manifest(text, source="a.yaml")
