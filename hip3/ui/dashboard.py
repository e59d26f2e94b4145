"""The read-only web dashboard: what ``status --watch`` shows, in a browser, served by the supervisor.

Routes on the supervisor's HTTP endpoint (``hip3.ui.http``; ``[metrics] host``/``port``):

* ``/``: the page, one HTML file with its style and script inline (``dashboard.html``). It loads
  nothing from outside (no CDN, font or image host; the endpoint's Content-Security-Policy forbids it
  anyway) and polls ``/api/status`` every ``refresh_ms``. It writes data as text, never as HTML.
* ``/api/status``: the ``status`` document (``status --json``) plus the shared selections
  (``hip3.ui.view.api_document``), as published by the supervisor's loop every ``refresh_ms``: the HTTP
  thread serves bytes, it never reads the supervisor's objects.

Off by default. Loopback unless ``[metrics] host`` says otherwise; then a token is required
(``[dashboard] token_env``), and the start is refused without one. The token is taken out of the
supervisor's environment before any actor starts, so no actor inherits it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

import msgspec

from hip3.runtime.metrics import is_loopback
from hip3.ui.http import EndpointError, HttpEndpoint, Request, Response
from hip3.ui.view import api_document

if TYPE_CHECKING:
    from hip3.config import Config
    from hip3.ops.readiness import Probes
    from hip3.runtime.logs import Log
    from hip3.runtime.metrics import SupervisorMetrics

__all__ = ["MIN_TOKEN_CHARS", "Dashboard", "open_endpoint"]

MIN_TOKEN_CHARS = 16
_ENC = msgspec.json.Encoder()


class Dashboard:
    """The page and the published status bytes."""

    def __init__(self, refresh_ms: int) -> None:
        self.refresh_ms = refresh_ms
        self.url: str | None = None
        html = resources.files("hip3.ui").joinpath("dashboard.html").read_text(encoding="utf-8")
        self._page = html.replace("__REFRESH_MS__", str(int(refresh_ms))).encode()
        self._body = b'{"running": true, "starting": true}'
        self._next_ns = 0
        self.builds = 0

    def attach(self, endpoint: HttpEndpoint) -> None:
        endpoint.route("/", self.page)
        endpoint.route("/api/status", self.api)

    def refresh(self, build: Callable[[], dict[str, Any]], now_ns: int, force: bool = False) -> None:
        """From the supervisor's loop: publish a new status document every ``refresh_ms``."""
        if now_ns < self._next_ns and not force:
            return
        self._next_ns = now_ns + self.refresh_ms * 1_000_000
        self._body = _ENC.encode(api_document(build()))  # one reference assignment: atomic for the reader
        self.builds += 1

    def page(self, _req: Request) -> Response:
        return Response(200, self._page, "text/html; charset=utf-8")

    def api(self, _req: Request) -> Response:
        return Response(200, self._body, "application/json")


def open_endpoint(cfg: Config, log: Log, metrics: SupervisorMetrics | None, probes: Probes | None = None
                  ) -> tuple[HttpEndpoint | None, Dashboard | None]:
    """The supervisor's HTTP endpoint with ``/metrics`` and/or the dashboard, and the probes ``/ready`` and
    ``/healthz`` (``hip3.ops.readiness``) whenever it listens; (None, None) if both are off.

    Raises ``EndpointError`` (one line) for a non-loopback dashboard without a token, a token too short,
    or a port that cannot be taken.
    """
    dc, mc = cfg.dashboard, cfg.metrics
    if not (dc.enabled or mc.enabled):
        return None, None
    token = ""
    if dc.enabled:
        token = os.environ.pop(dc.token_env, "").strip()  # out of the environment before any actor starts
        if not token and not is_loopback(mc.host):
            raise EndpointError(f"dashboard: host {mc.host} is not loopback, so a token is required: set "
                                f"{dc.token_env} ({MIN_TOKEN_CHARS} characters or more) or serve on 127.0.0.1")
        if token and len(token) < MIN_TOKEN_CHARS:
            raise EndpointError(f"dashboard: the token in {dc.token_env} has {len(token)} characters; "
                                f"{MIN_TOKEN_CHARS} or more are required")
    ep = HttpEndpoint(mc.host, mc.port, token)
    if metrics is not None:
        metrics.attach(ep, log)
    dash = Dashboard(dc.refresh_ms) if dc.enabled else None
    if dash is not None:
        dash.attach(ep)
    if probes is not None:
        probes.attach(ep)
    try:
        ep.start()
    except EndpointError as e:
        what = " and ".join(w for w, on in (("metrics", mc.enabled), ("dashboard", dc.enabled)) if on)
        raise EndpointError(f"{what} ([metrics] host/port): {e}") from None
    if metrics is not None:
        metrics.url = ep.url("/metrics")
        log.info("metrics_serving", url=metrics.url)
    if dash is not None:
        dash.url = ep.url("/")
        log.info("dashboard_serving", url=dash.url, token_required=ep.has_token)
    if probes is not None:
        log.info("probes_serving", ready=ep.url("/ready"), healthz=ep.url("/healthz"))
    return ep, dash
