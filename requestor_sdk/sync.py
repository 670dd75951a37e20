"""A synchronous entry point for plain scripts: ``run_tasks(...)`` runs trio for you."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import trio

from requestor_sdk.requestor import Market, Requestor
from requestor_sdk.tasks import Event, Task, TaskResult

__all__ = ["run_tasks"]


def run_tasks(tasks: Sequence[Task], *, image: str, budget: str, redundancy: int = 1, max_providers: int = 3,
              retries: int = 2, market: Market | None = None, data_dir: Path | str | None = None,
              work_dir: Path | str = "yagna-results",
              on_event: Callable[[Event], None] | None = None, fund: bool = True) -> list[TaskResult]:
    """Run ``tasks`` on the network and return their results (blocking; ``Ctrl-C`` tears down cleanly).

    Same arguments as :class:`~requestor_sdk.Requestor` and :meth:`~requestor_sdk.Requestor.run`.
    """

    async def main() -> list[TaskResult]:
        async with Requestor(image=image, budget=budget, max_providers=max_providers, market=market,
                             data_dir=data_dir, work_dir=work_dir, on_event=on_event, fund=fund) as r:
            return await r.run(tasks, redundancy=redundancy, retries=retries)

    return trio.run(main)
