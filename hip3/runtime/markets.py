"""Market specs at actor start: dex discovery and the asset registry, over REST, with retries.

Every actor that needs asset ids or szDecimals calls ``load_registry(cfg)`` in ``setup``: the dex is the
first ``perpDexs`` entry matching ``exchange.dex_pattern``; ids and szDecimals come from that dex's
``meta`` universe order, never from ``perpDexs``/``assetToStreamingOiCap`` order (that order once sent
SILVER orders to RIVN, and sizes rounded to zero).
An unknown configured market or a duplicate name stops the start with a clear ``AssetError``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from hip3 import clock
from hip3.config import Config, exchange_urls
from hip3.hyperliquid.assets import AssetError, AssetRegistry
from hip3.hyperliquid.rest import RestClient, RestError
from hip3.runtime.durable import atomic_write
from hip3.runtime.logs import Log

CACHE_NAME = "markets.json"
# With a cache from an earlier load, this many failed attempts (about 1.5 s) and the cache is used: an
# actor restarted while ``/info`` refuses (HTTP 429) must still start in time, the executor above all
# (it flattens). Without one, every attempt of ``attempts`` is made.
CACHE_AFTER_ATTEMPTS = 3


def cache_path(cfg: Config) -> Path:
    return cfg.run_path / CACHE_NAME


def _save_cache(path: Path, base: str, pattern: str, perp_dexs: Any, meta: Any) -> None:
    body = {"rest_url": base, "dex_pattern": pattern, "saved_ms": clock.time_ns() // 1_000_000,
            "perp_dexs": perp_dexs, "meta": meta}
    try:
        # Atomic (several actors load at once) but no fsync: a cache that a host crash loses is fetched again.
        atomic_write(path, json.dumps(body).encode(), fsync=False, mode=0o666)
    except OSError:
        pass


def _load_cache(path: Path, base: str, pattern: str) -> dict[str, Any] | None:
    """The cached REST answers of an earlier load of the same exchange and dex pattern, or None."""
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(body, dict) or body.get("rest_url") != base or body.get("dex_pattern") != pattern:
        return None
    return body


def load_registry(cfg: Config, log: Log, attempts: int = 10, wait_s: float = 0.5,
                  rest: RestClient | None = None) -> AssetRegistry:
    """Discover the dex and its universe. Network errors are retried; spec errors are final.

    Every successful load saves the two REST answers to ``<run_dir>/markets.json``; when the exchange
    keeps failing (rate limit, outage) and such a cache exists for the same REST URL and dex pattern,
    it is used after ``CACHE_AFTER_ATTEMPTS`` attempts, with a warning giving its age. Specs (asset ids,
    szDecimals) change rarely, and an executor that cannot start cannot flatten.
    """
    base, _ = exchange_urls(cfg)
    client = rest or RestClient(base, timeout_s=cfg.exchange.request_timeout_ms / 1000)
    markets = [m.coin for m in cfg.markets]
    pattern = cfg.exchange.dex_pattern
    path = cache_path(cfg)
    cached = _load_cache(path, base, pattern)
    last: Exception | None = None
    for i in range(attempts):
        try:
            perp_dexs = client.perp_dexs()
            index, dex = AssetRegistry.find_dex(perp_dexs, pattern)
            meta = client.meta(dex)
            registry = AssetRegistry.build(perp_dexs, meta, pattern, markets)
            log.info("markets_loaded", dex=dex, dex_index=index, assets=len(registry),
                     configured={m: registry.by_coin(m).asset for m in markets})
            _save_cache(path, base, pattern, perp_dexs, meta)
            return registry
        except AssetError:
            raise
        except RestError as e:
            last = e
            log.warning("markets_load_retry", attempt=i + 1, error=str(e))
            if cached is not None and i + 1 >= CACHE_AFTER_ATTEMPTS:
                try:
                    registry = AssetRegistry.build(cached["perp_dexs"], cached["meta"], pattern, markets)
                except (AssetError, KeyError) as bad:  # the exchange's answer decides, when it comes
                    log.warning("markets_cache_unusable", path=str(path), error=str(bad))
                    cached = None
                    time.sleep(min(wait_s * (2**i), 5.0))
                    continue
                age_s = (clock.time_ns() // 1_000_000 - int(cached.get("saved_ms", 0))) / 1000
                log.warning("markets_from_cache", path=str(path), age_s=round(age_s, 1), error=str(e),
                            assets=len(registry))
                return registry
            time.sleep(min(wait_s * (2**i), 5.0))
    raise RestError(f"could not load market specs from {base} after {attempts} attempts: {last}")
