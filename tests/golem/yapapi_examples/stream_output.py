#!/usr/bin/env python3
"""Our own yapapi script: hello world with ``stream_output=True`` (runtime events over SSE); prints
each line of output as yapapi's CommandStdOut events bring it."""
import asyncio

from yapapi import Golem, Task, WorkContext, events
from yapapi.payload import vm


async def worker(ctx: WorkContext, tasks):
    async for task in tasks:
        script = ctx.new_script()
        result = script.run("/bin/sh", "-c", "echo streamed-one; sleep 0.5; echo streamed-two")
        yield script
        task.accept_result(result=(await result).stdout)


async def main():
    package = await vm.repo(image_hash="0" * 56)
    async with Golem(budget=1.0, subnet_tag="public", stream_output=True) as golem:
        golem.add_event_consumer(lambda e: print("stdout", e.output.strip(), flush=True), ["CommandStdOut"])
        async for completed in golem.execute_tasks(worker, [Task(data=None)], payload=package):
            print("result", repr(completed.result), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
