"""``gftp``: the file-transfer helper Golem's SDK starts (``gftp server``), for our daemon.

Golem's requestor SDK (yapapi, golem-js) spawns ``gftp server`` from ``PATH`` before it talks to
the market and speaks newline-delimited JSON-RPC 2.0 to it on stdin/stdout:

- ``version`` -> a semver string (>= 0.7.3: the SDK also uses ``close``);
- ``publish {files: [path]}`` -> ``[{file, url}]``: the daemon will serve each file to the
  provider of an activity whose exe-script names the URL in a ``transfer`` command;
- ``receive {output_file}`` -> ``{file, url}``: a URL a ``transfer`` may write to; the bytes
  arrive in ``output_file``;
- ``close {urls}`` -> ``[bool]``: those URLs are forgotten;
- ``shutdown`` -> ``null``, then it exits.

URLs are minted by the daemon (``POST /api/v1/gftp/...`` with the app key from ``YAGNA_APPKEY``,
at ``YAGNA_API_URL``, as the SDK itself uses); files move over our libp2p blob transfer and are
checked by hash. A request line is at most 1 MiB; a malformed one gets a JSON-RPC error and the
helper goes on.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TextIO

VERSION = "0.7.4"
MAX_LINE = 1 << 20


class _RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _daemon_call(path: str, body: dict[str, Any]) -> Any:
    import httpx

    url = os.environ.get("YAGNA_API_URL", "http://127.0.0.1:7465").rstrip("/")
    key = os.environ.get("YAGNA_APPKEY", "")
    try:
        resp = httpx.post(f"{url}/api/v1/gftp/{path}", json=body, headers={"Authorization": f"Bearer {key}"},
                          timeout=60)
    except httpx.HTTPError as exc:
        raise _RpcError(-32000, f"cannot reach the yagna daemon at {url}: {exc}") from None
    if resp.status_code != 200:
        try:
            message = resp.json().get("message", resp.text)
        except ValueError:
            message = resp.text
        raise _RpcError(-32000, f"the daemon refused {path}: {message}")
    return resp.json()


def _handle(method: str, params: Any) -> tuple[Any, bool]:
    """``(result, stop)`` of one call."""
    if method == "version":
        return VERSION, False
    if method == "shutdown":
        return None, True
    if not isinstance(params, dict):
        raise _RpcError(-32602, "params must be an object")
    if method == "publish":
        files = params.get("files")
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise _RpcError(-32602, "publish takes {files: [path, ...]}")
        return [{"file": f, "url": _daemon_call("publish", {"path": os.path.abspath(f)})["url"]} for f in files], False
    if method == "receive":
        out = params.get("output_file")
        if not isinstance(out, str):
            raise _RpcError(-32602, "receive takes {output_file: path}")
        path = os.path.abspath(out)
        return {"file": out, "url": _daemon_call("receive", {"path": path})["url"]}, False
    if method == "close":
        urls = params.get("urls")
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise _RpcError(-32602, "close takes {urls: [url, ...]}")
        return _daemon_call("close", {"urls": urls})["closed"], False
    raise _RpcError(-32601, f"unknown method {method[:60]!r}")


def serve(stdin: TextIO, stdout: TextIO) -> None:
    while True:
        line = stdin.readline(MAX_LINE + 1)
        if not line:
            return
        if not line.strip():
            continue
        req_id: Any = None
        try:
            if len(line) > MAX_LINE:
                raise _RpcError(-32600, f"a request line is at most {MAX_LINE} bytes")
            try:
                req = json.loads(line)
            except ValueError:
                raise _RpcError(-32700, "not JSON") from None
            if not isinstance(req, dict) or not isinstance(req.get("method"), str):
                raise _RpcError(-32600, "a request is {jsonrpc, id, method, params}")
            req_id = req.get("id")
            result, stop = _handle(req["method"], req.get("params"))
            reply: dict[str, Any] = {"jsonrpc": "2.0", "id": req_id, "result": result}
        except _RpcError as exc:
            reply, stop = {"jsonrpc": "2.0", "id": req_id, "error": {"code": exc.code, "message": str(exc)}}, False
        stdout.write(json.dumps(reply) + "\n")
        stdout.flush()
        if stop:
            return


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--version"] or args[:1] == ["-V"]:
        print(f"gftp {VERSION} (yagna-py)")
        return 0
    if args[:1] != ["server"]:
        print("usage: gftp server   (JSON-RPC on stdin/stdout, started by Golem's SDK)", file=sys.stderr)
        return 2
    serve(sys.stdin, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
