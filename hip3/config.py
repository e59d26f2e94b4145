"""Configuration: TOML decoded into frozen msgspec Structs.

A misspelt key, a wrong type or an out-of-range value stops the start with one line that names the key
and the file (``ConfigError``). Secrets never come from config files: the signing key comes from the
environment or an encrypted keystore (``hip3.runtime.secrets``), and a config that contains a key-like value
is refused.

Which file: ``--config`` on the command line, else the ``HIP3_CONFIG`` environment variable, else
``configs/default.toml`` (an ignored environment variable once ran the wrong config).
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from hip3.account.collateral import CollateralParams
from hip3.account.exchange_clock import ClockParams
from hip3.account.market_terms import MarketTermsParams
from hip3.bounds import MAX_BPS, MAX_DURATION_MS
from hip3.config_safety import problems as safety_problems
from hip3.execution.params import ExecutorParams, RiskParams, SoftGateParams
from hip3.ops.alerts import AlertsConfig
from hip3.strategy.params import DetectorParams, ExitParams, GateParams, OracleTrackerParams

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "configs" / "default.toml"

# Durations are bounded above too (``hip3.bounds``): a timeout of 1e18 ms is a timeout switched off.
PositiveMs = Annotated[int, msgspec.Meta(gt=0, le=MAX_DURATION_MS)]
NonNegMs = Annotated[int, msgspec.Meta(ge=0, le=MAX_DURATION_MS)]
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
# A watchdog or timeout that must fire within minutes to be of any use.
MinutesMs = Annotated[int, msgspec.Meta(gt=0, le=600_000)]


class ConfigError(Exception):
    """A config that cannot be used. ``str(e)`` is the one line shown to the operator."""


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class BusConfig(_Section, frozen=True):
    """Where the actors' sockets live. Actor code is the same for every transport."""

    # ipc: unix sockets in <run_dir>/sock (0700), one host; tcp: loopback ports (not in live mode); inproc:
    # every actor a thread of one process (tests).
    transport: Literal["ipc", "tcp", "inproc"] = "ipc"
    # tcp: every endpoint is tcp://{tcp_host}:{tcp_base_port + offset}. Loopback only, and not in live
    # mode: the bus is not authenticated (any local process could reach a tcp port).
    tcp_host: str = "127.0.0.1"
    tcp_base_port: Annotated[int, msgspec.Meta(ge=1024, le=65_000)] = 47100
    # High-water marks. Market data is latest-wins, so a lagging subscriber may drop (counted as gaps);
    # intents, order events and fills must not, so their queues are deep.
    md_hwm: Annotated[int, msgspec.Meta(ge=100, le=10_000_000)] = 20000
    event_hwm: Annotated[int, msgspec.Meta(ge=100, le=10_000_000)] = 100000
    # How long a closing socket may still send what it holds (so that a shutdown never hangs).
    linger_ms: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 200


class SupervisorConfig(_Section, frozen=True):
    # Every actor reports to the supervisor this often (READY, counters, the hard-stop epoch it applied).
    heartbeat_interval_ms: Annotated[int, msgspec.Meta(gt=0, le=10_000)] = 200
    # An actor whose heartbeats stop for this long is hung: it is killed and restarted. At least twice
    # the interval (checked at load: a single late heartbeat must not kill a healthy actor), at most a
    # minute (a hung executor cannot flatten).
    heartbeat_timeout_ms: Annotated[int, msgspec.Meta(gt=0, le=60_000)] = 3000
    # An actor that does not report READY within this long after its start counts as failed.
    ready_timeout_ms: MinutesMs = 30000
    # A failed actor is restarted after restart_backoff_initial_ms, doubled for each of its restarts within
    # restart_period_s, at most restart_backoff_max_ms, each delay scaled by a random 1 +- restart_jitter.
    restart_backoff_initial_ms: Annotated[int, msgspec.Meta(gt=0, le=60_000)] = 50
    restart_backoff_max_ms: MinutesMs = 10000
    restart_jitter: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.2
    # More than max_restarts restarts of one actor within restart_period_s latches the hard stop and
    # stops restarting that actor (Erlang/OTP's intensity and period).
    # The period must be long enough for a crash loop to reach the limit (checked at load against the
    # backoff: restarts are never closer together than the backoff allows).
    max_restarts: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 5
    restart_period_s: Annotated[float, msgspec.Meta(gt=0, le=86_400.0)] = 60.0
    # The hard-stop state is published again this often (a subscriber that missed it catches up).
    hardstop_rebroadcast_ms: Annotated[int, msgspec.Meta(gt=0, le=60_000)] = 500
    # At stop, actors still running this long after SIGTERM are killed.
    stop_timeout_ms: MinutesMs = 5000
    # Which actors to run, in dependency order. Empty means the mode's default set.
    actors: tuple[str, ...] = ()
    # Opt-in: actors run under SCHED_FIFO at realtime_priority (needs root or CAP_SYS_NICE; refused ->
    # a warning and the normal class). e.g. ["feed", "exit_watcher", "executor"]: see BENCHMARKS.md.
    realtime_actors: tuple[str, ...] = ()
    realtime_priority: Annotated[int, msgspec.Meta(ge=1, le=49)] = 10


class ExchangeConfig(_Section, frozen=True):
    """Which exchange. ``sim`` is the built-in simulator on loopback (paper mode)."""

    # sim: the simulator (paper mode); testnet or mainnet: the exchange (observe or live mode).
    network: Literal["sim", "testnet", "mainnet"] = "sim"
    # Empty means the network's default (sim: the simulator the supervisor starts). In paper mode a
    # rest_url names a simulator that runs as its own process (python -m hip3.sim --fund ADDRESS:USD) and
    # outlives the supervisor, as an exchange would; its account's key is then HIP3_SIM_KEY.
    ws_url: str = ""
    rest_url: str = ""
    # The builder dex: the first perpDexs entry whose name contains this (case-insensitive).
    dex_pattern: str = "xyz"
    # The master (or sub-account) address used for subscriptions and info queries (not the API wallet
    # that signs).
    account_address: str = ""
    # Optional: the API wallet's address; if set, the key's derived address must equal it.
    signer_address: str = ""
    # Trading for a sub-account or vault (lower-case hex), else empty.
    vault_address: str = ""
    # A REST request (info, the resyncs) with no answer after this long fails.
    request_timeout_ms: Annotated[int, msgspec.Meta(gt=0, le=120_000)] = 10000


class MarketConfig(_Section, frozen=True):
    coin: str  # full HIP-3 name, e.g. "xyz:GOLD"
    # This market's own entry threshold; unset: the detector's.
    threshold_bps: Annotated[float, msgspec.Meta(gt=0, le=MAX_BPS)] | None = None


class FeedParams(_Section, frozen=True):
    """Market-data connection: heartbeat, stall detection and reconnect backoff."""

    # Below 60 s: the server closes a connection it has sent nothing on for 60 s, and the ping's pong
    # is what it sends on a quiet channel.
    ping_after_idle_ms: Annotated[int, msgspec.Meta(gt=0, lt=60_000)] = 20000
    pong_timeout_ms: Annotated[int, msgspec.Meta(gt=0, le=60_000)] = 10000
    # A subscribed market with no message for this long is reported stale (receive side stall).
    stall_timeout_ms: MinutesMs = 60000
    reconnect_base_ms: Annotated[int, msgspec.Meta(gt=0, le=60_000)] = 1000
    reconnect_max_ms: MinutesMs = 60000
    # Record raw market frames with their receive times (hip3.replay.recording) to this file, relative to
    # the run directory unless absolute; empty = off. Replay: `python supervisor.py replay FILE`.
    record_path: str = ""
    # The recording rotates to a new part when the current one reaches record_rotate_mb on disk or
    # record_rotate_minutes of age (0 disables each), compressed with zstd at record_zstd_level unless
    # record_compression = "none". Parts are <stem>.00001.rec.zst, ... beside record_path, listed with the
    # times, markets and frame counts each covers in <stem>.index.jsonl (hip3.replay.rotation); `replay`
    # takes the index, a part, or record_path itself. With no rotation and no compression, record_path is
    # one file as before.
    record_rotate_mb: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 256
    record_rotate_minutes: Annotated[int, msgspec.Meta(ge=0, le=10_080)] = 60
    record_compression: Literal["zstd", "none"] = "zstd"
    record_zstd_level: Annotated[int, msgspec.Meta(ge=1, le=19)] = 3


class PositionParams(_Section, frozen=True):
    """The position tracker (``actors/position_tracker.py``) and what hip3 does with positions it did not
    open (``hip3.positions.ownership``; README "Positions opened outside hip3").

    ``manual_positions``: a position opened outside hip3 (by hand, another tool, or already there when
    hip3 started) on a *configured* market. ``"leave"`` (default): hip3 never sends an exit, a hard-stop
    flatten or a cancel for it or its orders, and blocks its own entries in that market while it exists
    (``status`` shows it and why). ``"adopt"``: hip3 manages it as its own: its exits close it, the hard
    stop flattens it, it counts in the caps. hip3's own part of a position (fills of orders hip3 sent) is
    always hip3's, in both modes. A position on a market that is not configured is never touched and
    never blocks the configured markets.
    """

    # The tracker reads the positions and open orders from REST this often (and at every reconnect).
    resync_interval_s: Annotated[float, msgspec.Meta(gt=0, le=3600.0)] = 60.0
    # It publishes its snapshot this often even when nothing changed (late joiners, dropped messages).
    snapshot_interval_ms: Annotated[int, msgspec.Meta(gt=0, le=60_000)] = 500
    manual_positions: Literal["leave", "adopt"] = "leave"


class RecorderConfig(_Section, frozen=True):
    """The recorder's trade journal (``hip3.journal.db``, ``<run_dir>/journal.sqlite``), off the hot path.

    ``commit_interval_ms``: rows are committed at most this long after they arrive (0 = after every drained
    batch); a ``kill -9`` of the recorder loses at most that window. ``synchronous``: ``normal`` survives a
    process crash (WAL, no fsync per commit); ``full`` also survives a power loss, at an fsync per commit.
    """

    commit_interval_ms: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 50
    synchronous: Literal["normal", "full"] = "normal"
    # Rows kept in memory while the database cannot be written; beyond this the oldest are dropped.
    max_pending_rows: Annotated[int, msgspec.Meta(ge=100, le=10_000_000)] = 100_000


class LoggingConfig(_Section, frozen=True):
    """The JSON log files, ``<run_dir>/logs/<actor>.log`` (``hip3.runtime.logs``, ``hip3.ops.logrotate``).

    A file that would grow past ``max_file_mb`` is renamed to ``<actor>.log.000001``, ``.000002``, ...
    (a higher number is newer) and an empty spare made beforehand takes its place: two renames on the line
    that crosses the size, never a file created or deleted by an actor. The supervisor makes the spares and
    deletes the oldest rotated files beyond ``keep_files`` per log every second (an actor run alone does
    both once, when it starts).
    """

    # Lines below this level are not written (debug adds the hot paths' lines).
    level: Literal["debug", "info", "warning", "error"] = "info"
    # Also write every process's JSON lines to stderr. In console mode (``start`` on a terminal, or
    # ``--log-format console``) the actors write only to their files whatever this says.
    stderr: bool = True
    # Rotate a log file when the next line would take it past this many megabytes (10^6 bytes); 0 never
    # rotates (the files then grow until the disk is full).
    max_file_mb: Annotated[float, msgspec.Meta(ge=0.0, le=100_000.0)] = 20.0
    # Rotated files kept per log (the current file not counted): at most (keep_files + 1) x max_file_mb
    # per process on disk.
    keep_files: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 10


class MetricsConfig(_Section, frozen=True):
    """The supervisor's Prometheus endpoint (``hip3.runtime.metrics``): off by default, loopback by default.

    Another host is an explicit choice (logged as a warning at start): the endpoint has no
    authentication and shows positions and PnL. ``port = 0`` takes any free port (``status`` shows it).
    """

    # Serve /metrics (with /ready and /healthz) on host:port.
    enabled: bool = False
    host: Annotated[str, msgspec.Meta(min_length=1)] = "127.0.0.1"
    port: Port = 9464


class DashboardConfig(_Section, frozen=True):
    """The read-only web dashboard (``hip3.ui.dashboard``): off by default.

    Served by the supervisor's one HTTP endpoint, at ``[metrics] host`` and ``port`` (the endpoint listens
    when either the metrics or the dashboard is enabled). Not on loopback, a token is required: the start
    is refused unless the environment variable named by ``token_env`` holds one (16 characters or more);
    on loopback a token is required only if that variable is set. The browser sends it as ``?token=`` on
    the first load (or ``Authorization: Bearer``). ``refresh_ms``: how often the page and its data refresh.
    """

    # Serve the dashboard at / (and /api/status) on [metrics] host:port.
    enabled: bool = False
    # The environment variable that holds the token (never the config file).
    token_env: Annotated[str, msgspec.Meta(pattern=r"^[A-Z_][A-Z0-9_]*$")] = "HIP3_DASHBOARD_TOKEN"
    refresh_ms: Annotated[int, msgspec.Meta(ge=250, le=10_000)] = 1000


class Config(_Section, frozen=True):
    """The whole configuration of one hip3 deployment."""

    # observe: no orders, signals recorded; paper: against the simulator; live: the exchange, real orders
    # (needs a key, exchange.account_address and `start --live`).
    mode: Literal["observe", "paper", "live"] = "paper"
    # Relative paths are taken from the current directory. HIP3_RUN_DIR overrides it.
    run_dir: str = "run"
    markets: tuple[MarketConfig, ...] = ()
    bus: BusConfig = BusConfig()
    supervisor: SupervisorConfig = SupervisorConfig()
    exchange: ExchangeConfig = ExchangeConfig()
    logging: LoggingConfig = LoggingConfig()
    metrics: MetricsConfig = MetricsConfig()
    dashboard: DashboardConfig = DashboardConfig()
    # Messages to a person (hard stop, crash loop, stale feed, daily PnL) through apprise: hip3.ops.alerts.
    alerts: AlertsConfig = AlertsConfig()
    feed: FeedParams = FeedParams()
    oracle: OracleTrackerParams = OracleTrackerParams()
    gates: GateParams = GateParams()
    detector: DetectorParams = DetectorParams()
    exits: ExitParams = ExitParams()
    executor: ExecutorParams = ExecutorParams()
    risk: RiskParams = RiskParams()
    soft_gates: SoftGateParams = SoftGateParams()
    positions: PositionParams = PositionParams()
    # Fees and open-interest caps read from the exchange (hip3.account.market_terms).
    market_terms: MarketTermsParams = MarketTermsParams()
    recorder: RecorderConfig = RecorderConfig()
    # Collateral on the traded dex (entries refused while unfunded) and the exchange clock's bound.
    collateral: CollateralParams = CollateralParams()
    clock: ClockParams = ClockParams()
    # The simulator's own settings (hip3.sim.params.SimParams), validated by the simulator.
    sim: dict[str, object] = {}

    @property
    def run_path(self) -> Path:
        return Path(os.environ.get("HIP3_RUN_DIR") or self.run_dir).resolve()


# A 64-hex-digit value in a config is most likely a private key: refuse it (secrets come from the
# environment or a keystore, never from config files).
_KEY_LIKE = re.compile(r"(?<![0-9a-fA-F])(0x)?[0-9a-fA-F]{64}(?![0-9a-fA-F])")
_PATH_RE = re.compile(r"`\$((?:\.[A-Za-z_]\w*|\[\d+\]|\[\.\.\.\])*)`")  # [...]: a value of a table


def _dotted(path: str) -> str:
    """msgspec's ``$.a.b[0].c`` -> ``a.b[0].c``."""
    return path.lstrip(".") or "(top level)"


def _explain(err: msgspec.ValidationError, source: str) -> str:
    text = str(err)
    unknown = re.match(r"Object contains unknown field `([^`]+)`(?: - at `\$(.*)`)?", text)
    if unknown:
        where = _dotted(unknown.group(2) or "")
        key = unknown.group(1) if where == "(top level)" else f"{where}.{unknown.group(1)}"
        return f"config error in {source}: unknown key `{key}`"
    m = _PATH_RE.search(text)
    where = _dotted(m.group(1)) if m else "(top level)"
    detail = text.split(" - at ")[0]
    return f"config error in {source}: `{where}`: {detail}"


def parse_config(text: str, source: str = "<string>") -> Config:
    """Decode TOML text into a ``Config``; raise ``ConfigError`` with one clear line."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config error in {source}: not valid TOML: {e}") from None
    except RecursionError:  # tomllib recurses per nesting level: `a = [[[[...` a thousand deep
        raise ConfigError(f"config error in {source}: not valid TOML: nested too deeply") from None
    if _KEY_LIKE.search(text):
        raise ConfigError(
            f"config error in {source}: contains a 64-hex-digit value (a private key?); "
            "keys come only from the environment or an encrypted keystore"
        )
    try:
        cfg = msgspec.convert(raw, Config, strict=True)
    except msgspec.ValidationError as e:
        raise ConfigError(_explain(e, source)) from None
    _check(cfg, source)
    return cfg


def _check(cfg: Config, source: str) -> None:
    """Cross-field rules that a type cannot express."""
    seen: set[str] = set()
    for i, m in enumerate(cfg.markets):
        if ":" not in m.coin:
            raise ConfigError(
                f"config error in {source}: `markets[{i}].coin`: {m.coin!r} is not a HIP-3 name (dex:COIN)"
            )
        if m.coin.lower() in seen:
            raise ConfigError(f"config error in {source}: `markets[{i}].coin`: {m.coin!r} is listed twice")
        seen.add(m.coin.lower())
    if cfg.mode != "observe" and not cfg.markets:
        raise ConfigError(f"config error in {source}: `markets`: trading modes need an explicit market allowlist")
    if cfg.mode == "paper" and cfg.exchange.network != "sim":
        raise ConfigError(
            f"config error in {source}: `exchange.network`: paper mode runs against the simulator (sim)"
        )
    if cfg.mode == "paper" and any(u.startswith(real) for u in (cfg.exchange.rest_url, cfg.exchange.ws_url) if u
                                   for urls in NETWORK_URLS.values() for real in urls):
        # Paper mode with an address runs against a simulator of its own (hip3.runtime.paper), never the
        # exchange, whatever key the environment holds.
        raise ConfigError(f"config error in {source}: `exchange.rest_url`: paper mode runs against a simulator, "
                          "not the exchange (use mode = \"live\" with network testnet or mainnet)")
    if cfg.mode == "live" and cfg.exchange.network == "sim":
        raise ConfigError(f"config error in {source}: `exchange.network`: live mode needs testnet or mainnet")
    if cfg.bus.transport == "tcp" and cfg.mode == "live":
        # The bus has no authentication: over tcp any local process (any host, off loopback) could push
        # an intent to the executor or send the supervisor ``reset-hardstop``. ipc endpoints live in the
        # 0700 run directory, so only the user reaches them.
        raise ConfigError(
            f"config error in {source}: `bus.transport`: tcp is refused in live mode (the bus is not "
            "authenticated: anyone who can reach the ports could send orders); use ipc"
        )
    if cfg.bus.transport == "tcp" and cfg.bus.tcp_host not in ("127.0.0.1", "::1", "localhost"):
        raise ConfigError(
            f"config error in {source}: `bus.tcp_host`: {cfg.bus.tcp_host!r} is not loopback (the bus is "
            "not authenticated)"
        )
    if cfg.sim:
        from hip3.sim.params import SimParams, SimParamsError

        try:
            SimParams.from_dict(cfg.sim)
        except SimParamsError as e:
            detail = str(e).removeprefix("sim config error: ")
            found = _PATH_RE.search(detail)
            where = "sim" + (("." + _dotted(found.group(1))) if found else "")
            unknown = re.match(r"Object contains unknown field `([^`]+)`", detail)
            if unknown:
                raise ConfigError(f"config error in {source}: unknown key `{where}.{unknown.group(1)}`") from None
            raise ConfigError(f"config error in {source}: `{where}`: {detail.split(' - at ')[0]}") from None
    if cfg.supervisor.restart_backoff_max_ms < cfg.supervisor.restart_backoff_initial_ms:
        raise ConfigError(
            f"config error in {source}: `supervisor.restart_backoff_max_ms`: must be >= restart_backoff_initial_ms"
        )
    # Values that would switch a safety mechanism off (non-finite numbers, limits that cannot trip).
    for key, why in safety_problems(cfg):
        raise ConfigError(f"config error in {source}: `{key}`: {why}")


def resolve_config_path(cli_path: str | None) -> Path:
    """CLI ``--config`` > ``HIP3_CONFIG`` > ``configs/default.toml``."""
    if cli_path:
        return Path(cli_path)
    env = os.environ.get("HIP3_CONFIG")
    if env:
        return Path(env)
    return DEFAULT_CONFIG


def load_config(cli_path: str | None = None) -> Config:
    """Load the config chosen by ``resolve_config_path``; raise ``ConfigError`` on any problem."""
    path = resolve_config_path(cli_path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"config error in {path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"config error in {path}: not UTF-8 text (byte {e.start})") from None
    return parse_config(text, str(path))


# Default endpoints per network. The simulator's address is decided at start by the supervisor
# (``HIP3_EXCHANGE_URL``, e.g. http://127.0.0.1:48123) unless the config names one.
NETWORK_URLS = {
    "mainnet": ("https://api.hyperliquid.xyz", "wss://api.hyperliquid.xyz/ws"),
    "testnet": ("https://api.hyperliquid-testnet.xyz", "wss://api.hyperliquid-testnet.xyz/ws"),
}
ENV_EXCHANGE_URL = "HIP3_EXCHANGE_URL"


def exchange_urls(cfg: Config) -> tuple[str, str]:
    """(REST base URL, WebSocket URL) for ``cfg``: the config's own, else the network's default."""
    ex = cfg.exchange
    if ex.network == "sim":
        base = ex.rest_url or os.environ.get(ENV_EXCHANGE_URL, "")
        if not base:
            raise ConfigError("the simulator's address is unknown: start through supervisor.py, or set "
                              "exchange.rest_url / HIP3_EXCHANGE_URL")
        ws = ex.ws_url or base.replace("http://", "ws://", 1).replace("https://", "wss://", 1).rstrip("/") + "/ws"
        return base.rstrip("/"), ws
    rest, ws = NETWORK_URLS[ex.network]
    return (ex.rest_url or rest).rstrip("/"), ex.ws_url or ws


ENV_ACCOUNT_ADDRESS = "HIP3_ACCOUNT_ADDRESS"


def account_address(cfg: Config) -> str:
    """The master (or sub-account) address for subscriptions and info queries (not the API wallet).

    The config's ``exchange.account_address``, else ``HIP3_ACCOUNT_ADDRESS`` (set by the supervisor in
    paper mode to the simulator account it funded). Lower-case; empty if unknown.
    """
    return (cfg.exchange.account_address or os.environ.get(ENV_ACCOUNT_ADDRESS, "")).lower()
