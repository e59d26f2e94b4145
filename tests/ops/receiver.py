"""A local HTTP receiver for alert tests: 127.0.0.1, port 0, records what apprise's ``json://`` posts.

``mode``: "ok" answers 200; "hang" accepts the request and answers only when ``release()`` is called (a
destination that stalls); "fail" answers 500. A refusing destination is a closed port (``closed_port``).
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from typing import Any


class Receiver:
    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.messages: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.holding = threading.Event()  # a request is being held ("hang")
        self._release = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(n)
                if outer.mode == "hang":
                    outer.holding.set()
                    outer._release.wait(30)
                try:
                    outer.messages.append(json.loads(body))
                except ValueError:
                    outer.messages.append({"raw": body.decode(errors="replace")})
                outer.paths.append(self.path)
                self.send_response(500 if outer.mode == "fail" else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "hook") -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    def release(self) -> None:
        self._release.set()

    def wait(self, pred: Any, timeout_s: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if pred(self.messages):
                return True
            time.sleep(0.01)
        return False

    def texts(self) -> list[str]:
        return [f"{m.get('title', '')}\n{m.get('message', '')}" for m in self.messages]

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port
