"""Small REST reads off an actor's loop (``hip3.runtime.rest_job``) and the request-budget read
(``hip3.runtime.budget_poller``): the budget read from the simulator over HTTP becomes a
``RequestBudgetReading``; a failing call becomes an error result, never an exception that kills the worker."""

from __future__ import annotations

import select
from decimal import Decimal

from hip3.hyperliquid.rest import RestClient, RestError
from hip3.messages import RequestBudgetReading
from hip3.runtime.budget_poller import read_request_budget
from hip3.runtime.rest_job import JobResult, RestJob
from hip3.sim.app import SimServer
from hip3.sim.params import SimParams

ACCOUNT = "0x" + "ab" * 20


def test_request_budget_read_from_the_simulator() -> None:
    sim = SimServer(SimParams(request_budget_initial=123), funds={ACCOUNT: Decimal(1000)})
    sim.start()
    try:
        got = read_request_budget(RestClient(sim.url), ACCOUNT, 1_700_000_000_000)
    finally:
        sim.stop()
    assert got == RequestBudgetReading(cum_vlm_usd=Decimal(0), n_requests_used=0, n_requests_cap=123,
                                       n_requests_surplus=0, requested_ms=1_700_000_000_000)


def _wait(job: RestJob) -> list[JobResult]:
    assert select.select([job.fd], [], [], 5.0)[0], "no result within 5 s"
    return job.take()


def test_a_failed_call_is_an_error_result_and_the_worker_lives_on() -> None:
    def boom() -> None:
        raise RestError("POST /info -> HTTP 429: Too Many Requests", 429)

    job = RestJob("test:rest_job")
    try:
        for fetch, text in ((boom, "HTTP 429"), (lambda: 1 / 0, "division by zero")):
            assert job.submit("read", fetch)
            (r,) = _wait(job)
            assert r.tag == "read" and r.value is None and text in r.error
            assert not job.in_flight
        assert job.submit("ok", lambda: 42)
        assert not job.submit("second", lambda: 0), "one call at a time"
        (r,) = _wait(job)
        assert (r.tag, r.value, r.error) == ("ok", 42, "")
    finally:
        job.close()
