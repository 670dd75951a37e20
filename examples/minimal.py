"""A minimal SDK script: three tasks on a local network, each verified by two providers.

    yagna devnet up --providers 3
    python examples/minimal.py --data-dir ~/.local/share/yagna/devnet/requestor

(``--data-dir`` defaults to ``YAGNA_DATA_DIR``, else the devnet's requestor.)
Funds the requestor with test tokens if it has less than the budget, prints
each result, and exits 0 when every task agreed and succeeded.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import trio

from requestor_sdk import Requestor, Task, TaskFinished, locate, parse_tokens, tokens
from requestor_sdk.client import Api


def default_data_dir() -> Path:
    if os.environ.get("YAGNA_DATA_DIR"):
        return Path(os.environ["YAGNA_DATA_DIR"])
    xdg = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return xdg / "yagna" / "devnet" / "requestor"


async def main(data_dir: Path) -> int:
    budget = "1"
    api = Api(locate(data_dir))  # test networks only: top up the requestor so it can back deposits
    try:
        status = await api.payment_status()
        if status.get("test_network") and parse_tokens(status["balance"]["free"]) < parse_tokens(budget):
            await api.fund(budget)
    finally:
        await api.aclose()

    tasks = [Task(f"square-{n}", ["sh", "-c", f"echo $(({n} * {n}))"], timeout=30) for n in (2, 3, 4)]
    with tempfile.TemporaryDirectory() as out:
        async with Requestor(image="local/busybox:1", budget=budget, max_providers=3, data_dir=data_dir,
                             work_dir=out, on_event=lambda e: isinstance(e, TaskFinished)
                             and print(f"  {e.result.task.id}: {e.result.status}", file=sys.stderr)) as r:
            results = await r.run(tasks, redundancy=2)
        for res in results:
            print(res.task.id, res.status, res.stdout.strip(), "agreed by", len(res.providers), "providers")
        print(f"spent {tokens(r.spent)} of {budget} tokens")
    return 0 if all(res.ok for res in results) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir(), help="the requestor node's data dir")
    sys.exit(trio.run(main, parser.parse_args().data_dir))
