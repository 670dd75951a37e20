"""A partial mesh: eight daemons that each keep ~2 connections still share every offer,
and a requestor reaches providers it is not connected to (dial on demand).

The bootstrap node and the target come from the config file (``yagna.toml``), the way an
operator would set them; the requestor knows only the bootstrap provider.
"""

from __future__ import annotations

import json
from pathlib import Path

from e2e.daemons import Daemon, run_cli, wait_until

PROVIDERS = 7


def _config(data_dir: Path, bootstrap: str | None) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    lines = ["[net]", "target_peers = 2"]
    if bootstrap:
        lines.append(f'bootstrap = ["{bootstrap}"]')
    (data_dir / "yagna.toml").write_text("\n".join(lines) + "\n")


def _offers(d: Daemon) -> set[str]:
    return {o["provider_id"] for o in json.loads(run_cli("market", "offers", "--json", data_dir=d.data_dir).stdout)}


def _peers(d: Daemon) -> list[dict]:  # type: ignore[type-arg]
    return json.loads(run_cli("net", "peers", "--json", "--all", data_dir=d.data_dir).stdout)


def test_partial_mesh_shares_offers_and_dials_on_demand(tmp_path: Path, daemons: list[Daemon]) -> None:
    provs: list[Daemon] = []
    for i in range(PROVIDERS):
        data = tmp_path / f"prov{i}"
        _config(data, provs[0].p2p_addr if provs else None)
        d = Daemon(data, ["--role", "provider", "--px-interval", "1", "--max-threads", "1"]).start()
        daemons.append(d)
        provs.append(d)
    req_dir = tmp_path / "req"
    _config(req_dir, provs[0].p2p_addr)
    req = Daemon(req_dir, ["--role", "requestor", "--px-interval", "1"]).start()
    daemons.append(req)
    everyone = {d.node_id for d in daemons}
    ids = {d.node_id for d in provs}

    # Every node learns of every other (peer exchange) ...
    for d in daemons:
        wait_until(lambda d=d: {p["node_id"] for p in _peers(d)} >= everyone - {d.node_id}, timeout=30,
                   what=f"{d.data_dir.name} knows every node")
    # ... without connecting to all of them: only the bootstrap provider is asked to (all dial it).
    connected = {d.data_dir.name: d.connected_peers() for d in daemons}
    assert len(connected["prov0"]) == PROVIDERS, connected
    sparse = [name for name, peers in connected.items() if len(peers) < PROVIDERS - 1]
    assert len(sparse) >= PROVIDERS - 2, connected

    # Every offer reaches the requestor over the partial mesh.
    wait_until(lambda: _offers(req) == ids, timeout=30, what="requestor sees every offer")

    # Agreements with every provider, also those the requestor was not connected to.
    before = req.connected_peers()
    out = run_cli("market", "negotiate", "--count", str(PROVIDERS), "--json", data_dir=req.data_dir, timeout=90)
    result = json.loads(out.stdout)
    assert {a["provider_id"] for a in result["agreements"]} == ids, result
    assert ids - before, "the test needs a provider the requestor was not connected to"
