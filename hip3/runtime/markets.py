"""Market specs at actor start: dex discovery and the asset registry, over REST, with retries.

Every actor that needs asset ids or szDecimals calls ``load_registry(cfg)`` in ``setup``: the dex is the
first ``perpDexs`` entry matching ``exchange.dex_pattern``; ids and szDecimals come from that dex's
``meta`` universe order, never from ``perpDexs``/``assetToStreamingOiCap`` order (lessons B13, B39).
An unknown configured market or a duplicate name stops the start with a clear ``AssetError``.
"""

from __future__ import annotations

import time

from hip3.config import Config, exchange_urls
from hip3.hyperliquid.assets import AssetError, AssetRegistry
from hip3.hyperliquid.rest import RestClient, RestError
from hip3.logs import Log


def load_registry(cfg: Config, log: Log, attempts: int = 10, wait_s: float = 0.5,
                  rest: RestClient | None = None) -> AssetRegistry:
    """Discover the dex and its universe. Network errors are retried; spec errors are final."""
    base, _ = exchange_urls(cfg)
    client = rest or RestClient(base, timeout_s=cfg.exchange.request_timeout_ms / 1000)
    markets = [m.coin for m in cfg.markets]
    last: Exception | None = None
    for i in range(attempts):
        try:
            perp_dexs = client.perp_dexs()
            index, dex = AssetRegistry.find_dex(perp_dexs, cfg.exchange.dex_pattern)
            registry = AssetRegistry.build(perp_dexs, client.meta(dex), cfg.exchange.dex_pattern, markets)
            log.info("markets_loaded", dex=dex, dex_index=index, assets=len(registry),
                     configured={m: registry.by_coin(m).asset for m in markets})
            return registry
        except AssetError:
            raise
        except RestError as e:
            last = e
            log.warning("markets_load_retry", attempt=i + 1, error=str(e))
            time.sleep(min(wait_s * (2**i), 5.0))
    raise RestError(f"could not load market specs from {base} after {attempts} attempts: {last}")
