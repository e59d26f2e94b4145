"""hip3: an oracle-dislocation taker for Hyperliquid HIP-3 markets, as a multi-process actor system."""
