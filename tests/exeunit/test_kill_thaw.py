"""Thawing a container after a kill, against the engine's answers under load (a flaky test's cause).

Seen in CI-like runs with Docker 28: the first unpause took, but the next inspect still said
"Paused"; the unpause tried again got 500 "Container ... is not paused" (not 409), which escaped as
an engine error and failed the command's kill.
"""

from __future__ import annotations

from typing import Any

import docker.errors
import pytest
import requests

from exeunit.docker.kill import Killer


def _api_error(status: int, explanation: str) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError("unpause", response=response, explanation=explanation)


class FakeApi:
    def __init__(self, unpause_results: list[Exception | None], paused_reports: list[bool]) -> None:
        self.unpause_results = unpause_results
        self.paused_reports = paused_reports
        self.unpauses = 0

    def unpause(self, container_id: str) -> None:
        self.unpauses += 1
        result = self.unpause_results.pop(0)
        if result is not None:
            raise result

    def inspect_container(self, container_id: str) -> dict[str, Any]:
        return {"State": {"Paused": self.paused_reports.pop(0)}}


@pytest.mark.parametrize("status", [409, 500])
def test_an_unpause_that_took_late_is_success(status: int) -> None:
    api = FakeApi([None, _api_error(status, "Container abc is not paused")], [True, False])
    Killer._thaw(api, "abc")
    assert api.unpauses == 2


def test_other_engine_errors_still_raise() -> None:
    api = FakeApi([_api_error(500, "something else broke")], [])
    with pytest.raises(docker.errors.APIError):
        Killer._thaw(api, "abc")
