"""Golem VM packages on our Docker provider: a ``.gvmi`` made with ``yagna image pack``, served over
HTTP on this machine, named ``hash:sha3:<hex>:<url>`` in a Golem demand, downloaded, checked and
run by the provider; a package whose bytes do not match its hash is refused. Plus the download's
bounds on a mock transport."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio

from exeunit.errors import ImageError
from tests.golem.golem_api import Golem, agreement_via_golem, two_nodes
from tests.golem.test_golem_activity_api import _run
from yagna.activity_service.packages import Packages, parse_package


@pytest.fixture(scope="module")
def served_gvmi(tmp_path_factory: pytest.TempPathFactory, image_id: str) -> Iterator[tuple[str, str]]:
    """(sha3, url) of local/busybox:1 with Golem's volumes (/golem/input, /golem/output) packed as a
    .gvmi and served by a local HTTP server."""
    import docker

    from exeunit.gvmi import pack

    root = tmp_path_factory.mktemp("registry")
    client = docker.from_env()
    labels = {"network.yagna.test-session": os.environ["YAGNA_TEST_SESSION"]}
    box = client.api.create_container("local/busybox:1", command=["true"], labels=labels)
    golem_image = client.api.commit(box["Id"], repository="local/busybox-golem", tag="1",
                                    changes=['VOLUME ["/golem/input", "/golem/output"]'])["Id"]
    client.api.remove_container(box["Id"], force=True)
    try:
        sha3, _ = pack(golem_image, root / "busybox.gvmi", client.api, container_labels=labels)
    finally:
        client.api.remove_image(golem_image, force=True)
        client.close()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sha3, f"http://127.0.0.1:{server.server_address[1]}/busybox.gvmi"
    finally:
        server.shutdown()
        server.server_close()


async def test_a_golem_vm_package_runs_on_our_provider(tmp_path: Path, served_gvmi: tuple[str, str]) -> None:
    sha3, url = served_gvmi
    async with trio.open_nursery() as nursery, httpx.AsyncClient() as client:
        p, r, req = await two_nodes(nursery, tmp_path, client)
        for package, expect in ((f"hash:sha3:{sha3}:{url}", "Ok"), (f"hash:sha3:{'0' * 56}:{url}", "Error")):
            agreement_id = await agreement_via_golem(req, p.node_id, r.node_id, task_package=package)
            activity_id = await req.call("POST", "/activity-api/v1/activity", 201, content=json.dumps(agreement_id))
            init = await _run(req, activity_id, [{"deploy": {}}, {"start": {}}])
            assert init[0]["result"] == expect, init[0].get("message")
            if expect == "Ok":
                done = await _run(req, activity_id, [{"run": {"entry_point": "/bin/sh", "args": ["-c", "echo from-gvmi"]}}])
                assert done[0]["stdout"] == "from-gvmi\n"
                # files in and out through gftp URLs and the image's volumes, checked byte for byte
                data = bytes(range(256)) * 300
                (tmp_path / "in.bin").write_bytes(data)
                api = f"{r.api_url}/api/v1/gftp"
                src = (await client.post(f"{api}/publish", json={"path": str(tmp_path / "in.bin")},
                                         headers=req.headers)).json()["url"]
                dst = (await client.post(f"{api}/receive", json={"path": str(tmp_path / "out.bin")},
                                         headers=req.headers)).json()["url"]
                moved = await _run(req, activity_id, [
                    {"transfer": {"from": src, "to": "container:/golem/input/in.bin"}},
                    {"run": {"entry_point": "/bin/sh", "args": ["-c", "cat /golem/input/in.bin"
                                                                      " > /golem/output/out.bin"]}},
                    {"transfer": {"from": "container:/golem/output/out.bin", "to": dst}}])
                assert [m["result"] for m in moved] == ["Ok", "Ok", "Ok"], moved
                assert (tmp_path / "out.bin").read_bytes() == data
            else:
                assert "sha3-224" in init[0]["message"]
            await req.call("DELETE", f"/activity-api/v1/activity/{activity_id}")
            await req.call("POST", f"/market-api/v1/agreements/{agreement_id}/terminate",
                           json={"message": "done", "golem.requestor.code": "Success"})
        # The cache survives a restart: a new package store finds the image by its hash, no download.
        from exeunit.docker_runtime import DockerRuntime

        runtime = DockerRuntime()
        found = await runtime.find_gvmi(sha3, p.node_id)
        assert found is not None and found[1] == ["/golem/input", "/golem/output"]

        async def no_import(path: str, sha3: str, *, max_bytes: int) -> str:
            raise AssertionError("imported again")

        again = Packages(no_import, tmp_path, has_image=runtime.has_image,
                         finder=lambda h: runtime.find_gvmi(h, p.node_id))
        assert await again.ensure(f"hash:sha3:{sha3}:{url}", max_bytes=10**9) == found[0] and again.downloads == 0
        nursery.cancel_scope.cancel()


def _packages(tmp_path: Path, handler) -> tuple[Packages, list[str]]:  # type: ignore[no-untyped-def]
    imported: list[str] = []

    async def importer(path: str, sha3: str, *, max_bytes: int) -> str:
        imported.append(Path(path).read_bytes().decode())
        return "sha256:" + "1" * 64

    async def has_image(image_id: str) -> bool:
        return True

    return Packages(importer, tmp_path, has_image=has_image, transport=httpx.MockTransport(handler),
                    volumes_of=lambda path: []), imported


async def test_a_package_is_downloaded_once_checked_and_bounded(tmp_path: Path) -> None:
    body = b"gvmi bytes"
    sha3 = hashlib.sha3_224(body).hexdigest()
    hits = []

    def handler(request: httpx.Request) -> httpx.Response:
        hits.append(request.url.path)
        if request.url.path == "/missing":
            return httpx.Response(404)
        if request.url.path == "/big":  # no length announced: the bound is kept while reading
            async def chunks():  # type: ignore[no-untyped-def]
                for _ in range(3):
                    yield b"x" * 40

            return httpx.Response(200, content=chunks())
        return httpx.Response(200, content=body)

    packages, imported = _packages(tmp_path, handler)
    async with trio.open_nursery() as nursery:  # two deploys of one package at once: one download
        for _ in range(2):
            nursery.start_soon(functools.partial(packages.ensure, f"hash:sha3:{sha3}:http://reg.test/ok", max_bytes=1000))
    assert imported == ["gvmi bytes"] and hits == ["/ok"] and packages.downloads == 1
    for path, limit, why in (("/missing", 1000, "HTTP 404"), ("/big", 50, "larger than"), ("/ok", 3, "more than")):
        with pytest.raises(ImageError, match=why):
            await packages.ensure(f"hash:sha3:{'a' * 56}:http://reg.test{path}", max_bytes=limit)
    with pytest.raises(ImageError, match="not the"):
        await packages.ensure(f"hash:sha3:{'b' * 56}:http://reg.test/ok", max_bytes=1000)
    assert list(tmp_path.iterdir()) == []  # nothing left in staging
    for bad in ("hash:sha3:xyz:http://a/b", f"hash:sha3:{sha3}:ftp://a/b", "local/busybox:1"):
        with pytest.raises(ImageError):
            parse_package(bad)
