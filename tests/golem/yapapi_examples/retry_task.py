#!/usr/bin/env python3
"""Our own yapapi script: one task that runs for a while; if its provider dies, yapapi retries it
on another provider. Prints "started" (flushed) when the task begins, then the task's output.
"""
import asyncio

from yapapi import Golem, Task, WorkContext
from yapapi.payload import vm


async def worker(ctx: WorkContext, tasks):
    async for task in tasks:
        print("started", ctx.provider_id, flush=True)
        script = ctx.new_script(timeout=None)
        result = script.run("/bin/sh", "-c", "sleep 6; echo finished")
        yield script
        task.accept_result(result=(await result).stdout)


async def main():
    package = await vm.repo(image_hash="0" * 56)
    async with Golem(budget=1.0, subnet_tag="public") as golem:
        async for completed in golem.execute_tasks(worker, [Task(data=None)], payload=package):
            print("result", completed.result.strip(), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
