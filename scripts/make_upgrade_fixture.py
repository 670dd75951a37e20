"""Make the data dirs an upgrade test starts from: a provider and a requestor of a released tag, with history.

    git worktree add /tmp/yagna-v0.1.0 v0.1.0
    .venv/bin/python scripts/make_upgrade_fixture.py /tmp/yagna-v0.1.0 tests/fixtures/upgrade/v0.1.0.tar.gz
    git worktree remove /tmp/yagna-v0.1.0

Runs the tag's own code (``python -m yagna`` in its tree) for a provider and a requestor on
loopback, funds the requestor, runs one pipeline (a busybox job: an agreement, an activity, vouchers,
a settled channel), stops both with SIGTERM and packs their data dirs (keys, app key, database; no
logs, no work files) into a tar.gz. The keys are throw-away test keys of a test network.
Needs Docker and ``local/busybox:1`` (scripts/build-test-image.sh).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

PIPELINE = """\
image: local/busybox:1
steps:
  - name: build
    run: mkdir -p out && echo "made by an old release" > out/app.txt
artifacts: [out/app.txt]
"""


def main(tree: Path, dest: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    yagna = [sys.executable, "-m", "yagna"]
    with tempfile.TemporaryDirectory(prefix="yagna-fixture-") as tmp:
        root = Path(tmp)
        procs: list[subprocess.Popen[bytes]] = []

        def start(name: str, *args: str) -> dict[str, object]:
            data = root / name
            data.mkdir()
            log = open(root / f"{name}.log", "wb")
            procs.append(subprocess.Popen([*yagna, "--data-dir", str(data), "service", "run", "--api-port", "0",
                                           *args], cwd=tree, env=env, stdout=log, stderr=log,
                                          stdin=subprocess.DEVNULL))
            for _ in range(300):
                try:
                    info = json.loads((data / "node.json").read_text())
                    if info.get("pid") == procs[-1].pid:
                        return dict(info)
                except (OSError, ValueError):
                    pass
                time.sleep(0.1)
            raise SystemExit(f"{name} did not start: {(root / f'{name}.log').read_text()[-2000:]}")

        def cli(name: str, *args: str, cwd: Path | None = None) -> str:
            out = subprocess.run([*yagna, "--data-dir", str(root / name), *args], cwd=cwd or tree, env=env,
                                 capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
            if out.returncode != 0:
                raise SystemExit(f"{' '.join(args)}: {out.returncode}\n{out.stdout}\n{out.stderr}")
            return out.stdout

        try:
            prov = start("provider", "--role", "provider")
            addr = prov["p2p_addrs"][0]  # type: ignore[index]
            start("requestor", "--role", "requestor", "--bootstrap", str(addr))
            for _ in range(300):
                if json.loads(cli("requestor", "market", "offers", "--json") or "[]"):
                    break
                time.sleep(0.1)
            cli("requestor", "payment", "fund", "--amount", "10")
            repo = root / "repo"
            (repo / ".yagna").mkdir(parents=True)
            (repo / ".yagna" / "pipeline.yml").write_text(PIPELINE)
            result = json.loads(cli("requestor", "pipeline", "run", "--json", str(repo / ".yagna" / "pipeline.yml"),
                                    cwd=repo))
            assert result["status"] == "passed", result
            time.sleep(1.0)  # the final voucher and the channel's close
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(dest, "w:gz") as tf:
            for name in ("provider", "requestor"):
                for path in sorted((root / name).rglob("*")):
                    rel = path.relative_to(root)
                    if path.is_dir() or path.suffix in (".log", ".sock") or "exeunit" in rel.parts \
                            or path.name in ("node.json",) or "pipeline-caches" in rel.parts:
                        continue
                    tf.add(path, arcname=str(rel))
    print(dest, dest.stat().st_size, "bytes")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve())
