"""Parsing of ``/exchange`` response bodies (REST, and the WS post ``payload``).

Guards against:

* The post response's ``statuses`` are authoritative for an order's fate (the Rust bot froze
  when an OK post response had no matching orderUpdates message), so they must always parse.
* ALO orders are answered with a bare string ``"success"``; any bare string status (also
  ``"waitingForFill"``/``"waitingForTrigger"`` [UNVERIFIED]) is accepted, never a crash.
* pre-validation answers: one ``{"error": ...}`` for a whole batch, so the status list can be *shorter*
  than the batch; and whole-request failures ``{"status": "err", "response": "<text>"}``.
* A whole-request error must still resolve every order of the batch (``status_for``), or the batch's
  markets stay "pending" for good.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import msgspec

__all__ = ["ExchangeResponse", "OrderStatus", "StatusKind", "parse_exchange_response"]

StatusKind = Literal["filled", "resting", "error", "string", "unknown"]


class OrderStatus(msgspec.Struct, frozen=True):
    """One entry of ``response.data.statuses``.

    ``filled``: ``total_sz``/``avg_px``/``oid`` set (an IOC remainder was cancelled). ``resting``: ``oid``
    (and ``cloid`` if echoed [UNVERIFIED]). ``error``: ``text`` is the exchange's message. ``string``: a bare
    string such as ``"success"`` in ``text``. ``unknown``: an unrecognised shape (kept in ``text`` as JSON).
    """

    kind: StatusKind
    oid: int | None = None
    total_sz: Decimal | None = None
    avg_px: Decimal | None = None
    cloid: str | None = None
    text: str | None = None


class ExchangeResponse(msgspec.Struct, frozen=True):
    """A parsed ``/exchange`` body. ``ok`` is False for ``{"status":"err"}`` (``error`` holds the text)."""

    ok: bool
    error: str | None = None
    response_type: str | None = None  # "order", "cancel", "default", ...
    statuses: tuple[OrderStatus, ...] = ()

    def status_for(self, index: int) -> OrderStatus:
        """The status of the ``index``-th request of the batch, never missing.

        A whole-request error, or a status list shorter than the batch (pre-validation), yields an
        ``error`` status (the single batch error if there is one) so no order is left pending.
        """
        if not self.ok:
            return OrderStatus("error", text=self.error or "request failed")
        if index < len(self.statuses):
            return self.statuses[index]
        if len(self.statuses) == 1 and self.statuses[0].kind == "error":
            return self.statuses[0]
        return OrderStatus("error", text="no status returned for this order")


def _dec(value: Any) -> Decimal | None:
    if not isinstance(value, str):
        return None
    try:
        d = Decimal(value)
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _status(entry: Any) -> OrderStatus:
    if isinstance(entry, str):
        return OrderStatus("string", text=entry)
    if isinstance(entry, dict):
        if "error" in entry:
            err = entry["error"]
            return OrderStatus("error", text=err if isinstance(err, str) else repr(err))
        filled = entry.get("filled")
        if isinstance(filled, dict):
            total, avg, oid = _dec(filled.get("totalSz")), _dec(filled.get("avgPx")), _int(filled.get("oid"))
            if total is not None and avg is not None:
                cloid = filled.get("cloid")
                return OrderStatus("filled", oid, total, avg, cloid if isinstance(cloid, str) else None)
        resting = entry.get("resting")
        if isinstance(resting, dict) and _int(resting.get("oid")) is not None:
            cloid = resting.get("cloid")
            cloid = cloid if isinstance(cloid, str) else None
            return OrderStatus("resting", _int(resting["oid"]), cloid=cloid)
    try:
        text = msgspec.json.encode(entry).decode()
    except (TypeError, msgspec.EncodeError, RecursionError):
        text = repr(entry)[:500]
    return OrderStatus("unknown", text=text[:500])


def parse_exchange_response(body: Any) -> ExchangeResponse:
    """Parse an ``/exchange`` body (raw bytes/str or already-decoded JSON). Raises ``ValueError`` if the
    body is not a recognisable response at all (the caller then treats the request as failed)."""
    if isinstance(body, (bytes, bytearray, memoryview, str)):
        try:
            body = msgspec.json.decode(body)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:  # Recursion: absurd nesting
            raise ValueError(f"exchange response is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError(f"exchange response is not an object: {str(body)[:200]!r}")
    status = body.get("status")
    response = body.get("response")
    if status == "err":
        return ExchangeResponse(False, error=response if isinstance(response, str) else repr(response))
    if status != "ok":
        raise ValueError(f"exchange response has status {status!r}: {str(body)[:200]!r}")
    if not isinstance(response, dict):
        return ExchangeResponse(True)
    rtype = response.get("type")
    data = response.get("data")
    statuses: tuple[OrderStatus, ...] = ()
    if isinstance(data, dict) and isinstance(data.get("statuses"), list):
        statuses = tuple(_status(s) for s in data["statuses"])
    return ExchangeResponse(True, response_type=rtype if isinstance(rtype, str) else None, statuses=statuses)
