"""An upgrade keeps the data dir: today's daemons start on data dirs a released tag (v0.1.0) wrote.

The fixture (tests/fixtures/upgrade/v0.1.0.tar.gz, made by scripts/make_upgrade_fixture.py from the
tag's own code) holds a provider's and a requestor's data dirs after one pipeline job: keys, app
keys, databases with an agreement, an activity and a settled payment channel. Checked: both start
(the schema migrated), keep their node ids and app keys, show the old job's agreement and payment on
both sides, and run a new job together.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

from e2e.daemons import YAGNA, Daemon, run_cli, wait_until

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "upgrade" / "v0.1.0.tar.gz"
PIPELINE = """\
image: local/busybox:1
steps:
  - name: build
    run: mkdir -p out && echo "made after the upgrade" > out/app.txt
artifacts: [out/app.txt]
"""


def test_daemons_start_on_data_dirs_of_v0_1_0(tmp_path: Path, daemons: list[Daemon], test_image: str) -> None:
    with tarfile.open(FIXTURE) as tf:
        tf.extractall(tmp_path, filter="data")
    old_keys = {name: (tmp_path / name / "app-key").read_text() for name in ("provider", "requestor")}
    prov = Daemon(tmp_path / "provider", ["--role", "provider"]).start()
    daemons.append(prov)
    req = Daemon(tmp_path / "requestor", ["--role", "requestor", "--bootstrap", prov.p2p_addr]).start()
    daemons.append(req)
    for d, name in ((prov, "provider"), (req, "requestor")):
        assert (d.data_dir / "app-key").read_text() == old_keys[name]  # the old app key still opens the API
        assert d.api("GET", "/id")["node_id"] == d.node_id

    # The old job, seen from both sides: the same agreement, paid and settled.
    old = req.api("GET", "/payment/status")["agreements"]
    assert len(old) == 1 and old[0]["peer_id"] == prov.node_id and old[0]["state"] == "closed", old
    assert int(old[0]["paid_units"]) > 0
    theirs = {a["agreement_id"]: a for a in prov.api("GET", "/payment/status")["agreements"]}
    assert theirs[old[0]["agreement_id"]]["peer_id"] == req.node_id
    assert int(theirs[old[0]["agreement_id"]]["paid_units"]) == int(old[0]["paid_units"])

    # And a new job runs between them.
    wait_until(lambda: len(req.api("GET", "/market/offers")) == 1, timeout=30, what="the provider's offer")
    run_cli("payment", "fund", "--amount", "10", data_dir=req.data_dir)
    repo = tmp_path / "repo"
    (repo / ".yagna").mkdir(parents=True)
    (repo / ".yagna" / "pipeline.yml").write_text(PIPELINE)
    proc = subprocess.run([*YAGNA, "--data-dir", str(req.data_dir), "pipeline", "run", "--json"], cwd=repo,
                          capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["provider_id"] == prov.node_id
    assert len(req.api("GET", "/payment/status")["agreements"]) == 2
