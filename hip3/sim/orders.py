"""Order placement and cancels: the exchange's per-order validation, then price-time matching.

Validation, in this order, each with the exchange's error text: size lots (``Order has
zero size`` / invalid size), price (``Price must be divisible by tick size.``), oracle band (``Order price too
far from oracle``, band [UNVERIFIED], ``SimParams.oracle_band``), minimum notional at the limit price (``Order
must have minimum value of $10.``; a reduce-only order below it per ``SimParams.reduce_only_min_value``,
[UNVERIFIED]), reduce-only (``Reduce only order would increase position.``; a reduce-only order larger than
the position is cut to it), ALO crossing (``Post only order would have immediately matched, bbo was
<bid>@<ask>.``, format after "was" [UNVERIFIED]), the open-interest cap (``hip3.sim.terms``: ``Order would
increase open interest while open interest is capped`` and the related texts), margin (``Insufficient margin
to place order.``). Then the order matches against the book (maker quotes and other users' orders;
self-trades expire the resting order), an IOC remainder is cancelled (no fill at all: ``Order could not
immediately match against any resting orders. asset=<a>``), a GTC/ALO remainder rests.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from hip3.hyperliquid.errors import (
    ERR_CANCEL_MISSING_ORDER,
    ERR_IOC_CANCEL,
    ERR_MIN_TRADE_NTL,
    ERR_ORACLE,
    ERR_PERP_MARGIN,
    ERR_REDUCE_ONLY,
    ERR_TICK,
    ERR_ZERO_SIZE,
    bad_alo_px_error,
)
from hip3.hyperliquid.wire import is_valid_cloid, is_valid_price, is_valid_size
from hip3.sim.accounts import Account, apply_fill, dstr, position_margin, unrealized, ws_order
from hip3.sim.book import Order, to_units
from hip3.sim.market import BadRequest, Exchange, Market

# [UNVERIFIED] wording: a size with more decimals than szDecimals.
ERR_BAD_SIZE = "Order has invalid size."
_MISSING = {"error": ERR_CANCEL_MISSING_ORDER}
_AVG_Q = Decimal("1e-8")


def _bad(what: str) -> Exception:
    return BadRequest(f"Failed to deserialize the JSON body into the target type: {what}")


def _parse_wire(w: Any) -> tuple[int, bool, str, str, bool, str, str | None]:
    if not isinstance(w, dict):
        raise _bad("order must be an object")
    a, b, p, s, r, t, c = w.get("a"), w.get("b"), w.get("p"), w.get("s"), w.get("r"), w.get("t"), w.get("c")
    if not isinstance(a, int) or isinstance(a, bool) or not isinstance(b, bool) or not isinstance(r, bool):
        raise _bad("order fields a/b/r")
    if not isinstance(p, str) or not isinstance(s, str) or not isinstance(t, dict):
        raise _bad("order fields p/s/t")
    if c is not None and not is_valid_cloid(c):
        raise _bad(f"invalid cloid {c!r}")
    if "limit" in t:
        tif = t["limit"].get("tif") if isinstance(t["limit"], dict) else None
        if tif not in ("Gtc", "Ioc", "Alo"):
            raise _bad(f"unknown tif {tif!r}")
    elif "trigger" in t:
        tif = "trigger"
    else:
        raise _bad("order type must be limit or trigger")
    return a, b, p, s, r, str(tif), c


def place_orders(
    eng: Exchange, acct: Account, action: dict[str, Any], tx_hash: str, now_ms: int
) -> tuple[dict[str, Any], list[str], list[Any]]:
    """Handle an ``order`` action; returns (response body, cloids, statuses)."""
    wires = action.get("orders")
    if not isinstance(wires, list) or not wires:
        raise _bad("orders must be a non-empty list")
    parsed = [_parse_wire(w) for w in wires]  # the whole batch deserializes, or none of it runs
    cloids = [c for *_, c in parsed if c is not None]
    statuses = [_place_one(eng, acct, *pw, tx_hash=tx_hash, now_ms=now_ms) for pw in parsed]
    return {"status": "ok", "response": {"type": "order", "data": {"statuses": statuses}}}, cloids, statuses


def available_margin(eng: Exchange, acct: Account) -> Decimal:
    """Collateral on the builder dex + unrealised PnL - margin of positions - margin reserved by resting
    orders. Only the builder dex's own balance counts (the perp balance does not back these markets)."""
    avail = acct.balance
    for asset, pos in acct.positions.items():
        if pos.szi:
            m = eng.by_asset[asset]
            mark = m.mark_dec()
            avail += unrealized(pos, m.szd, mark) - position_margin(
                pos, m.szd, mark, eng.leverage_of(acct, m)
            )
    for o in acct.open_orders.values():
        m = eng.by_asset[o.asset]
        avail -= Decimal(o.px * o.sz).scaleb(-6) / eng.leverage_of(acct, m)
    return avail


def _place_one(
    eng: Exchange,
    acct: Account,
    a: int,
    is_buy: bool,
    p: str,
    s: str,
    reduce_only: bool,
    tif: str,
    cloid: str | None,
    *,
    tx_hash: str,
    now_ms: int,
) -> Any:
    m = eng.by_asset.get(a)
    if m is None:
        return {"error": f"Asset {a} is not traded by the simulator."}
    if tif == "trigger":
        return {"error": "Trigger orders are not supported by the simulator."}
    # Plain decimal strings only (no exponent, no absurd magnitude): "1e999990" would otherwise become a
    # million-digit integer in to_units and stall the event loop for seconds.
    if not (isinstance(p, str) and isinstance(s, str)) or any(ch in "eE" for ch in p + s) or len(p) > 40 or len(s) > 40:
        raise _bad(f"p/s must be plain decimal strings: {str(p)[:50]!r} {str(s)[:50]!r}")
    try:
        px_d, sz_d = Decimal(p), Decimal(s)
    except (InvalidOperation, ArithmeticError):
        raise _bad(f"p/s must be decimal strings: {p!r} {s!r}") from None
    if sz_d.is_finite() and sz_d == 0:
        return {"error": ERR_ZERO_SIZE}
    if not is_valid_size(sz_d, m.szd):
        return {"error": ERR_BAD_SIZE}
    if not is_valid_price(px_d, m.szd):
        return {"error": ERR_TICK}
    px, lots = to_units(px_d, m.px_dec), to_units(sz_d, m.szd)
    if px is None or lots is None:  # integer prices with too many digits cannot be ticks of this market
        return {"error": ERR_TICK}
    oracle = m.model.oracle_px
    if abs(px - oracle) > oracle * eng.p.oracle_band:
        return {"error": ERR_ORACLE}
    pos = acct.positions.get(a)
    szi = pos.szi if pos is not None else 0
    if px * lots < eng.min_notional_micro and not _min_value_exempt(eng, reduce_only, is_buy, lots, szi):
        return {"error": ERR_MIN_TRADE_NTL}
    if reduce_only:
        if szi == 0 or (szi > 0) == is_buy:
            return {"error": ERR_REDUCE_ONLY}
        lots = min(lots, abs(szi))
    book = m.book
    if tif == "Alo" and book.crosses(is_buy, px):
        b, ask = book.best_bid(), book.best_ask()
        bbo = f"{m.px_str(b) if b is not None else 'None'}@{m.px_str(ask) if ask is not None else 'None'}"
        return {"error": bad_alo_px_error(bbo)}
    # Margin and the open-interest cap only for the part that opens or increases exposure.
    opening = lots if szi == 0 or (szi > 0) == is_buy else max(0, lots - abs(szi))
    oi_error = eng.terms.check_order(m, is_buy, px, 0 if reduce_only else opening)
    if oi_error is not None:
        return {"error": oi_error}
    if opening and not reduce_only:
        need = Decimal(px * opening).scaleb(-6) / eng.leverage_of(acct, m)
        if need > available_margin(eng, acct):
            return {"error": ERR_PERP_MARGIN}
    order = Order(eng.new_oid(), acct.address, a, is_buy, px, lots, now_ms, tif, cloid, reduce_only)
    fills, self_cancels = book.match(is_buy, px, lots, acct.address)
    for sc in self_cancels:
        _forget(eng, sc, "selfTradeCanceled", now_ms)
    filled = 0
    ntl = 0
    for f in fills:
        filled += f.sz
        ntl += f.px * f.sz
        _book_fill(eng, m, acct, order, is_buy, f.px, f.sz, True, tx_hash, now_ms)
        maker = f.maker
        if maker.owner is not None:
            macct = eng.accounts[maker.owner]
            _book_fill(eng, m, macct, maker, maker.is_buy, f.px, f.sz, False, tx_hash, now_ms)
            if maker.sz == 0:
                macct.open_orders.pop(maker.oid, None)
                eng.outbox.order_update(macct.address, ws_order(maker, m.coin, m.szd, "filled", now_ms))
            else:
                eng.outbox.order_update(macct.address, ws_order(maker, m.coin, m.szd, "open", now_ms))
    if fills or self_cancels:
        eng.outbox.books.add(m.index)
        eng.outbox.ctxs.add(m.index)
    order.sz = lots - filled
    if tif == "Ioc":
        if filled == 0:
            return {"error": f"{ERR_IOC_CANCEL} asset={a}"}
        eng.outbox.order_update(
            acct.address, ws_order(order, m.coin, m.szd, "filled" if order.sz == 0 else "canceled", now_ms)
        )
        return {"filled": _filled(m, filled, ntl, order.oid)}
    if order.sz == 0:
        eng.outbox.order_update(acct.address, ws_order(order, m.coin, m.szd, "filled", now_ms))
        return {"filled": _filled(m, filled, ntl, order.oid)}
    book.add(order)
    acct.open_orders[order.oid] = order
    eng.outbox.books.add(m.index)
    eng.outbox.order_update(acct.address, ws_order(order, m.coin, m.szd, "open", now_ms))
    if tif == "Alo" and eng.p.alo_status == "success":
        return "success"
    return {"resting": {"oid": order.oid}}


def _min_value_exempt(eng: Exchange, reduce_only: bool, is_buy: bool, lots: int, szi: int) -> bool:
    """A reduce-only order below the minimum value (``SimParams.reduce_only_min_value``, [UNVERIFIED]
    rule in ``hip3.hyperliquid.rules``): exempt always, only when it closes the whole position, or never."""
    rule = eng.p.reduce_only_min_value
    if not reduce_only or rule == "enforced" or szi == 0 or (szi > 0) == is_buy:
        return False
    return rule == "exempt" or lots >= abs(szi)


def _filled(m: Market, lots: int, ntl: int, oid: int) -> dict[str, Any]:
    avg = (Decimal(ntl) / Decimal(lots)).scaleb(-m.px_dec).quantize(_AVG_Q)
    return {"totalSz": m.sz_str(lots), "avgPx": dstr(avg), "oid": oid}


def _book_fill(
    eng: Exchange,
    m: Market,
    acct: Account,
    order: Order,
    is_buy: bool,
    px: int,
    lots: int,
    crossed: bool,
    tx_hash: str,
    now_ms: int,
) -> None:
    rate = eng.terms.rate(m, crossed)
    fill = apply_fill(
        acct, m.asset, m.coin, m.szd, is_buy, px, lots, rate, crossed, order, eng.new_tid(), tx_hash, now_ms
    )
    eng.outbox.fill(acct.address, fill)
    if crossed:
        m.last_trade_px = px
        m.day_ntl_micro += px * lots
        m.day_base_lots += lots


def _forget(eng: Exchange, o: Order, status: str, now_ms: int) -> None:
    """A resting user order leaves the book (already removed from it) with ``status``."""
    m = eng.by_asset[o.asset]
    acct = eng.accounts[o.owner] if o.owner is not None else None
    if acct is not None:
        acct.open_orders.pop(o.oid, None)
        eng.outbox.order_update(acct.address, ws_order(o, m.coin, m.szd, status, now_ms))


def cancel_order(eng: Exchange, acct: Account, o: Order, status: str, now_ms: int) -> None:
    """Take one of ``acct``'s resting orders off the book with ``status`` (canceled, scheduledCancel...)."""
    m = eng.by_asset[o.asset]
    m.book.remove(o)
    eng.outbox.books.add(m.index)
    _forget(eng, o, status, now_ms)


def cancel_by_oid(
    eng: Exchange, acct: Account, action: dict[str, Any], now_ms: int
) -> tuple[dict[str, Any], list[Any]]:
    cancels = action.get("cancels")
    if not isinstance(cancels, list) or not cancels:
        raise _bad("cancels must be a non-empty list")
    statuses: list[Any] = []
    for c in cancels:
        if not isinstance(c, dict) or not isinstance(c.get("a"), int) or not isinstance(c.get("o"), int):
            raise _bad("cancel must be {a, o}")
        o = acct.open_orders.get(c["o"])
        if o is None or o.asset != c["a"]:
            statuses.append(_MISSING)
        else:
            cancel_order(eng, acct, o, "canceled", now_ms)
            statuses.append("success")
    return {"status": "ok", "response": {"type": "cancel", "data": {"statuses": statuses}}}, statuses


def cancel_by_cloid(
    eng: Exchange, acct: Account, action: dict[str, Any], now_ms: int
) -> tuple[dict[str, Any], list[str], list[Any]]:
    cancels = action.get("cancels")
    if not isinstance(cancels, list) or not cancels:
        raise _bad("cancels must be a non-empty list")
    statuses: list[Any] = []
    cloids: list[str] = []
    for c in cancels:
        if (
            not isinstance(c, dict)
            or not isinstance(c.get("asset"), int)
            or not is_valid_cloid(c.get("cloid"))
        ):
            raise _bad("cancel must be {asset, cloid}")
        cloids.append(c["cloid"])
        found = next(
            (o for o in acct.open_orders.values() if o.cloid == c["cloid"] and o.asset == c["asset"]), None
        )
        if found is None:
            statuses.append(_MISSING)
        else:
            cancel_order(eng, acct, found, "canceled", now_ms)
            statuses.append("success")
    return {"status": "ok", "response": {"type": "cancel", "data": {"statuses": statuses}}}, cloids, statuses
