"""``gftp server`` as Golem's SDK drives it: newline-delimited JSON-RPC on stdin/stdout against a
running node (publish, receive, close, shutdown), errors answered without stopping."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import trio

from yagna.config import NodeConfig
from yagna.node import Node, NodeInfo


async def test_gftp_speaks_json_rpc_and_mints_urls_with_the_daemon(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        r: NodeInfo = await nursery.start(Node(NodeConfig(tmp_path / "r", api_port=0, role="requestor")).run)
        data = tmp_path / "in.txt"
        data.write_text("hello gftp\n")
        lines = [
            {"jsonrpc": "2.0", "id": 1, "method": "version", "params": {}},
            {"jsonrpc": "2.0", "id": 2, "method": "publish", "params": {"files": [str(data)]}},
            {"jsonrpc": "2.0", "id": 3, "method": "receive", "params": {"output_file": str(tmp_path / "out.png")}},
            "not json",
            {"jsonrpc": "2.0", "id": 4, "method": "nope", "params": {}},
            {"jsonrpc": "2.0", "id": 5, "method": "publish", "params": {"files": [str(tmp_path / "missing")]}},
            {"jsonrpc": "2.0", "id": 7, "method": "shutdown", "params": {}},
            {"jsonrpc": "2.0", "id": 8, "method": "version", "params": {}},  # after shutdown: never answered
        ]
        stdin = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
        env = {"YAGNA_API_URL": r.api_url, "YAGNA_APPKEY": (tmp_path / "r" / "app-key").read_text().strip(),
               "PATH": "/usr/bin:/bin"}

        def run() -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "yagna.gftp", "server"], input=stdin, text=True,
                                  capture_output=True, env=env, timeout=60)

        proc = await trio.to_thread.run_sync(run)
        assert proc.returncode == 0, proc.stderr
        replies = [json.loads(line) for line in proc.stdout.splitlines()]
        by_id = {r["id"]: r for r in replies}
        assert by_id[1]["result"] == "0.7.4"
        [published] = by_id[2]["result"]
        assert published["file"] == str(data) and published["url"].startswith(f"gftp://{r.node_id}/")
        assert len(published["url"].rsplit("/", 1)[1]) == 64  # named by its sha256
        assert by_id[3]["result"]["url"].startswith(f"gftp://{r.node_id}/")
        assert by_id[None]["error"]["code"] == -32700
        assert by_id[4]["error"]["code"] == -32601
        assert "cannot read" in by_id[5]["error"]["message"]
        assert by_id[7]["result"] is None and 8 not in by_id
        nursery.cancel_scope.cancel()
