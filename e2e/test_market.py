"""The market across processes: three providers, a late-joining requestor, agreements, withdrawal."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
from e2e.daemons import Daemon, run_cli, wait_until
from market.agreement import verify_agreement

PROVIDERS = {
    # name: (threads, price per CPU-hour)
    "small": ("1", "0.02"),
    "cheap": ("2", "0.03"),
    "dear": ("2", "0.5"),
}


def _offers(d: Daemon) -> list[dict]:  # type: ignore[type-arg]
    return json.loads(run_cli("market", "offers", "--json", data_dir=d.data_dir).stdout)


def test_three_providers_late_requestor_agreement_and_withdrawal(tmp_path: Path, daemons: list[Daemon]) -> None:
    provs: dict[str, Daemon] = {}
    first: Daemon | None = None
    for name, (threads, price) in PROVIDERS.items():
        args = ["--role", "provider", "--px-interval", "2", "--max-threads", "2"]
        if first is not None:
            args += ["--bootstrap", first.p2p_addr]
        d = Daemon(tmp_path / name, args).start()
        daemons.append(d)
        first = first or d
        provs[name] = d
        run_cli("provider", "preset", "update", "default", "--threads", threads, "--price-cpu-hour", price,
                data_dir=d.data_dir)
    ids = {name: d.node_id for name, d in provs.items()}
    for d in provs.values():
        wait_until(lambda d=d: len(_offers(d)) == 3, timeout=20, what=f"{d.data_dir.name} sees 3 offers")
    assert first is not None

    # A requestor that joins after every offer was broadcast sees them all at once (catch-up).
    req = Daemon(tmp_path / "req", ["--role", "requestor", "--bootstrap", first.p2p_addr, "--px-interval", "2"]).start()
    daemons.append(req)
    took = wait_until(lambda: {o["provider_id"] for o in _offers(req)} == set(ids.values()), timeout=15,
                      what="late requestor sees all offers")
    print(f"late joiner saw all 3 offers {took:.2f} s after its API came up")

    # A syntax error in the constraints is a 400 naming the position.
    key = (req.data_dir / "app-key").read_text().strip()
    resp = httpx.post(f"{req.info['api_url']}/api/v1/market/demands", headers={"Authorization": f"Bearer {key}"},
                      json={"constraints": "(golem.inf.cpu.threads>=2"})
    assert resp.status_code == 400
    assert resp.json()["error"] == "constraint_syntax" and resp.json()["position"] == 25

    # >= 2 threads under a price cap: only "cheap" is eligible; "dear" is dropped for its price.
    out = run_cli("market", "negotiate", "--constraints", "(golem.inf.cpu.threads>=2)", "--max-cpu-hour", "0.1",
                  "--count", "3", "--json", data_dir=req.data_dir, timeout=60)
    result = json.loads(out.stdout)
    assert [a["provider_id"] for a in result["agreements"]] == [ids["cheap"]]
    assert {(f["provider_id"], f["code"]) for f in result["failures"]} == {(ids["dear"], "over-price-cap")}
    agreement_id = result["agreements"][0]["agreement_id"]

    # Both sides hold the same co-signed document, and it verifies offline.
    mine = json.loads(run_cli("market", "agreements", "--json", data_dir=req.data_dir).stdout)
    theirs = json.loads(run_cli("market", "agreements", "--json", data_dir=provs["cheap"].data_dir).stdout)
    assert [a["agreement_id"] for a in mine] == [a["agreement_id"] for a in theirs] == [agreement_id]
    assert mine[0]["document"] == theirs[0]["document"]
    doc = verify_agreement(base64.b64decode(mine[0]["document"]), network_id="testnet")
    assert (doc.requestor_id, doc.provider_id) == (req.node_id, ids["cheap"])
    status = json.loads(run_cli("provider", "status", "--json", data_dir=provs["cheap"].data_dir).stdout)
    assert status["active_agreements"] == 1 and status["committed"]["threads"] == 2

    # A withdrawn offer disappears everywhere.
    run_cli("provider", "preset", "delete", "default", data_dir=provs["small"].data_dir)
    for d in [*provs.values(), req]:
        wait_until(lambda d=d: ids["small"] not in {o["provider_id"] for o in _offers(d)}, timeout=10,
                   what=f"{d.data_dir.name} drops the withdrawn offer")

    # Terminating reaches the provider, which frees the capacity.
    run_cli("market", "terminate", agreement_id, data_dir=req.data_dir)
    wait_until(lambda: json.loads(run_cli("provider", "status", "--json", data_dir=provs["cheap"].data_dir).stdout)[
        "active_agreements"] == 0, timeout=10, what="provider sees the termination")
    theirs = json.loads(run_cli("market", "agreements", "--json", data_dir=provs["cheap"].data_dir).stdout)
    assert theirs[0]["state"] == "terminated" and theirs[0]["reason"].startswith("requestor:")


def test_preset_errors_name_the_field(tmp_path: Path, daemons: list[Daemon]) -> None:
    d = Daemon(tmp_path / "p", ["--role", "provider"]).start()
    daemons.append(d)
    bad = run_cli("provider", "preset", "create", "x", "--threads", "0", data_dir=d.data_dir, check=False)
    assert bad.returncode == 1 and "threads" in bad.stderr
    dup = run_cli("provider", "preset", "create", "default", data_dir=d.data_dir, check=False)
    assert dup.returncode == 1 and "exists" in dup.stderr
    both = run_cli("provider", "preset", "create", "x", "--fixed-price-hour", "0.5", "--price-hour", "1",
                   data_dir=d.data_dir, check=False)
    assert both.returncode == 1 and "--fixed-price-hour" in both.stderr
    fixed = run_cli("provider", "preset", "create", "flux-s", "--threads", "1", "--fixed-price-hour", "0.36",
                    data_dir=d.data_dir)
    assert "fixed 0.36/h" in fixed.stdout, fixed.stdout
    offers = json.loads(run_cli("market", "offers", "--json", data_dir=d.data_dir).stdout)
    flux = next(o for o in offers if o["properties"].get("yagna.preset") == "flux-s")
    assert flux["properties"]["yagna.com.pricing.fixed"] is True
    assert flux["properties"]["golem.com.pricing.model.linear.coeffs"][0] == 0  # no CPU price
    missing = run_cli("provider", "preset", "delete", "nope", data_dir=d.data_dir, check=False)
    assert missing.returncode == 1 and "nope" in missing.stderr
    bad_policy = run_cli("provider", "policy", "set", "--min-expiration", "100", "--max-expiration", "10",
                         data_dir=d.data_dir, check=False)
    assert bad_policy.returncode == 1 and "min_expiration_s" in bad_policy.stderr


def test_policy_refusal_reaches_the_requestor_and_survives_a_restart(tmp_path: Path, daemons: list[Daemon]) -> None:
    prov = Daemon(tmp_path / "p", ["--role", "provider"]).start()
    daemons.append(prov)
    req = Daemon(tmp_path / "r", ["--role", "requestor", "--bootstrap", prov.p2p_addr]).start()
    daemons.append(req)
    run_cli("provider", "policy", "set", "--deny", req.node_id, data_dir=prov.data_dir)
    prov.stop()
    prov.start()  # the policy is kept across restarts
    wait_until(lambda: len(_offers(req)) == 1, timeout=20, what="requestor sees the offer")
    out = run_cli("market", "negotiate", "--json", data_dir=req.data_dir, check=False, timeout=60)
    assert out.returncode == 1
    failures = json.loads(out.stdout)["failures"]
    assert [(f["provider_id"], f["code"]) for f in failures] == [(prov.node_id, "requestor-denied")]
    shown = json.loads(run_cli("provider", "policy", "show", "--json", data_dir=prov.data_dir).stdout)
    assert shown["deny"] == [req.node_id]
