"""hip3/sim/synth.py: a recording from the simulator's market model alone, deterministic for a seed, with
the channels and header a live feed writes, replayable to trades."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from hip3.replay.rotation import read_recording
from hip3.sim.synth import default_params, main, synth_recording


def test_a_seed_gives_the_same_file_and_the_feeds_channels(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.rec.zst", tmp_path / "b.rec.zst", tmp_path / "c.rec.zst"
    n = synth_recording(a, default_params(), ["xyz:GOLD", "xyz:SILVER"], 30.0, 4)
    synth_recording(b, default_params(), ["xyz:GOLD", "xyz:SILVER"], 30.0, 4)
    synth_recording(c, default_params(), ["xyz:GOLD", "xyz:SILVER"], 30.0, 5)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    rec = read_recording(a)
    assert len(rec.frames()) == n > 30
    assert rec.header["markets"] == ["xyz:GOLD", "xyz:SILVER"] and rec.header["dex"] == "xyz"
    assert ["xyz:GOLD", 4, 20, False] in rec.header["universe"]
    seen = {(m["channel"], m["data"]["coin"]) for m in (msgspec.json.decode(raw) for _, raw in rec.frames())}
    assert seen == {(ch, coin) for ch in ("bbo", "l2Book", "activeAssetCtx") for coin in ("xyz:GOLD", "xyz:SILVER")}
    times = [t for t, _ in rec.frames()]
    assert times == sorted(times) and (times[-1] - times[0]) / 1e9 == pytest.approx(30.0, abs=0.1)


def test_unknown_markets_are_refused_and_the_cli_writes_a_file(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="not a simulated market: xyz:NOPE"):
        synth_recording(tmp_path / "x.rec", default_params(), ["xyz:NOPE"], 1.0, 1)
    assert main([str(tmp_path / "y.rec"), "--seconds", "5", "--markets", "xyz:GOLD"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert (tmp_path / "y.rec").read_bytes().startswith(b"HIP3REC")  # .rec: uncompressed
