"""The supervisor's one HTTP endpoint: ``/metrics``, the dashboard, and room for more (readiness).

A small stdlib server (``http.server.ThreadingHTTPServer``) in daemon threads, with a route table, so
every read-only view of the supervisor shares one listener and one set of rules:

* **Never in the supervisor's loop, never on its objects.** A handler serves bytes the loop published
  (an immutable snapshot: ``bytes`` or a frozen dataclass, handed over by one reference assignment), so
  a slow or stuck client cannot delay heartbeat checks, restarts or the hard-stop rebroadcast.
* **Read-only.** GET and HEAD; anything else is 405.
* **Bounded.** At most ``MAX_CLIENTS`` connections are served at once (the next gets a 503 at once), each
  with a ``CLIENT_TIMEOUT_S`` socket timeout; request lines and headers are bounded by ``http.server``.
* **A token where one is set.** A private route then needs ``Authorization: Bearer <token>`` or
  ``?token=<token>`` (what a browser can carry on its first load), compared in constant time; a wrong or
  missing token is 401 and is never echoed or logged. Public routes (``/metrics``, which a Prometheus
  scraper reads as before) skip it.
* **Nothing from outside.** Every answer carries a Content-Security-Policy that lets a page load nothing
  but itself and its own API (no CDN, no font, no image host, even by mistake), no caching, no framing.
"""

from __future__ import annotations

import hmac
import socket
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message as Headers
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["EndpointError", "HttpEndpoint", "Request", "Response"]

MAX_CLIENTS = 16
CLIENT_TIMEOUT_S = 5.0
SECURITY_HEADERS = (
    ("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                                "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
                                "frame-ancestors 'none'"),
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)


class EndpointError(Exception):
    """The endpoint cannot be served (the port is taken, the host does not resolve). One line."""


@dataclass(frozen=True, slots=True)
class Request:
    path: str
    query: dict[str, list[str]]
    headers: Headers


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = field(default=())


Handler = Callable[[Request], Response]


def _text(status: int, text: str) -> Response:
    return Response(status, (text + "\n").encode())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    endpoint: HttpEndpoint

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.endpoint._slots.acquire(blocking=False):
            try:
                request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer is its own business: no traceback on the operator's terminal."""

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.endpoint._slots.release()


class _RequestHandler(BaseHTTPRequestHandler):
    server: _Server
    timeout = CLIENT_TIMEOUT_S
    server_version = "hip3"
    sys_version = ""

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def _refuse(self) -> None:
        self._send(Response(405, b"read-only: GET and HEAD only\n", headers=(("Allow", "GET, HEAD"),)), head=False)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse

    def _answer(self, head: bool) -> None:
        url = urllib.parse.urlsplit(self.path)
        req = Request(url.path, urllib.parse.parse_qs(url.query), self.headers)
        try:
            resp = self.server.endpoint.dispatch(req)
        except Exception:  # a bug in a view must not kill the thread silently or show a traceback
            resp = _text(500, "internal error")
        self._send(resp, head)

    def _send(self, resp: Response, head: bool) -> None:
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        for k, v in (*SECURITY_HEADERS, *resp.headers):
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(resp.body)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: access lines would carry ``?token=`` to stderr."""


class HttpEndpoint:
    """Routes on one listener. ``route`` before ``start``; ``url(path)`` once started."""

    def __init__(self, host: str, port: int, token: str = "", max_clients: int = MAX_CLIENTS) -> None:
        self.host = host
        self.port = port
        self._token = token.encode()
        self._routes: dict[str, tuple[Handler, bool]] = {}
        self._slots = threading.BoundedSemaphore(max_clients)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def has_token(self) -> bool:
        return bool(self._token)

    def route(self, path: str, handler: Handler, *, private: bool = True) -> None:
        """Serve ``path`` (exact match) with ``handler``; ``private`` routes need the token if one is set."""
        self._routes[path] = (handler, private)

    def authorized(self, req: Request) -> bool:
        if not self._token:
            return True
        auth = req.headers.get("Authorization") or ""
        given = auth[7:].strip() if auth.startswith("Bearer ") else (req.query.get("token") or [""])[0]
        return hmac.compare_digest(given.encode(), self._token)

    def dispatch(self, req: Request) -> Response:
        found = self._routes.get(req.path)
        if found is None:
            return _text(404, "not found")
        handler, private = found
        if private and not self.authorized(req):
            return Response(401, b"a token is required: ?token=... or Authorization: Bearer ...\n",
                            headers=(("WWW-Authenticate", 'Bearer realm="hip3"'),))
        return handler(req)

    def start(self) -> None:
        try:
            family = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)[0][0]
        except socket.gaierror as e:
            raise EndpointError(f"cannot listen on {self.host}:{self.port}: {e.strerror or e}") from None
        server_cls = type("Server", (_Server,), {"address_family": family})
        try:
            server: _Server = server_cls((self.host, self.port), _RequestHandler)
        except OSError as e:
            raise EndpointError(f"cannot listen on {self.host}:{self.port}: {e.strerror or e}") from None
        server.endpoint = self
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.25},
                                        name="hip3:http", daemon=True)
        self._thread.start()

    def url(self, path: str = "/") -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.port}{path}"

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None
