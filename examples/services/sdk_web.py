"""A web service on the network, from Python: deploy it, wait until it is healthy, fetch its page, close it.

    yagna devnet up --providers 2
    python examples/services/sdk_web.py --data-dir ~/.local/share/yagna/devnet/requestor

(``--data-dir`` defaults to ``YAGNA_DATA_DIR``, else the devnet's requestor.) One replica of
busybox's httpd serves a page it writes when it starts; the requestor's daemon forwards a local
port to it. The page goes to stdout, the rest to stderr. Leaving ``async with Services()`` closes
the deployment: its container stops, its agreement ends, its payment channel settles.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import httpx
import trio

from requestor_sdk import Services

MANIFEST = """\
version: "2.0"
services:
  web:
    image: local/busybox:1
    env: ["GREETING=hello from a yagna service"]
    command: ["sh", "-c", 'echo "$GREETING" > /work/index.html; echo web started; exec httpd -f -p 8080 -h /work']
    expose: [{port: 8080, as: 80, to: [{global: true}]}]
profiles:
  compute:
    web: {resources: {cpu: {units: 0.5}, memory: {size: 64Mi}, storage: {size: 64Mi}}}
  placement:
    anywhere: {pricing: {web: {denom: tglm, amount: 1}}}
deployment:
  web: {anywhere: {profile: web, count: 1}}
"""


async def main(data_dir: Path) -> int:
    async with Services(data_dir=data_dir) as services:
        dep = await services.deploy(MANIFEST, source="sdk_web", payment_interval_s=1)
        print(f"deployment {dep.deployment_id}: placing its replica", file=sys.stderr)
        status = await dep.wait_healthy(timeout=90)
        url = dep.endpoint("web", 8080)
        print(f"web-0 runs on {status.replicas[0].provider_id}, reached at {url}", file=sys.stderr)
        async with httpx.AsyncClient() as http:
            page = (await http.get(f"{url}/index.html", timeout=10)).raise_for_status().text
        print(page.strip())
        async for line in dep.logs(service="web"):  # what it said so far (follow=True would go on until it closes)
            print(f"  [{line.source}] {line.text}", file=sys.stderr)
    print(f"closed; it cost {dep.last.cost} tokens, {dep.last.paid} paid", file=sys.stderr)
    return 0


def default_data_dir() -> Path:
    if os.environ.get("YAGNA_DATA_DIR"):
        return Path(os.environ["YAGNA_DATA_DIR"])
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "yagna" / "devnet" / "requestor"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir(), help="the requestor node's data dir")
    sys.exit(trio.run(main, parser.parse_args().data_dir))
