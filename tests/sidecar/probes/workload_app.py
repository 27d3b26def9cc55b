"""A workload for the end-to-end probe tests, run by `mesh sidecar ... -- python workload_app.py PORT DIR`.

``GET /ready`` answers 503 while ``DIR/unready`` exists, ``GET /live`` 500 while ``DIR/dead`` exists
(removed at start, so a restart cures it), ``GET /slow?s=N`` answers after N seconds, anything
else answers with the process id (``GET /exit`` exits with status 3 at once). Each start appends
the pid to ``DIR/starts``. SIGTERM exits 0.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit


def main() -> None:
    port, directory = int(sys.argv[1]), Path(sys.argv[2])
    (directory / "dead").unlink(missing_ok=True)
    with (directory / "starts").open("a") as starts:
        starts.write(f"{os.getpid()}\n")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            status, body = 200, f"{os.getpid()}\n"
            if url.path == "/ready" and (directory / "unready").exists():
                status = 503
            elif url.path == "/live" and (directory / "dead").exists():
                status = 500
            elif url.path == "/exit":  # a crash
                os._exit(3)
            elif url.path == "/slow":
                time.sleep(float(parse_qs(url.query).get("s", ["1"])[0]))
                body = "slow done\n"
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


if __name__ == "__main__":
    main()
