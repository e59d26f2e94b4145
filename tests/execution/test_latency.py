"""LatencySamples: bounded per-stage samples summarised in whole microseconds."""

from __future__ import annotations

from hip3.execution.latency import LatencySamples


def test_summary_percentiles_and_bound() -> None:
    s = LatencySamples(maxlen=100)
    for i in range(1, 201):  # only the last 100 (101..200 µs) are kept
        s.add("stage_sign", i * 1000)
    out = s.summary()
    assert out["stage_sign_n"] == 100
    assert out["stage_sign_p50_us"] == 151
    assert out["stage_sign_p90_us"] == 191
    assert out["stage_sign_p99_us"] == 200
    assert out["stage_sign_max_us"] == 200
    assert LatencySamples().summary() == {}
    s.clear()
    assert s.summary() == {}
