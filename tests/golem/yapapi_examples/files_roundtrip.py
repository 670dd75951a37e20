#!/usr/bin/env python3
"""Our own yapapi script (the shape of Golem's blender example, with a shell image): upload each
input file, run a command on it in the provider's container, download the output.

Usage: files_roundtrip.py IN_DIR OUT_DIR   (prints "done <name>" per file; exit 0 when all are done)
"""
import asyncio
import pathlib
import sys

from yapapi import Golem, Task, WorkContext
from yapapi.payload import vm

IN, OUT = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])


async def worker(ctx: WorkContext, tasks):
    async for task in tasks:
        name = task.data
        script = ctx.new_script(timeout=None)
        script.upload_file(str(IN / name), f"/golem/input/{name}")
        script.run("/bin/sh", "-c", f"tr a-z A-Z < /golem/input/{name} > /golem/output/{name}.out")
        script.download_file(f"/golem/output/{name}.out", str(OUT / f"{name}.out"))
        yield script
        task.accept_result(result=name)


async def main():
    package = await vm.repo(image_hash="0" * 56)  # the test's registry stand-in answers any hash
    names = sorted(p.name for p in IN.iterdir())
    async with Golem(budget=1.0, subnet_tag="public") as golem:
        async for completed in golem.execute_tasks(worker, [Task(data=n) for n in names], payload=package):
            print("done", completed.result, flush=True)


if __name__ == "__main__":
    asyncio.run(main())
