"""docker-py is imported on the first container operation, not when the node starts (issue 12)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from exeunit.docker import lazy
from exeunit.docker.lazy import LazyDockerRuntime


def test_a_node_started_without_a_container_operation_has_not_imported_docker(tmp_path: Path) -> None:
    """A requestor starts, serves its API and stops without docker-py (nor requests, which it brings)."""
    code = textwrap.dedent(
        """
        import json, sys
        from pathlib import Path
        import trio
        from yagna.config import NodeConfig
        import yagna.node
        from yagna.node import Node

        made = []  # the runtime the node hands its activity service
        create_runtime = yagna.node._container_runtime
        yagna.node._container_runtime = lambda: made.append(create_runtime()) or made[-1]

        async def main():
            node = Node(NodeConfig(Path(sys.argv[1]), api_port=0, role="requestor"))
            async with trio.open_nursery() as nursery:
                info = await nursery.start(node.run)
                key = (Path(sys.argv[1]) / "app-key").read_text().strip()
                def get(path):
                    import urllib.request
                    req = urllib.request.Request(info.api_url + "/api/v1" + path,
                                                 headers={"Authorization": "Bearer " + key})
                    with urllib.request.urlopen(req, timeout=10) as resp:
                        return resp.status
                statuses = [await trio.to_thread.run_sync(get, p) for p in ("/health", "/id", "/activity")]
                nursery.cancel_scope.cancel()
            return statuses, [repr(r) for r in made]

        statuses, runtime = trio.run(main)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("docker", "requests")
                        or m == "exeunit.docker_runtime")
        print(json.dumps({"statuses": statuses, "runtime": runtime, "loaded": loaded}))
        """
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "node")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"statuses": [200, 200, 200], "runtime": ["<LazyDockerRuntime not loaded>"], "loaded": []}


class _FakeDockerRuntime:
    created: list[dict[str, object]] = []

    def __init__(self, **kwargs: object) -> None:
        self.created.append(kwargs)
        self.calls: list[tuple[object, ...]] = []

    async def leftovers(self, node_id: str) -> list[tuple[str, dict[str, str]]]:
        self.calls.append(("leftovers", node_id))
        return [("c1", {"a": "b"})]

    def upload(self, container_id: str, path: str, size: int) -> str:
        return f"upload {container_id} {path} {size}"


@pytest.fixture
def fake_module(monkeypatch: pytest.MonkeyPatch) -> type[_FakeDockerRuntime]:
    mod = types.ModuleType("_yagna_fake_docker_runtime")
    mod.DockerRuntime = _FakeDockerRuntime  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    monkeypatch.setattr(lazy, "MODULE", mod.__name__)
    _FakeDockerRuntime.created = []
    return _FakeDockerRuntime


async def test_the_first_call_creates_the_runtime_once_and_forwards(fake_module: type[_FakeDockerRuntime]) -> None:
    rt = LazyDockerRuntime(extra_labels={"x": "y"})
    assert not rt.loaded and fake_module.created == []
    assert await rt.leftovers("n1") == [("c1", {"a": "b"})]
    assert await rt.leftovers("n2") == [("c1", {"a": "b"})]
    assert rt.loaded and fake_module.created == [{"extra_labels": {"x": "y"}}]
    assert (await rt.real()).calls == [("leftovers", "n1"), ("leftovers", "n2")]
    assert rt.upload("c", "/work/f", 3) == "upload c /work/f 3"  # a sync method: forwarded as is


def test_a_sync_method_first_creates_the_runtime_in_place(fake_module: type[_FakeDockerRuntime]) -> None:
    rt = LazyDockerRuntime()
    assert rt.upload("c", "/work/f", 3) == "upload c /work/f 3"
    assert rt.loaded and fake_module.created == [{"extra_labels": None}]


def test_every_async_method_of_the_runtime_protocol_is_deferred() -> None:
    assert {"create", "exec", "leftovers", "remove", "usage", "has_image", "load_image"} <= lazy.ASYNC_METHODS
    assert "upload" not in lazy.ASYNC_METHODS  # returns an async context manager: loads in place


async def test_the_real_runtime_behind_it_talks_to_the_engine() -> None:
    rt = LazyDockerRuntime()
    assert await rt.leftovers("no-such-node-" + "0" * 20) == []
    assert type(await rt.real()).__name__ == "DockerRuntime"
