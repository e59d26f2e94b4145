"""``POST /info`` answers in the exchange's shapes, built from the engine's state.

Supported types: perpDexs, meta, metaAndAssetCtxs, spotMeta, spotMetaAndAssetCtxs, clearinghouseState,
spotClearinghouseState, openOrders, frontendOpenOrders, userFills, orderStatus, l2Book, allMids,
userFees, userRateLimit, perpsAtOpenInterestCap, perpDexLimits, activeAssetData, extraAgents. Fees and
open-interest caps come from ``hip3.sim.terms`` (the inputs the simulator charges and enforces). An unknown type raises
``BadRequest`` (the exchange answers HTTP 422 "Failed to deserialize the JSON body ...").
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hip3.sim.accounts import Account, dstr, order_dict, position_margin, unrealized
from hip3.sim.book import fmt_units
from hip3.sim.engine import Engine
from hip3.sim.market import BadRequest, Market

_ZERO = Decimal(0)
DEPLOYER = "0x88806a71d74ad0a510b350545c9ae490912f0888"


def _dex_of(body: dict[str, Any]) -> str:
    dex = body.get("dex", "")
    if dex is None:
        return ""
    if not isinstance(dex, str):
        raise BadRequest("Failed to deserialize the JSON body into the target type: dex")
    return dex


def _user(body: dict[str, Any]) -> str:
    u = body.get("user")
    if not isinstance(u, str) or len(u) != 42 or not u.startswith("0x"):
        raise BadRequest("Failed to deserialize the JSON body into the target type: user")
    return u.lower()


def _universe_entry(name: str, szd: int, max_lev: int, hip3: bool) -> dict[str, Any]:
    e: dict[str, Any] = {"szDecimals": szd, "name": name, "maxLeverage": max_lev, "marginTableId": max_lev}
    if hip3:
        e["onlyIsolated"] = True
        e["marginMode"] = "strictIsolated"
    return e


def meta(eng: Engine, dex: str) -> dict[str, Any]:
    if dex == eng.p.dex:
        uni = [_universe_entry(m.coin, m.szd, m.spec.max_leverage, True) | eng.terms.universe_fields(m.coin)
               for m in eng.markets]
    elif dex == "":
        uni = [_universe_entry(s.name, s.sz_decimals, s.max_leverage, False) for s in eng.p.validator_markets]
    else:
        return {"universe": [], "marginTables": [], "collateralToken": 0}
    levs = sorted({e["maxLeverage"] for e in uni})
    tables = [
        [lv, {"description": "", "marginTiers": [{"lowerBound": "0.0", "maxLeverage": lv}]}] for lv in levs
    ]
    return {"universe": uni, "marginTables": tables, "collateralToken": 0}


def ctx(m: Market, oi: int = 0) -> dict[str, Any]:
    """The perp asset context (every number a string; midPx/premium/impactPxs may be null); ``oi`` in lots."""
    mid = m.mid()
    oracle = m.model.oracle_px
    return {
        "funding": "0.0000125",
        "openInterest": fmt_units(oi, m.szd),
        "prevDayPx": dstr(Decimal(repr(m.spec.start_px))),
        "dayNtlVlm": fmt_units(m.day_ntl_micro, 6),
        "premium": None
        if mid is None
        else dstr((Decimal(mid - oracle) / Decimal(oracle)).quantize(Decimal("1e-10"))),
        "oraclePx": m.px_str(oracle),
        "markPx": m.px_str(m.mark()),
        "midPx": None if mid is None else m.px_str(mid),
        "impactPxs": None,
        "dayBaseVlm": m.sz_str(m.day_base_lots),
    }


def _validator_ctx(px: float) -> dict[str, Any]:
    s = dstr(Decimal(repr(px)))
    return {
        "funding": "0.0000125",
        "openInterest": "0.0",
        "prevDayPx": s,
        "dayNtlVlm": "0.0",
        "premium": "0.0",
        "oraclePx": s,
        "markPx": s,
        "midPx": s,
        "impactPxs": [s, s],
        "dayBaseVlm": "0.0",
    }


def all_mids(eng: Engine, dex: str) -> dict[str, str]:
    if dex == eng.p.dex:
        out: dict[str, str] = {}
        for m in eng.markets:
            mid = m.mid()
            px = mid if mid is not None else (m.last_trade_px or m.model.oracle_px)
            out[m.coin] = m.px_str(px)
        return out
    return {s.name: dstr(Decimal(repr(s.start_px))) for s in eng.p.validator_markets} if dex == "" else {}


def l2_book(eng: Engine, m: Market, now_ms: int) -> dict[str, Any]:
    levels = [
        [{"px": m.px_str(px), "sz": m.sz_str(sz), "n": n} for px, sz, n in m.book.levels(is_bid, 20)]
        for is_bid in (True, False)
    ]
    return {"coin": m.coin, "time": now_ms, "levels": levels}


def clearinghouse_state(eng: Engine, acct: Account | None, dex: str, now_ms: int) -> dict[str, Any]:
    positions: list[dict[str, Any]] = []
    acct_value = ntl_total = margin_total = _ZERO
    if acct is not None and dex == "":
        acct_value = acct.perp_balance  # the validator perp dex: collateral only, nothing traded there
    if acct is not None and dex == eng.p.dex:
        acct_value = acct.balance
        for asset, pos in acct.positions.items():
            if pos.szi == 0:
                continue
            m = eng.by_asset[asset]
            mark = m.mark_dec()
            lev = eng.leverage_of(acct, m)
            upnl = unrealized(pos, m.szd, mark)
            margin = position_margin(pos, m.szd, mark, lev)
            szi = Decimal(pos.szi).scaleb(-m.szd)
            value = abs(szi) * mark
            entry = pos.entry_px or mark
            init_margin = abs(szi) * entry / lev
            acct_value += upnl
            ntl_total += value
            margin_total += margin
            liq = entry * (1 - Decimal(1) / lev) if szi > 0 else entry * (1 + Decimal(1) / lev)
            positions.append(
                {
                    "type": "oneWay",
                    "position": {
                        "coin": m.coin,
                        "szi": m.sz_str(pos.szi),
                        "entryPx": dstr(entry.quantize(Decimal("1e-8"))),
                        "leverage": {
                            "type": "isolated",
                            "value": lev,
                            "rawUsd": dstr((-szi * entry + margin).quantize(Decimal("1e-6"))),
                        },
                        "liquidationPx": dstr(liq.quantize(Decimal("1e-6"))),
                        "marginUsed": dstr(margin.quantize(Decimal("1e-6"))),
                        "maxLeverage": m.spec.max_leverage,
                        "positionValue": dstr(value.quantize(Decimal("1e-6"))),
                        "returnOnEquity": dstr(
                            (upnl / init_margin).quantize(Decimal("1e-10")) if init_margin else _ZERO
                        ),
                        "unrealizedPnl": dstr(upnl.quantize(Decimal("1e-6"))),
                        "cumFunding": {"allTime": "0.0", "sinceChange": "0.0", "sinceOpen": "0.0"},
                    },
                }
            )
    summary = {
        "accountValue": dstr(acct_value.quantize(Decimal("1e-6"))),
        "totalNtlPos": dstr(ntl_total.quantize(Decimal("1e-6"))),
        "totalRawUsd": dstr(acct_value.quantize(Decimal("1e-6"))),
        "totalMarginUsed": dstr(margin_total.quantize(Decimal("1e-6"))),
    }
    withdrawable = max(_ZERO, acct_value - margin_total)
    return {
        "marginSummary": summary,
        "crossMarginSummary": dict(summary),
        "crossMaintenanceMarginUsed": "0.0",
        "withdrawable": dstr(withdrawable.quantize(Decimal("1e-6"))),
        "assetPositions": positions,
        "time": now_ms,
    }


def _open_orders(eng: Engine, acct: Account | None, dex: str, frontend: bool) -> list[dict[str, Any]]:
    if acct is None or dex != eng.p.dex:
        return []
    out = []
    for o in sorted(acct.open_orders.values(), key=lambda o: -o.oid):
        m = eng.by_asset[o.asset]
        out.append(order_dict(o, m.coin, m.szd, frontend))
    return out


def _order_status(eng: Engine, acct: Account | None, oid: Any) -> dict[str, Any]:
    if acct is not None:
        for o in acct.open_orders.values():
            if o.oid == oid or (isinstance(oid, str) and o.cloid == oid):
                m = eng.by_asset[o.asset]
                od = order_dict(o, m.coin, m.szd, True)
                return {
                    "status": "order",
                    "order": {"order": od, "status": "open", "statusTimestamp": o.timestamp},
                }
    return {"status": "unknownOid"}


def handle_info(eng: Engine, body: Any, now_ms: int) -> Any:
    """Answer one ``/info`` body (raises BadRequest on an unknown or malformed request)."""
    if not isinstance(body, dict) or not isinstance(body.get("type"), str):
        raise BadRequest("Failed to deserialize the JSON body into the target type")
    t = body["type"]
    if t == "perpDexs":
        return [
            None,
            {
                "name": eng.p.dex,
                "fullName": "Simulated builder dex",
                "deployer": DEPLOYER,
                "oracleUpdater": None,
                "feeRecipient": None,
                "assetToFundingMultiplier": [],
            } | eng.terms.perp_dex_fields(),
        ]
    if t == "meta":
        return meta(eng, _dex_of(body))
    if t == "metaAndAssetCtxs":
        dex = _dex_of(body)
        ctxs = (
            [ctx(m, eng.terms.oi_lots(m)) for m in eng.markets]
            if dex == eng.p.dex
            else [_validator_ctx(s.start_px) for s in eng.p.validator_markets]
            if dex == ""
            else []
        )
        return [meta(eng, dex), ctxs]
    if t == "spotMeta":
        return {
            "universe": [],
            "tokens": [
                {
                    "name": "USDC",
                    "szDecimals": 8,
                    "weiDecimals": 8,
                    "index": 0,
                    "tokenId": "0x6d1e7cde53ba9467b783cb7c530ce054",
                    "isCanonical": True,
                    "evmContract": None,
                    "fullName": None,
                }
            ],
        }
    if t == "spotMetaAndAssetCtxs":
        return [handle_info(eng, {"type": "spotMeta"}, now_ms), []]
    if t == "allMids":
        return all_mids(eng, _dex_of(body))
    if t == "l2Book":
        coin = body.get("coin")
        m = eng.by_coin.get(coin) if isinstance(coin, str) else None
        return None if m is None else l2_book(eng, m, now_ms)
    if t == "perpsAtOpenInterestCap":
        return eng.terms.at_cap_list() if _dex_of(body) == eng.p.dex else []
    if t == "perpDexLimits":
        return eng.terms.perp_dex_limits() if _dex_of(body) == eng.p.dex else None
    user = _user(body)
    acct = eng.accounts.get(user)
    if t == "clearinghouseState":
        return clearinghouse_state(eng, acct, _dex_of(body), now_ms)
    if t == "spotClearinghouseState":
        return {"balances": []}
    if t in ("openOrders", "frontendOpenOrders"):
        return _open_orders(eng, acct, _dex_of(body), t == "frontendOpenOrders")
    if t == "userFills":
        return list(reversed(acct.fills)) if acct is not None else []
    if t == "orderStatus":
        return _order_status(eng, acct, body.get("oid"))
    if t == "userFees":
        return eng.terms.user_fees()
    if t == "userRateLimit":
        return eng.limits.rate_limit_info(user, acct.cum_vlm if acct is not None else _ZERO)
    if t == "activeAssetData":
        coin = body.get("coin")
        m = eng.by_coin.get(coin) if isinstance(coin, str) else None
        if m is None:
            raise BadRequest("Failed to deserialize the JSON body into the target type: coin")
        lev = eng.leverage_of(acct, m) if acct is not None else eng.p.default_leverage
        return {
            "user": user,
            "coin": m.coin,
            "leverage": {"type": "isolated", "value": lev},
            "maxTradeSzs": ["0.0", "0.0"],
            "availableToTrade": ["0.0", "0.0"],
            "markPx": m.px_str(m.mark()),
        }
    if t == "extraAgents":
        return [
            {"address": a, "name": "", "validUntil": 0} for a, mm in eng.auth.agents.items() if mm == user
        ]
    raise BadRequest(f"Failed to deserialize the JSON body into the target type: unknown variant `{t}`")
