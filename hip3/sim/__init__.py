"""A local Hyperliquid-compatible exchange simulator for HIP-3 markets (paper mode and tests).

It speaks the exchange's protocol on one port: WebSocket at
``/ws`` and ``POST /info`` / ``POST /exchange`` over HTTP, plus ``POST /sim/control`` for the operator.
The official Python SDK works against it unchanged; pass ``perp_dexs=["xyz"]`` to ``Info``/``Exchange`` so
that the SDK maps ``xyz:NAME`` to asset ids (it does that only for the dexes it is given).

Run it:

* as a process: ``python -m hip3.sim [--host 127.0.0.1] [--port N] [--config FILE] [--seed N]
  [--fund ADDRESS:USD ...] [--order-log FILE]``; prints ``SIM READY port=<n>`` when listening;
* in-process: ``SimServer(params, seed, funds, order_log).start() -> port``, ``.url``, ``.ws_url``,
  ``.stop()``, and the controls ``fund``, ``approve_agent``, ``jump``, ``set_oracle``, ``set_faults``,
  ``drop``, ``send_malformed``, ``state`` (hip3.sim.app).

Modules: ``params`` (SimParams, the default markets), ``model`` (oracle + lagging makers), ``book``
(price-time book in integer ticks/lots), ``orders`` (validation, matching, cancels), ``accounts``
(positions, PnL, fees, fills), ``auth`` (signer recovery, agents, nonces), ``engine`` (the state
machine), ``info`` (/info answers), ``faults``, ``orderlog``, ``transport`` (HTTP + WebSocket framing),
``server`` (requests and publishing), ``app`` (SimServer and the control commands), ``terms`` (fees per
fill from the exchange's formula, open-interest caps and their refusals).

A balance per perp dex: the builder dex's collateral backs its markets; the validator perp dex ("")
holds USDC only (its markets are not tradable); ``sendAsset`` (user-signed, signature checked) moves it
between them; ``SimParams.funds_on`` says where ``--fund`` credits. ``SimParams.clock_offset_ms`` sets the
exchange's clock apart from the host's. Deliberate simplifications: no funding payments, liquidations,
trigger orders; signature source is one flavour per simulator (default testnet "b", what the
SDK signs for a non-mainnet URL).
"""
