"""The request-budget poll: reads the account's address budget (``userRateLimit``) and publishes it.

Runs inside the position tracker beside the market-terms poll, as its own small job (its own worker
thread, ``RestJob``, and timer): a slow read never delays a position resync. The reading goes out on
``positions`` as state ``request_budget`` (late joiners get it); the executor's admission
(``hip3.execution.admission``) adds the requests it sent since ``requested_ms``. A failed read is logged
and counted; the executor's own count and the exchange's refusals cover the gap until the next one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hip3 import clock
from hip3.hyperliquid.rest import RestClient
from hip3.messages import RequestBudgetReading
from hip3.runtime.bus import Publisher
from hip3.runtime.rest_job import RestJob

if TYPE_CHECKING:
    from hip3.runtime.actor import Actor

__all__ = ["BudgetPoller", "read_request_budget"]


def read_request_budget(rest: RestClient, account: str, requested_ms: int) -> RequestBudgetReading:
    """One ``userRateLimit`` read as a bus message (blocking: a worker thread). ``requested_ms``: the wall
    clock before the read (the executor adds what it sent since)."""
    r = rest.user_rate_limit(account)
    return RequestBudgetReading(cum_vlm_usd=r.cum_vlm, n_requests_used=r.n_requests_used,
                                n_requests_cap=r.n_requests_cap, n_requests_surplus=r.n_requests_surplus,
                                requested_ms=requested_ms)


class BudgetPoller:
    def __init__(self, actor: Actor, publisher: Publisher, rest: RestClient, account: str, poll_ms: int) -> None:
        self._actor = actor
        self._pub = publisher
        self._rest = rest
        self._account = account
        self._job = RestJob(f"hip3:{actor.name}:budget")
        actor.add_reader(self._job.fd, self._on_results)
        actor.every(poll_ms, self._read, first_in_ms=0)

    def busy(self) -> bool:
        """A read is in flight (a replay steps the actor alone until it is done)."""
        return self._job.in_flight

    def close(self) -> None:
        self._job.close()

    def _read(self) -> None:
        requested_ms = clock.time_ns() // 1_000_000
        self._job.submit("budget", lambda: read_request_budget(self._rest, self._account, requested_ms))

    def _on_results(self) -> None:
        for r in self._job.take():
            if isinstance(r.value, RequestBudgetReading):
                self._pub.publish(r.value, state_key="request_budget")
            else:
                self._actor.count("request_budget_read_failed")
                self._actor.log.warning("request_budget_read_failed", error=r.error or "no answer")
