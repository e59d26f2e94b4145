"""hip3.ui.http and hip3.ui.dashboard: one read-only endpoint on 127.0.0.1 for /metrics and the dashboard,
a token where one is set (and required off loopback), bounded clients, nothing loaded from outside."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hip3.config import Config
from hip3.runtime.logs import Log
from hip3.runtime.metrics import SupervisorMetrics
from hip3.ui.dashboard import Dashboard, open_endpoint
from hip3.ui.http import EndpointError, HttpEndpoint, Request, Response
from tests.conftest import make_config
from tests.ui.samples import status

TOKEN = "t0ken-for-the-dashboard-test"


def _get(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.fixture
def endpoint() -> Iterator[HttpEndpoint]:
    ep = HttpEndpoint("127.0.0.1", 0, token=TOKEN, max_clients=2)
    ep.route("/private", lambda _r: Response(200, b"secret"))
    ep.route("/public", lambda _r: Response(200, b"open"), private=False)

    def broken(_r: Request) -> Response:
        raise ValueError("a bug")

    ep.route("/broken", broken, private=False)
    ep.start()
    yield ep
    ep.close()


def test_routes_token_read_only_and_security_headers(endpoint: HttpEndpoint) -> None:
    assert endpoint.url("/").startswith("http://127.0.0.1:") and endpoint.port != 0
    assert _get(endpoint.url("/public"))[0::2] == (200, b"open")
    code, headers, body = _get(endpoint.url("/private"))
    assert code == 401 and b"secret" not in body and headers["WWW-Authenticate"].startswith("Bearer")
    assert _get(endpoint.url("/private?token=wrong"))[0] == 401
    assert _get(endpoint.url(f"/private?token={TOKEN}"))[0::2] == (200, b"secret")
    assert _get(endpoint.url("/private"), {"Authorization": f"Bearer {TOKEN}"})[0::2] == (200, b"secret")
    assert _get(endpoint.url("/nothing"))[0] == 404
    assert _get(endpoint.url("/public"), method="POST")[0] == 405
    assert _get(endpoint.url("/public"), method="DELETE")[0] == 405
    code, headers, body = _get(endpoint.url("/broken"))
    assert code == 500 and b"Traceback" not in body
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp and headers["Cache-Control"] == "no-store"


def test_clients_beyond_the_limit_get_503_at_once(endpoint: HttpEndpoint) -> None:
    idle = [socket.create_connection(("127.0.0.1", endpoint.port), timeout=5) for _ in range(2)]
    try:
        time.sleep(0.3)  # both accepted and holding a slot (they send nothing)
        code, _, _ = _get(endpoint.url("/public"))
        assert code == 503
    finally:
        for s in idle:
            s.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _get(endpoint.url("/public"))[0] != 200:
        time.sleep(0.1)
    assert _get(endpoint.url("/public"))[0] == 200


def test_a_taken_port_is_one_clear_error(endpoint: HttpEndpoint) -> None:
    with pytest.raises(EndpointError, match=rf"cannot listen on 127\.0\.0\.1:{endpoint.port}: "):
        HttpEndpoint("127.0.0.1", endpoint.port).start()


def _cfg(run_dir: Path, extra: str) -> Config:
    return make_config(run_dir, extra)


def test_off_by_default(run_dir: Path) -> None:
    cfg = _cfg(run_dir, "")
    assert (cfg.dashboard.enabled, cfg.metrics.enabled, cfg.metrics.host) == (False, False, "127.0.0.1")
    assert open_endpoint(cfg, Log("supervisor"), None) == (None, None)


def test_not_loopback_without_a_token_is_refused_before_anything_listens(run_dir: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HIP3_DASHBOARD_TOKEN", raising=False)
    cfg = _cfg(run_dir, '[metrics]\nhost = "0.0.0.0"\nport = 0\n[dashboard]\nenabled = true\n')
    with pytest.raises(EndpointError, match="not loopback, so a token is required: set HIP3_DASHBOARD_TOKEN"):
        open_endpoint(cfg, Log("supervisor"), None)
    monkeypatch.setenv("HIP3_DASHBOARD_TOKEN", "short")
    with pytest.raises(EndpointError, match="has 5 characters; 16 or more"):
        open_endpoint(cfg, Log("supervisor"), None)


def test_metrics_and_dashboard_share_one_endpoint_and_the_token_leaves_the_environment(
        run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIP3_DASHBOARD_TOKEN", TOKEN)
    cfg = _cfg(run_dir, "[metrics]\nenabled = true\nport = 0\n[dashboard]\nenabled = true\nrefresh_ms = 500\n")
    metrics = SupervisorMetrics()
    ep, dash = open_endpoint(cfg, Log("supervisor"), metrics)
    assert ep is not None and dash is not None
    try:
        assert "HIP3_DASHBOARD_TOKEN" not in os.environ  # no actor inherits it
        assert metrics.url == ep.url("/metrics") and dash.url == ep.url("/")
        assert _get(ep.url("/metrics"))[0] == 200  # scrapers carry no token: public, as before
        assert _get(ep.url("/api/status"))[0] == 401 and _get(ep.url("/"))[0] == 401
        code, headers, page = _get(ep.url(f"/?token={TOKEN}"))
        assert code == 200 and headers["Content-Type"].startswith("text/html")
        assert b"const REFRESH_MS = 500;" in page
        assert b"http://" not in page and b"https://" not in page and b"//cdn" not in page  # nothing from outside
        dash.refresh(lambda: status(), now_ns=1)
        code, headers, body = _get(ep.url("/api/status"), {"Authorization": f"Bearer {TOKEN}"})
        doc: dict[str, Any] = json.loads(body)
        assert code == 200 and headers["Content-Type"] == "application/json"
        assert [a["name"] for a in doc["actors"]][:2] == ["feed", "position_tracker"]
        assert [r["key"] for r in doc["view"]["key_stats"]["executor"]][:3] == ["orders_sent", "posts",
                                                                                "collateral_usd_xyz"]
    finally:
        ep.close()


def test_the_dashboard_republishes_at_most_every_refresh_ms() -> None:
    dash = Dashboard(refresh_ms=1000)
    builds: list[int] = []

    def build() -> dict[str, Any]:
        builds.append(1)
        return {"running": True, "n": len(builds)}

    for t_ms in (0, 10, 999, 1000, 1500, 2001):
        dash.refresh(build, now_ns=1_000_000_000 + t_ms * 1_000_000)
    assert len(builds) == 3
    assert json.loads(dash.api(Request("/api/status", {}, None)).body)["n"] == 3  # type: ignore[arg-type]
