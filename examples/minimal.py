"""Three tasks, each verified by two providers: `yagna devnet up && python examples/minimal.py`."""

import trio

from requestor_sdk import Requestor, Task, tokens


async def main() -> bool:
    tasks = [Task(f"square-{n}", ["sh", "-c", f"echo $(({n} * {n}))"]) for n in (2, 3, 4)]
    async with Requestor(image="local/busybox:1", budget="1") as r:  # the node, test tokens, a work dir: found
        results = await r.run(tasks, redundancy=2)
    for res in results:
        print(res.task.id, res.status, res.stdout.strip(), "agreed by", len(res.providers), "providers")
    print("spent", tokens(r.spent), "tokens")
    return all(res.ok for res in results)


raise SystemExit(0 if trio.run(main) else 1)
