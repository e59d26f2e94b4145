"""Hyperliquid protocol library: pure, testable without the network.

``signing`` (L1 action signatures), ``wire`` (exact number strings, action builders), ``errors`` (exchange
strings, status classification), ``nonce``, ``assets`` (HIP-3 asset ids), ``frames`` (WS frame decoding),
``responses`` (/exchange bodies), ``ws`` (poll-loop WebSocket client), ``rest`` (/info, /exchange).
Spec: the exchange's API documentation and the official Python SDK's behaviour; the SDK is a test-only
oracle and is never imported here.
"""
