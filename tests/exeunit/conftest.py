"""Fixtures for the exe-unit tests that need the real Docker engine.

- ``test_image``: builds ``local/busybox:1`` once per session (scripts/build-test-image.sh)
  and gives its id. No engine reachable: the test is skipped locally, but FAILS
  under CI (``CI`` set): CI must run them for real.
- ``docker_runtime``: a :class:`DockerRuntime` whose containers are all removed at
  the test's end; ``make_container`` creates and starts one with small limits,
  labelled with this session's node id.
- At the session's end no container or work volume labelled with that node id
  may be left (checked, then cleaned).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import docker
import docker.errors
import pytest
import requests.exceptions

from exeunit.runtime import LABEL_ACTIVITY, LABEL_NODE, ContainerLimits, ContainerSpec

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "scripts" / "build-test-image.sh"
TEST_NODE_ID = f"test-exeunit-{uuid.uuid4().hex[:12]}"
"""The node id label of every container this session's tests create."""

SMALL = ContainerLimits(cpu_threads=1.0, memory_bytes=64 * 2**20, storage_bytes=32 * 2**20, pids=64, tmp_bytes=8 * 2**20)


def _engine() -> docker.DockerClient | None:
    try:
        client = docker.from_env(timeout=10)
        client.ping()
        return client
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError):
        return None


def _no_engine(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI: the Docker engine must be reachable for the exe-unit tests: {reason}")
    pytest.skip(f"no Docker engine: {reason}")


@pytest.fixture(scope="session")
def engine() -> docker.DockerClient:
    client = _engine()
    if client is None:
        _no_engine("docker.from_env().ping() failed")
    assert client is not None
    return client


@pytest.fixture(scope="session")
def test_image(engine: docker.DockerClient) -> str:
    """``local/busybox:1``, built once (seconds, no registry); its id."""
    proc = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.fail(f"build-test-image.sh failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    image_id = proc.stdout.strip().splitlines()[-1]
    assert image_id.startswith("sha256:"), proc.stdout
    return image_id


@pytest.fixture(scope="session", autouse=True)
def _nothing_left_behind() -> Iterator[None]:
    """After the session: no container or work volume of this session's node id."""
    yield
    client = _engine()
    if client is None:
        return
    label = f"{LABEL_NODE}={TEST_NODE_ID}"
    left = client.api.containers(all=True, filters={"label": label})
    for c in left:
        client.api.remove_container(c["Id"], force=True)
    volumes = (client.api.volumes(filters={"label": label}) or {}).get("Volumes") or []
    for v in volumes:
        client.api.remove_volume(v["Name"], force=True)
    assert not left, f"containers left behind: {[c['Id'][:12] for c in left]}"
    assert not volumes, f"work volumes left behind: {[v['Name'] for v in volumes]}"


class TrackingRuntime:
    """A DockerRuntime that remembers what it created (removed at teardown)."""

    def __init__(self) -> None:
        from exeunit.docker_runtime import DockerRuntime

        # The suite-wide session label too (root conftest.py checks it at the end).
        session = os.environ.get("YAGNA_TEST_SESSION")
        self.inner = DockerRuntime(extra_labels={"network.yagna.test-session": session} if session else None)
        self.created: list[str] = []

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)

    async def create(self, spec: ContainerSpec) -> str:
        cid = await self.inner.create(spec)
        self.created.append(cid)
        return cid


@pytest.fixture
async def docker_runtime(engine: docker.DockerClient) -> AsyncIterator[TrackingRuntime]:
    rt = TrackingRuntime()
    try:
        yield rt
    finally:
        for cid in rt.created:
            await rt.inner.remove(cid)


def _spec_for(image_id: str, limits: ContainerLimits = SMALL, **labels: str) -> ContainerSpec:
    return ContainerSpec(
        image_id=image_id,
        limits=limits,
        labels={LABEL_NODE: TEST_NODE_ID, LABEL_ACTIVITY: f"act-{uuid.uuid4().hex[:8]}", **labels},
    )


@pytest.fixture
def spec_for() -> Callable[..., ContainerSpec]:
    """``spec_for(image_id, limits=small_limits)``: a spec labelled with ``test_node_id``."""
    return _spec_for


@pytest.fixture
def test_node_id() -> str:
    return TEST_NODE_ID


@pytest.fixture
def small_limits() -> ContainerLimits:
    return SMALL


@pytest.fixture
def make_container(
    docker_runtime: TrackingRuntime, test_image: str
) -> Callable[..., Awaitable[str]]:
    async def make(limits: ContainerLimits = SMALL, *, start: bool = True) -> str:
        cid = await docker_runtime.create(_spec_for(test_image, limits))
        if start:
            await docker_runtime.start(cid)
        return cid

    return make
