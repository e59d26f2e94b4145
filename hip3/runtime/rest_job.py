"""Small periodic REST reads run on an actor's REST worker thread, their results applied on the actor's
own thread (the position tracker's worker does the position syncs and these).

A ``RestJob`` is handed to the worker, which calls ``run()`` (the blocking read; any failure becomes
``error``, never an exception that kills the worker); the actor then calls ``finish()``, which hands the
result or the error to ``apply``. ``request_budget_job`` is the one that reads the account's request
budget (``userRateLimit``) for the executor's admission.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hip3.hyperliquid.rest import RestClient, RestError, UserRateLimit
from hip3.messages import RequestBudgetReading

__all__ = ["RestJob", "request_budget_job"]


class RestJob:
    """``fetch`` runs on the worker thread; ``apply(result, error)`` on the actor's thread."""

    __slots__ = ("apply", "error", "fetch", "result")

    def __init__(self, fetch: Callable[[], Any], apply: Callable[[Any, str | None], None]) -> None:
        self.fetch = fetch
        self.apply = apply
        self.result: Any = None
        self.error: str | None = None

    def run(self) -> None:
        try:
            self.result = self.fetch()
        except RestError as e:
            self.error = str(e)
        except Exception as e:  # never let the worker die silently
            self.error = f"unexpected: {e!r}"

    def finish(self) -> None:
        self.apply(self.result, self.error)


def request_budget_job(rest: RestClient, account: str, requested_ms: int,
                       apply: Callable[[RequestBudgetReading | None, str | None], None]) -> RestJob:
    """Read ``userRateLimit`` for ``account``; ``apply`` gets the reading as a bus message (or the error).
    ``requested_ms``: the wall clock now, before the read (the executor adds what it sent since)."""

    def fetch() -> RequestBudgetReading:
        r: UserRateLimit = rest.user_rate_limit(account)
        return RequestBudgetReading(cum_vlm_usd=r.cum_vlm, n_requests_used=r.n_requests_used,
                                    n_requests_cap=r.n_requests_cap, n_requests_surplus=r.n_requests_surplus,
                                    requested_ms=requested_ms)

    return RestJob(fetch, apply)
