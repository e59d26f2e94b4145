"""Hyperliquid protocol library: pure, testable without the network.

``signing`` (L1 action signatures), ``wire`` (exact number strings, action builders), ``errors`` (exchange
strings, status classification), ``nonce``, ``assets`` (HIP-3 asset ids), ``frames`` and ``frame_decoder``
(WS frame shapes and their decoding), ``feed`` (the feed actor's core over the decoder), ``responses``
(/exchange bodies), ``ws`` (poll-loop WebSocket client, with ``ws_framing``, ``ws_subscriptions`` and
``ws_posts``), ``rest`` (/info, /exchange), ``fees`` and ``rules`` (the exchange's fee and order rules).
Spec: the exchange's API documentation and the official Python SDK's behaviour; the SDK is a test-only
oracle and is never imported here.
"""
