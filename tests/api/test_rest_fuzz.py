"""Schemathesis against a real node's OpenAPI document: no 5xx, answers match the schema.

Bounded for CI (a few examples per operation); ``YAGNA_FUZZ_EXAMPLES=500`` runs longer.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest
import schemathesis
import trio
from hypothesis import HealthCheck, given
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.checks import not_a_server_error

from yagna.config import NodeConfig
from yagna.node import Node, NodeInfo

EXAMPLES = int(os.environ.get("YAGNA_FUZZ_EXAMPLES", "10"))
# dropping app keys would fuzz the fuzzer's own key away
ROLE = "both"  # every route answers for real, none is a role's 409
SKIP = {
    ("DELETE", "/api/v1/app-keys/{name}"),
    # Golem's payment event long polls need no id, so every fuzzed call waits out its timeout (up to
    # 5 s each): their shapes and bounds are tested in tests/golem/test_golem_payment_api.py.
    ("GET", "/payment-api/v1/debitNoteEvents"),
    ("GET", "/payment-api/v1/invoiceEvents"),
}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz")
    ready: queue.Queue[NodeInfo | BaseException] = queue.Queue()
    stop = threading.Event()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            info = await nursery.start(Node(NodeConfig(data_dir, api_port=0, role=ROLE)).run)
            ready.put(info)
            await trio.to_thread.run_sync(stop.wait)
            nursery.cancel_scope.cancel()

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            ready.put(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    got = ready.get(timeout=60)
    if isinstance(got, BaseException):
        raise got
    try:
        yield got.api_url, (data_dir / "app-key").read_text().strip()
    finally:
        stop.set()
        thread.join(timeout=30)


def test_rest_api_survives_fuzzing(node: tuple[str, str]) -> None:
    url, key = node
    auth = {"Authorization": f"Bearer {key}"}
    schema = schemathesis.openapi.from_url(f"{url}/api/v1/openapi.json")
    failures: list[str] = []
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an invalid operation fails the test here
        if (operation.method.upper(), operation.path) in SKIP:
            continue

        @given(case=operation.as_strategy())
        @hypothesis.settings(max_examples=EXAMPLES, deadline=None, database=None,
                             suppress_health_check=list(HealthCheck), phases=[hypothesis.Phase.generate])
        def fuzz(case: schemathesis.Case) -> None:
            response = case.call(base_url=url, headers=auth, timeout=10)
            case.validate_response(response, checks=checks)

        try:
            fuzz()
        except Exception as exc:  # noqa: BLE001 - schemathesis' failure groups, reported together below
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}"[:3000])
    assert not failures, "\n\n".join(failures)
