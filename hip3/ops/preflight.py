"""The preflight check: can this config trade on this exchange, right now? One line per finding.

Run by ``python supervisor.py check`` and by ``start`` before any actor starts. Before it, a misspelt
market gave 30 s of silence (the feed waiting for a subscription the exchange refused), tracebacks from
the actors that load the market specs, and a latched hard stop once their restart limit was reached.

It asks the exchange what the actors will ask, through the same library code (``load_registry`` for the
dex and the markets, ``fetch_raw_terms``/``build_terms``/``TermsView`` for the fees the detector will
assume, ``collateral_problem`` for the dex's funding, ``read_request_budget``/``Admission`` for the
request budget; ``activeAssetData`` for the leverage each order will be margined at), so the check
and the actors cannot disagree about a rule.

Severities: ``fatal`` (the start is refused: a market the dex does not list, a host that does not answer,
no key or the wrong one), ``block`` (hip3 would run but refuse entries: dex unfunded, fees unreadable,
request budget below the reserve; ``start`` goes on and says so, as the actors do, ``check`` exits
non-zero), ``warn`` (worth knowing: the dead man's switch unavailable) and ``ok``.

Every exchange request is bounded: ``attempts`` tries, each within ``[exchange] request_timeout_ms``,
waits that a SIGTERM or Ctrl-C ends at once (``Retry``), and every failure names the URL it was for.
What the exchange's documentation leaves open is in ``UNVERIFIED`` below.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from functools import partial
from typing import Any, Literal, TypeVar

import msgspec

from hip3.account.collateral import collateral_from_states, collateral_problem, usable_usd
from hip3.account.market_terms import TermsError, TermsView, build_terms
from hip3.config import Config
from hip3.execution.admission import Admission
from hip3.hyperliquid.assets import AssetError, AssetRegistry, UnknownMarkets
from hip3.hyperliquid.rest import RestClient, RestError
from hip3.runtime.budget_poller import read_request_budget
from hip3.runtime.logs import Log
from hip3.runtime.markets import load_registry
from hip3.runtime.terms_poller import fetch_raw_terms
from hip3.strategy.detector import base_threshold_bps

__all__ = ["UNVERIFIED", "Finding", "PreflightInterrupted", "Retry", "format_findings", "probe_ws", "run_checks"]

T = TypeVar("T")
Severity = Literal["ok", "warn", "block", "fatal"]
_LABEL = {"ok": "ok", "warn": "WARN", "block": "BLOCK", "fatal": "FAIL"}

# ---- [UNVERIFIED] readings of the exchange for the check (change them after the first live session) ----
UNVERIFIED: dict[str, object] = {
    # The lifetime volume below which the exchange refuses the dead man's switch: the figure its refusal
    # named on testnet and mainnet ("Required: $1000000."; hip3.hyperliquid.errors). The executor learns
    # the real figure from the refusal; this only predicts it.
    "schedule_cancel_min_volume_usd": Decimal(1_000_000),
    # extraAgents(account) lists the account's approved API wallets (named ones at least); whether the
    # unnamed agent is listed is not documented: a key missing from the list is a warning, not a refusal.
    "extra_agents_lists_unnamed_agent": False,
}


class Finding(msgspec.Struct, frozen=True):
    severity: Severity
    topic: str
    text: str
    # A host that did not answer: it may answer in a minute (an outage, a network blip), unlike a typo or a
    # wrong key. A start refused only for these exits with ``EXIT_TRANSIENT``, which a service manager
    # retries: a supervisor restarted during an exchange outage must not stay down with positions open.
    transient: bool = False

    def line(self) -> str:
        return f"{_LABEL[self.severity]:<5} {self.topic:<11} {self.text}"


def format_findings(findings: list[Finding]) -> list[str]:
    return [f.line() for f in findings]


class PreflightInterrupted(Exception):
    """SIGTERM or Ctrl-C during the check: ``str`` names what it was waiting for."""


class Retry:
    """Bounded attempts with waits that ``stop`` ends at once; ``note`` hears each failed attempt."""

    def __init__(self, attempts: int = 3, wait_s: float = 0.5, stop: threading.Event | None = None,
                 note: Callable[[str], None] = lambda _: None) -> None:
        self.attempts = attempts
        self.wait_s = wait_s
        self.stop = stop or threading.Event()
        self.note = note
        self.current = "the check"  # what is being waited for now (an interruption names it)

    def run(self, what: str, url: str, fn: Callable[[], T]) -> T:
        """``fn()``; a ``RestError`` or ``OSError`` is retried. The last one is raised as ``RestError``
        naming ``url`` and the attempts."""
        last = ""
        self.current = f"{what} at {url}"
        for i in range(self.attempts):
            if self.stop.is_set():
                raise PreflightInterrupted(f"{what} at {url}")
            try:
                return fn()
            except (RestError, OSError) as e:
                last = str(e) or type(e).__name__
                if i + 1 < self.attempts:
                    self.note(f"{what} at {url}: attempt {i + 1} of {self.attempts} failed: {last}")
                    if self.stop.wait(self.wait_s * 2**i):
                        raise PreflightInterrupted(f"{what} at {url}") from None
        raise RestError(f"{what} at {url} failed {self.attempts} times: {last}")


def probe_ws(url: str, timeout_s: float) -> None:
    """Open a WebSocket to ``url`` and close it (``OSError`` when it cannot be opened)."""
    import websocket

    ws = websocket.WebSocket()
    try:
        ws.connect(url, timeout=timeout_s, suppress_origin=True)  # type: ignore[no-untyped-call]
    except (websocket.WebSocketException, ValueError) as e:
        raise OSError(f"{type(e).__name__}: {e}") from None
    finally:
        try:
            ws.close(timeout=1.0)
        except Exception:  # closing a probe that may never have opened
            pass


class _Ctx:
    """What one run has learnt so far, and its findings."""

    def __init__(self) -> None:
        self.findings: list[Finding] = []

    def add(self, severity: Severity, topic: str, text: str, transient: bool = False) -> None:
        self.findings.append(Finding(severity=severity, topic=topic, text=text, transient=transient))


def run_checks(cfg: Config, rest_url: str, ws_url: str, key_address: str | None, key_source: str, account: str,
               log: Log, retry: Retry, *, rest: RestClient | None = None,
               ws_probe: Callable[[str, float], None] = probe_ws, alerts_env: Mapping[str, str] | None = None,
               now_ms: int | None = None) -> list[Finding]:
    """Every check, in order; the exchange is asked only through ``rest`` (and ``ws_probe``). ``key_address``:
    the signing key's address (None: no key; ``key_source`` then says why), never the key itself."""
    c = _Ctx()
    timeout_s = cfg.exchange.request_timeout_ms / 1000
    client = rest or RestClient(rest_url, timeout_s=timeout_s, info_retries=0)
    now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    _alerts(c, cfg, alerts_env)
    _key(c, cfg, key_address, key_source, account)
    registry = _markets(c, cfg, rest_url, client, log, retry)
    try:
        retry.run("WebSocket connect", ws_url, lambda: ws_probe(ws_url, timeout_s))
        c.add("ok", "websocket", f"{ws_url} accepts a connection")
    except RestError as e:
        c.add("fatal", "websocket", f"cannot reach the exchange's WebSocket: {e}", transient=True)
    if registry is not None:
        _terms(c, cfg, rest_url, client, retry, registry, account, now_ms)
        if account and cfg.mode != "observe":
            usable = _collateral(c, cfg, rest_url, client, retry, registry.dex, account)
            _leverage(c, cfg, rest_url, client, retry, [m.coin for m in cfg.markets if m.coin in registry], account,
                      usable)
            _budget(c, cfg, rest_url, client, retry, account, now_ms)
            if key_address is not None and key_address != account.lower():
                _agent(c, rest_url, client, retry, key_address, account)
    return c.findings


def _alerts(c: _Ctx, cfg: Config, env: Mapping[str, str] | None) -> None:
    from hip3.ops.alerts import AlertsError, AppriseSender, destinations_from_env

    p = cfg.alerts
    if not p.enabled:
        c.add("ok", "alerts", f"off ([alerts] enabled = false; destinations would come from {p.urls_env})")
        return
    try:
        sender = AppriseSender(destinations_from_env(p, env), p.urls_env, p.send_timeout_s)
    except AlertsError as e:
        c.add("fatal", "alerts", str(e))
        return
    c.add("ok", "alerts", f"on: {len(sender.services)} destination(s) from {p.urls_env}: {', '.join(sender.services)}")


def _key(c: _Ctx, cfg: Config, address: str | None, source: str, account: str) -> None:
    if cfg.mode == "observe":
        c.add("ok", "key", "not needed: observe mode sends no order" + (f"; account {account}" if account else ""))
        return
    if address is None:
        c.add("fatal", "key", source or "no key: set HIP3_PRIVATE_KEY or HIP3_KEYSTORE (+ password)")
        return
    c.add("ok", "key", f"{source}: address {address}")
    if not account:
        c.add("fatal", "account", "no account address: set exchange.account_address (the master or sub-account)")
    elif address == account.lower():
        c.add("ok", "account", f"{account} (the key is the account's own)")
    else:
        c.add("ok", "account", f"{account}, traded by the API wallet {address}")


def _markets(c: _Ctx, cfg: Config, rest_url: str, client: RestClient, log: Log, retry: Retry) -> AssetRegistry | None:
    """The dex and every configured market, through the actors' own ``load_registry``. A market the dex
    does not list is one line each, with the closest listed names; the others still get checked."""
    known = cfg
    try:
        registry = retry.run("POST /info (perpDexs, meta)", rest_url,
                             lambda: load_registry(cfg, log, attempts=1, wait_s=0.0, rest=client))
    except UnknownMarkets as e:
        for line in e.lines():
            c.add("fatal", "market", line)
        known = msgspec.structs.replace(cfg, markets=tuple(m for m in cfg.markets if m.coin not in e.missing))
        try:
            registry = load_registry(known, log, attempts=1, wait_s=0.0, rest=client)
        except (AssetError, RestError):
            return None
    except AssetError as e:
        c.add("ok", "rest", f"{rest_url} answers")
        c.add("fatal", "dex", f"{e} (exchange.dex_pattern = {cfg.exchange.dex_pattern!r})")
        return None
    except RestError as e:
        c.add("fatal", "rest", f"cannot reach the exchange's REST API: {e}", transient=True)
        return None
    c.add("ok", "rest", f"{rest_url} answers")
    c.add("ok", "dex", f"{registry.dex!r} (perp dex {registry.perp_dex_index}, {len(registry)} markets listed)")
    for m in known.markets:
        if registry.by_coin(m.coin).is_delisted:
            c.add("fatal", "market", f"{m.coin} is delisted on dex {registry.dex!r}")
    return registry


def _terms(c: _Ctx, cfg: Config, rest_url: str, client: RestClient, retry: Retry, registry: AssetRegistry,
           account: str, now_ms: int) -> None:
    """Fees and open-interest caps as the position tracker reads them; the fee the detector will assume."""
    coins = [m.coin for m in cfg.markets if m.coin in registry]
    try:
        raw = retry.run("POST /info (fees and caps)", rest_url,
                        lambda: fetch_raw_terms(client, registry.dex, account or None))
        terms = build_terms(raw, registry.dex, coins, now_ms)
    except (RestError, TermsError) as e:
        c.add("fatal" if cfg.mode == "observe" else "block", "fees", f"cannot read the market terms: {e}; no entry "
              "is sent until they are read")
        return
    view = TermsView(cfg.market_terms, coins)
    view.update(terms)
    overrides = {m.coin: m.threshold_bps for m in cfg.markets}
    for coin in coins:
        spec = registry.by_coin(coin)
        fee, source = view.taker_fee_bps(coin, now_ms)
        threshold = base_threshold_bps(cfg.detector, overrides.get(coin), 2.0 * fee)
        c.add("ok", "market", f"{coin}: asset {spec.asset}, szDecimals {spec.sz_decimals}, max leverage "
              f"{spec.max_leverage}x; taker fee {fee:.3f} bps a leg ({source}), entry threshold {threshold:.2f} bps")
        cap = view.at_cap_reason(coin, None)
        if cap is not None:
            c.add("block", "market", f"{coin}: {cap}: entries there are refused until it is not")


def _collateral(c: _Ctx, cfg: Config, rest_url: str, client: RestClient, retry: Retry, dex: str,
                account: str) -> Decimal | None:
    """The dex's collateral as the tracker judges it; returns what is usable (None: not read)."""
    try:
        coll = retry.run("POST /info (clearinghouseState)", rest_url,
                         lambda: collateral_from_states(dex, client.clearinghouse_state(account, dex),
                                                        client.clearinghouse_state(account, "")))
    except RestError as e:
        c.add("block", "collateral", f"cannot read the account's collateral: {e}")
        return None
    usable = usable_usd(coll, cfg.collateral.source)
    problem = collateral_problem(coll, cfg.collateral)
    if problem:
        c.add("block", "collateral", problem)
    else:
        c.add("ok", "collateral", f"dex {dex!r}: {usable.normalize():f} USDC usable "
              f"(entries need {cfg.collateral.min_free_usd:g})")
    return usable


def _leverage(c: _Ctx, cfg: Config, rest_url: str, client: RestClient, retry: Retry, coins: list[str],
              account: str, usable: Decimal | None) -> None:
    """The leverage this account has set on each market (``activeAssetData``; the market line gives the
    market's maximum), and whether the dex's usable collateral margins one entry at the per-market notional
    cap. hip3 never changes the leverage: the exchange margins each order at the account's setting."""
    cap = Decimal(repr(cfg.executor.max_notional_per_market_usd))
    for coin in coins:
        try:
            data = retry.run(f"POST /info (activeAssetData {coin})", rest_url,
                             partial(client.active_asset_data, account, coin))
            kind, value = str(data["leverage"]["type"]), int(data["leverage"]["value"])
        except RestError as e:
            c.add("warn", "leverage", f"{coin}: cannot read the account's leverage: {e}")
            continue
        except (KeyError, TypeError, ValueError):
            c.add("warn", "leverage", f"{coin}: cannot read the account's leverage: unexpected answer "
                  f"{str(data)[:120]}")
            continue
        margin = cap / max(1, value)
        text = (f"{coin}: {value}x {kind}; an entry at the per-market cap (${cap.normalize():f}) takes "
                f"${margin:.2f} of margin")
        if usable is not None and margin > usable:
            c.add("warn", "leverage", f"{text}, more than the dex's {usable.normalize():f} USDC usable: such an entry "
                  "is refused for margin (raise the leverage in the exchange's app, lower the cap, or fund the dex)")
        else:
            c.add("ok", "leverage", text)


def _budget(c: _Ctx, cfg: Config, rest_url: str, client: RestClient, retry: Retry, account: str,
            now_ms: int) -> None:
    """The address request budget as the executor's admission judges it, and the dead man's switch."""
    try:
        reading = retry.run("POST /info (userRateLimit)", rest_url,
                            lambda: read_request_budget(client, account, now_ms))
    except RestError as e:
        c.add("block", "requests", f"cannot read the request budget: {e}; entries wait for it")
        return
    admission = Admission(cfg.executor)
    admission.on_reading(reading)
    used, cap = reading.n_requests_used, reading.n_requests_cap
    text = f"{used:,} used of {cap:,} (reserve {admission.reserve:,} for flattens and cancels)"
    if admission.entry_refusal(time.monotonic_ns(), 0):
        c.add("block", "requests", f"{text}: entries would stop (the budget grows by one request per USDC "
              "traded; over it, one request per 10 s)")
    else:
        c.add("ok", "requests", f"{text}: entries allowed")
    need = UNVERIFIED["schedule_cancel_min_volume_usd"]
    if cfg.exchange.network == "sim":
        from hip3.sim.params import SimParams

        need = Decimal(repr(SimParams.from_dict(cfg.sim).schedule_cancel_min_volume_usd))
    assert isinstance(need, Decimal)
    vlm = reading.cum_vlm_usd
    if vlm < need:
        c.add("warn", "deadman", f"the dead man's switch is refused below ${need:,.0f} of lifetime volume (this "
              f"account: ${vlm:,.0f}): open orders are not cancelled if hip3 dies")
    else:
        c.add("ok", "deadman", f"available (lifetime volume ${vlm:,.0f})")


def _agent(c: _Ctx, rest_url: str, client: RestClient, retry: Retry, signer: str, account: str) -> None:
    try:
        agents: Any = retry.run("POST /info (extraAgents)", rest_url,
                                lambda: client.info({"type": "extraAgents", "user": account.lower()}))
    except RestError as e:
        c.add("warn", "account", f"cannot list the account's API wallets: {e}")
        return
    found = [a for a in agents if isinstance(a, dict) and str(a.get("address", "")).lower() == signer] \
        if isinstance(agents, list) else []
    if not found:
        c.add("warn", "account", f"the key's address {signer} is not among the API wallets the exchange lists for "
              f"{account} (an unnamed one may not be listed): orders would be refused if it is not approved")
        return
    until = int(found[0].get("validUntil") or 0)
    if until and until < time.time() * 1000:
        c.add("fatal", "account", f"the API wallet {signer} expired at {until} (ms): approve a new one")
    else:
        c.add("ok", "account", f"{signer} is an approved API wallet of {account}")


