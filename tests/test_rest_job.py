"""The position tracker's small REST reads (``hip3.runtime.rest_job``): the request budget read from the
simulator over HTTP becomes a ``RequestBudgetReading``; a failing read reaches ``apply`` as an error, never as
an exception on the worker thread."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hip3.hyperliquid.rest import RestClient, RestError
from hip3.messages import RequestBudgetReading
from hip3.runtime.rest_job import RestJob, request_budget_job
from hip3.sim.app import SimServer
from hip3.sim.params import SimParams

ACCOUNT = "0x" + "ab" * 20


def test_request_budget_read_from_the_simulator() -> None:
    sim = SimServer(SimParams(request_budget_initial=123), funds={ACCOUNT: Decimal(1000)})
    sim.start()
    try:
        got: list[Any] = []
        job = request_budget_job(RestClient(sim.url), ACCOUNT, 1_700_000_000_000, lambda r, e: got.append((r, e)))
        job.run()
        job.finish()
    finally:
        sim.stop()
    assert got == [(RequestBudgetReading(cum_vlm_usd=Decimal(0), n_requests_used=0, n_requests_cap=123,
                                         n_requests_surplus=0, requested_ms=1_700_000_000_000), None)]


def test_a_failed_read_is_an_error_for_apply() -> None:
    got: list[Any] = []

    def boom() -> None:
        raise RestError("POST /info -> HTTP 429: Too Many Requests", 429)

    for fetch, text in ((boom, "HTTP 429"), (lambda: 1 / 0, "unexpected: ZeroDivisionError")):
        job = RestJob(fetch, lambda r, e: got.append((r, e)))
        job.run()
        job.finish()
        assert got[-1][0] is None and text in got[-1][1]
