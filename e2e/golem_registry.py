"""A stand-in for Golem's image registry on a test's own addresses (``e2e/test_golem_yapapi.py``).

Golem's SDK looks an image up at ``https://registry.golem.network/v1/image/info?hash=...`` before it
talks to the daemon; the test maps that name to 127.0.0.1 inside its network namespace and trusts
this server's self-signed certificate. Any hash is answered with the one ``.gvmi`` given (made with
``yagna image pack``): its real sha3-224 and an http URL on 127.0.0.1 where the provider downloads it.

Run: ``python e2e/golem_registry.py --gvmi FILE --cert CERT --key KEY [--http-port 8000]``; prints
``ready <sha3>`` once both servers listen.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import json
import os
import ssl
import threading


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gvmi", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--http-port", type=int, default=8000)
    args = parser.parse_args()
    with open(args.gvmi, "rb") as f:
        data = f.read()
    sha3 = hashlib.sha3_224(data).hexdigest()
    url = f"http://127.0.0.1:{args.http_port}/{os.path.basename(args.gvmi)}"
    info = json.dumps({"http": url, "https": url, "sha3": sha3, "size": len(data)}).encode()

    class Info(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if not self.path.startswith("/v1/image/info"):
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(info)))
            self.end_headers()
            self.wfile.write(info)

        def do_HEAD(self) -> None:  # noqa: N802
            self.send_response(200)
            self.end_headers()

    files = http.server.ThreadingHTTPServer(("127.0.0.1", args.http_port), functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=os.path.dirname(os.path.abspath(args.gvmi))))
    threading.Thread(target=files.serve_forever, daemon=True).start()
    tls = http.server.ThreadingHTTPServer(("127.0.0.1", 443), Info)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    tls.socket = context.wrap_socket(tls.socket, server_side=True)
    print("ready", sha3, flush=True)
    tls.serve_forever()


if __name__ == "__main__":
    main()
