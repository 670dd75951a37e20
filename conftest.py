"""Suite-wide check: the test suite leaves no container (or work volume) of ours behind.

Every container a provider creates carries the label ``network.yagna.node``
(and its ``/work`` volume too), and, when ``YAGNA_TEST_SESSION`` is set in its
environment, ``network.yagna.test-session`` with that value: this session sets
it (daemons started by e2e tests inherit it), so containers of other test runs
on the same engine are not counted. Those of this session that still exist at
its end fail the run, and are removed so the next run starts clean.
"""

from __future__ import annotations

import os
import uuid

import pytest

LABEL_SESSION = "network.yagna.test-session"
SESSION = os.environ.setdefault("YAGNA_TEST_SESSION", uuid.uuid4().hex)


def _engine():  # type: ignore[no-untyped-def]
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
        return client
    except Exception:  # noqa: BLE001 - no engine: nothing can be left over
        return None


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    client = _engine()
    if client is None:
        return
    import docker.errors

    mine = {"label": f"{LABEL_SESSION}={SESSION}"}
    left = client.containers.list(all=True, filters=mine)
    volumes = client.volumes.list(filters=mine)
    for obj in [*left, *volumes]:
        try:
            obj.remove(force=True)
        except docker.errors.APIError as exc:
            print(f"cannot remove {obj}: {exc}")
    if left or volumes:
        names = [f"container {c.short_id} {c.labels}" for c in left] + [f"volume {v.name} {v.attrs.get('Labels')}" for v in volumes]
        print("\nLEFT BEHIND by the test suite (now removed):\n  " + "\n  ".join(names))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
