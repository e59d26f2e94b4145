"""The simulated exchange's state machine: markets, books, accounts, signed actions, the clock-driven tick.

Pure and single-threaded: no sockets, no real clock. Every entry point takes ``now_ms``; the server
(hip3.sim.server) calls it from its event loop, tests call it with a virtual clock. What happened is
collected in an ``Outbox`` (books changed, oracle/ctx changed, orderUpdates and fills per user) that the
server drains and publishes.

``exchange(body, now_ms)`` answers a ``POST /exchange`` body exactly as the exchange does
(``{"status":"ok","response":{...}}`` / ``{"status":"err","response":"..."}``), and raises
``BadRequest`` where the exchange fails to deserialize the body (HTTP 422).
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Any

from hip3.hyperliquid.errors import ERR_MUST_DEPOSIT
from hip3.hyperliquid.signing import recover_l1_signer
from hip3.sim import orders, transfers
from hip3.sim.accounts import Account
from hip3.sim.auth import Authority, NonceStore, recover_approve_agent, user_not_exist_error
from hip3.sim.book import MAKER, Order
from hip3.sim.limits import AddressLimits, action_weight
from hip3.sim.market import OK_DEFAULT, BadRequest, Market, Outbox, err
from hip3.sim.model import Model
from hip3.sim.orderlog import OrderLog, reduce_only_flags
from hip3.sim.params import SimParams
from hip3.sim.terms import SimTerms

SCHEDULE_CANCEL_MIN_LEAD_MS = 5000


class Engine:
    """The whole simulated exchange. Not thread-safe: one owner (the server's event loop, or a test)."""

    def __init__(self, params: SimParams, seed: int, now_ms: int, order_log: OrderLog | None = None) -> None:
        self.p = params
        self.seed = seed
        self.now_ms = now_ms
        self.model = Model(params.markets, params.model, seed, now_ms)
        self.markets = [Market(i, s, self.model.markets[i]) for i, s in enumerate(params.markets)]
        self.by_asset = {m.asset: m for m in self.markets}
        self.by_coin = {m.coin: m for m in self.markets}
        self.accounts: dict[str, Account] = {}
        self.auth = Authority()
        self.nonces = NonceStore(params.nonce_window)
        self.order_log = order_log or OrderLog(None)
        self.outbox = Outbox()
        self.terms = SimTerms(self, params.fees, params.oi)  # fees per fill, open-interest caps
        self.min_notional_micro = int(Decimal(repr(params.min_notional_usd)) * 1_000_000)
        self.limits = AddressLimits(params.request_budget_initial, Decimal(repr(params.schedule_cancel_min_volume_usd)),
                                    params.schedule_cancel_daily_limit)
        self._next_oid = 300_000_000_000
        self._next_tid = 690_000_000_000_000
        self._apply_quotes()

    # ---- ids ----------------------------------------------------------------------------------
    def new_oid(self) -> int:
        self._next_oid += 1
        return self._next_oid

    def new_tid(self) -> int:
        self._next_tid += 7
        return self._next_tid

    # ---- operator controls --------------------------------------------------------------------
    def fund(self, address: str, usd: Decimal, on: str | None = None) -> Account:
        """Create (or top up) a funded account: on the builder dex (``on="dex"``) or the validator perp
        dex (``"perp"``); default ``SimParams.funds_on``."""
        addr = address.lower()
        acct = self.accounts.get(addr)
        if acct is None:
            acct = self.accounts[addr] = Account(addr, Decimal(0))
        if (on or self.p.funds_on) == "perp":
            acct.perp_balance += usd
        else:
            acct.balance += usd
        return acct

    def market(self, coin: str) -> Market:
        m = self.by_coin.get(coin)
        if m is None:
            raise KeyError(f"unknown coin {coin!r}")
        return m

    def jump(self, coin: str, bps: float, now_ms: int) -> None:
        """Force an oracle jump now (a scripted dislocation: the makers follow after the model's lag)."""
        self.model.jump(self.market(coin).index, bps, now_ms)
        self.tick(now_ms)

    def set_oracle(self, coin: str, px: float, now_ms: int, lag_ms: int | None = None) -> None:
        self.model.set_oracle(self.market(coin).index, px, now_ms, lag_ms)
        self.tick(now_ms)

    # ---- the clock ----------------------------------------------------------------------------
    def tick(self, now_ms: int) -> None:
        """Advance the market model and fire due scheduled cancels (dead man's switch)."""
        self.now_ms = now_ms
        self.model.step(now_ms)
        self._apply_quotes()
        self.fire_scheduled_cancels(now_ms)

    def fire_scheduled_cancels(self, now_ms: int) -> bool:
        """The dead man's switch: every account whose scheduled time passed loses its open orders, and the
        trigger counts toward its daily limit. True if an order was cancelled."""
        cancelled = False
        for acct in self.accounts.values():
            if acct.schedule_cancel_ms is not None and acct.schedule_cancel_ms <= now_ms:
                acct.schedule_cancel_ms = None
                self.limits.on_trigger(acct.address, now_ms)
                for o in list(acct.open_orders.values()):
                    orders.cancel_order(self, acct, o, "scheduledCancel", now_ms)
                    cancelled = True
        return cancelled

    def _apply_quotes(self) -> None:
        changed = self.model.quotes_changed
        if changed:
            for i in changed:
                m = self.markets[i]
                m.book.remove_owner(MAKER)
                ts = self.now_ms
                for px, sz in m.model.bids:
                    m.book.add(Order(0, MAKER, m.asset, True, px, sz, ts))
                for px, sz in m.model.asks:
                    m.book.add(Order(0, MAKER, m.asset, False, px, sz, ts))
            self.outbox.books |= changed
            self.outbox.ctxs |= changed
            self.model.quotes_changed = set()
        if self.model.oracle_changed:
            self.outbox.ctxs |= self.model.oracle_changed
            self.model.oracle_changed = set()

    # ---- /exchange ----------------------------------------------------------------------------
    def exchange(self, body: Any, now_ms: int) -> dict[str, Any]:
        """Answer one ``/exchange`` body. Raises BadRequest on an undeserializable body."""
        self.now_ms = now_ms
        if not isinstance(body, dict):
            raise BadRequest("Failed to deserialize the JSON body into the target type")
        action, nonce, sig = body.get("action"), body.get("nonce"), body.get("signature")
        vault, expires = body.get("vaultAddress"), body.get("expiresAfter")
        if (
            not isinstance(action, dict)
            or not isinstance(action.get("type"), str)
            or not isinstance(nonce, int)
            or isinstance(nonce, bool)
            or not isinstance(sig, dict)
            or not (vault is None or isinstance(vault, str))
            or not (expires is None or (isinstance(expires, int) and not isinstance(expires, bool)))
        ):
            raise BadRequest("Failed to deserialize the JSON body into the target type: bad envelope")
        atype: str = action["type"]
        if atype == "approveAgent":
            return self._approve_agent(action, nonce, sig, now_ms)
        if atype == "sendAsset":
            return transfers.send_asset(self, action, nonce, sig, now_ms)
        try:
            signer = recover_l1_signer(action, vault, nonce, sig, self.p.is_mainnet, expires)
        except ValueError as e:
            raise BadRequest(f"Failed to deserialize the JSON body into the target type: {e}") from None
        vault_l = vault.lower() if vault is not None else None
        account = self.auth.account_for(signer, vault_l, self.accounts)
        if account is None:
            return err(user_not_exist_error(signer))
        if expires is not None and expires < now_ms:
            # [UNVERIFIED] wording of the stale-expiresAfter rejection.
            return err(f"Action expired: expiresAfter {expires} < {now_ms}")
        acct = self.accounts[account]
        lerr = self.limits.charge(account, acct.cum_vlm, atype, action_weight(action), now_ms)
        if lerr is not None:
            self.order_log.write({"time_ms": now_ms, "nonce": nonce, "signer": signer, "account": account,
                                  "action_type": atype, "cloids": [], "statuses": [], "status": "err",
                                  "reduce_only": reduce_only_flags(action) if atype == "order" else [],
                                  "refused": "request_budget"})
            return err(lerr)
        nerr = self.nonces.check_and_use(signer, nonce, now_ms)
        if nerr is not None:
            return err(nerr)
        tx_hash = "0x" + hashlib.sha256(f"{signer}:{nonce}".encode()).hexdigest()
        cloids: list[str] = []
        statuses: list[Any] = []
        if atype == "order":
            resp, cloids, statuses = orders.place_orders(self, acct, action, tx_hash, now_ms)
        elif atype == "cancel":
            resp, statuses = orders.cancel_by_oid(self, acct, action, now_ms)
        elif atype == "cancelByCloid":
            resp, cloids, statuses = orders.cancel_by_cloid(self, acct, action, now_ms)
        elif atype == "scheduleCancel":
            resp = self._schedule_cancel(acct, action, now_ms)
        elif atype == "updateLeverage":
            resp = self._update_leverage(acct, action)
        elif atype in ("noop", "updateIsolatedMargin", "topUpIsolatedOnlyMargin", "agentSetAbstraction"):
            resp = OK_DEFAULT
        else:
            raise BadRequest(
                f"Failed to deserialize the JSON body into the target type: unknown variant `{atype}`"
            )
        self.order_log.write(
            {
                "time_ms": now_ms,
                "nonce": nonce,
                "signer": signer,
                "account": account,
                "action_type": atype,
                "cloids": cloids,
                "statuses": statuses,
                "status": resp["status"],
                "reduce_only": reduce_only_flags(action) if atype == "order" else [],
                "expires_after": expires,
            }
        )
        return resp

    def _approve_agent(
        self, action: dict[str, Any], nonce: int, sig: dict[str, Any], now_ms: int
    ) -> dict[str, Any]:
        try:
            master = recover_approve_agent(action, sig)
            agent = str(action["agentAddress"]).lower()
        except (ValueError, KeyError) as e:
            raise BadRequest(f"Failed to deserialize the JSON body into the target type: {e}") from None
        if master not in self.accounts:
            return err(f"{ERR_MUST_DEPOSIT} {master}")
        if action.get("nonce") != nonce:
            return err(
                "Invalid nonce: action nonce does not match the envelope nonce"
            )  # [UNVERIFIED] wording
        nerr = self.nonces.check_and_use(master, nonce, now_ms)
        if nerr is not None:
            return err(nerr)
        self.auth.approve(master, agent)
        self.order_log.write(
            {
                "time_ms": now_ms,
                "nonce": nonce,
                "signer": master,
                "account": master,
                "action_type": "approveAgent",
                "cloids": [],
                "statuses": [],
                "status": "ok",
            }
        )
        return OK_DEFAULT

    def _schedule_cancel(self, acct: Account, action: dict[str, Any], now_ms: int) -> dict[str, Any]:
        t = action.get("time")
        if t is None:
            acct.schedule_cancel_ms = None
            return OK_DEFAULT
        if not isinstance(t, int) or isinstance(t, bool):
            raise BadRequest("Failed to deserialize the JSON body into the target type: scheduleCancel.time")
        if t < now_ms + SCHEDULE_CANCEL_MIN_LEAD_MS:
            # [UNVERIFIED] wording; the rule (>= 5 s ahead) is documented.
            return err("Scheduled cancel time too early, must be at least 5 seconds after current time")
        refusal = self.limits.schedule_cancel_refusal(acct.address, acct.cum_vlm, now_ms)
        if refusal is not None:
            return err(refusal)
        acct.schedule_cancel_ms = t
        return OK_DEFAULT

    def _update_leverage(self, acct: Account, action: dict[str, Any]) -> dict[str, Any]:
        asset, lev, is_cross = action.get("asset"), action.get("leverage"), action.get("isCross")
        if not isinstance(asset, int) or not isinstance(lev, int) or isinstance(lev, bool):
            raise BadRequest("Failed to deserialize the JSON body into the target type: updateLeverage")
        m = self.by_asset.get(asset)
        if m is None:
            return err(f"Invalid asset {asset}")
        if is_cross:
            return err(
                "Cross margin is not allowed for this asset."
            )  # [UNVERIFIED] wording; HIP-3 is isolated
        if not 1 <= lev <= m.spec.max_leverage:
            return err("Invalid leverage value")  # [UNVERIFIED] wording
        acct.leverage[asset] = lev
        return OK_DEFAULT

    def leverage_of(self, acct: Account, m: Market) -> int:
        return acct.leverage.get(m.asset, min(self.p.default_leverage, m.spec.max_leverage))
