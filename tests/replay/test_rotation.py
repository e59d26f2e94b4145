"""Compressed, rotating recordings (hip3/replay/recording.py, hip3/replay/rotation.py): zstd round trip,
a torn or corrupt compressed tail, rotation by size and by age with an index of what each part covers,
a killed writer's part corrected by the next one, a lost index rebuilt, and today's uncompressed single
file still written and read as before."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import pytest

from hip3.replay.recording import MAGIC, ZSTD_MAGIC, FrameRecorder, RecordingError
from hip3.replay.rotation import RotatingRecorder, RotationParams, index_path, load_index, open_recorder, read_recording
from tests.replay.test_recording import HEADER

pytestmark = pytest.mark.timeout(30)

WALL0 = HEADER["started_wall_ns"] - HEADER["started_mono_ns"]  # wall = mono + this


def frames(n: int, t0: int = 10_000, step: int = 1_000_000) -> list[tuple[int, bytes]]:
    return [(t0 + i * step, b'{"channel":"bbo","data":{"coin":"xyz:GOLD","time":%d,"bbo":[{"px":"4000.5","sz":"1.2",'
             b'"n":1},{"px":"4001.5","sz":"0.5","n":2}]}}' % i) for i in range(n)]


def test_a_compressed_recording_round_trips_and_is_smaller(tmp_path: Path) -> None:
    fs = frames(500)
    raw, packed = tmp_path / "a.rec", tmp_path / "a.rec.zst"
    for path, level in ((raw, None), (packed, 3)):
        rec = FrameRecorder(path, HEADER, 5_000, zstd_level=level)
        rec.write_frames(fs[:200])
        rec.flush()
        rec.write_frames(fs[200:])
        rec.close()
        assert (rec.first_t_ns, rec.last_t_ns, rec.frames) == (fs[0][0], fs[-1][0], 500)
    assert packed.read_bytes().startswith(ZSTD_MAGIC) and raw.read_bytes().startswith(MAGIC)
    assert packed.stat().st_size * 5 < raw.stat().st_size
    got = read_recording(packed)
    assert got.frames() == fs and got.torn_bytes == 0 and got.torn_reason == ""
    assert got.header == read_recording(raw).header
    with pytest.raises(RecordingError, match="never appended"):
        FrameRecorder(packed, HEADER, 6_000, zstd_level=3)


def test_a_killed_compressed_writer_loses_only_its_unflushed_buffer(tmp_path: Path) -> None:
    path = tmp_path / "a.rec.zst"
    fs = frames(300)
    rec = FrameRecorder(path, HEADER, 5_000, zstd_level=3)
    rec.write_frames(fs[:100])
    rec.flush()
    rec.write_frames(fs[100:200])
    rec.flush()
    flushed = path.read_bytes()  # kill -9 now: no stream end
    rec.write_frames(fs[200:])  # buffered only
    got = read_recording(path)
    assert got.frames() == fs[:200] and got.torn_reason == "unfinished compressed stream"
    rec.close()
    # Cut inside the second flush's block: the first flush's frames are read, the rest is reported.
    path.write_bytes(flushed[:-5])
    got = read_recording(path)
    assert got.frames() == fs[:100] and "unfinished" in got.torn_reason
    # A flipped byte inside the second block: the first block's frames, then "corrupt" or a bad CRC.
    data = bytearray(flushed)
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))
    got = read_recording(path)
    assert got.frames()[:100] == fs[:100] and len(got.frames()) < 200
    assert "corrupt" in got.torn_reason or "checksum" in got.torn_reason or "truncated" in got.torn_reason


class Clock:
    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        return self.ns


def _rotating(base: Path, clock: Clock, **kw: int) -> RotatingRecorder:
    params = RotationParams(rotate_bytes=kw.get("rotate_bytes", 0), rotate_ns=kw.get("rotate_ns", 0),
                            zstd_level=3)
    rec = open_recorder(base, HEADER, 5_000, params, clock)
    assert isinstance(rec, RotatingRecorder)
    return rec


def test_rotation_by_age_with_an_index_of_what_each_part_covers(tmp_path: Path) -> None:
    base = tmp_path / "rec" / "frames.rec"
    clock = Clock()
    rec = _rotating(base, clock, rotate_ns=60_000_000_000)
    fs = frames(30, step=10_000_000_000)  # one frame every 10 s
    for f in fs:
        clock.ns = f[0]
        rec.write_frames([f])
        rec.flush()  # the feed's 1 s timer
    rec.close()
    lines = [json.loads(line) for line in index_path(base).read_text().splitlines()]
    assert [(e["part"], e["closed"]) for e in lines[:4]] == [(1, False), (1, True), (2, False), (2, True)]
    parts = load_index(base)["parts"]
    assert [p["file"] for p in parts][:2] == ["frames.00001.rec.zst", "frames.00002.rec.zst"]
    assert len(parts) == 5 and all(p["closed"] and p["compression"] == "zstd" for p in parts)
    assert sum(p["frames"] for p in parts) == len(fs) and rec.frames == len(fs)
    # Each part covers a time range: contiguous, in order, at most a minute of frames each.
    for a, b in itertools.pairwise(parts):
        assert a["last_t_ns"] < b["first_t_ns"]
    assert all(p["last_t_ns"] - p["first_t_ns"] <= 60_000_000_000 for p in parts)
    assert parts[0]["first_t_ns"] == fs[0][0] and parts[-1]["last_t_ns"] == fs[-1][0]
    assert parts[0]["first_wall_ms"] == (fs[0][0] + WALL0) // 1_000_000
    assert all(p["markets"] == ["xyz:GOLD"] and p["dex"] == "xyz" for p in parts)
    # The index, record_path itself, or any one part: the same frames.
    assert read_recording(index_path(base)).frames() == fs
    assert read_recording(base).frames() == fs  # frames.rec does not exist: its index is read
    second = read_recording(base.parent / parts[1]["file"])
    assert second.frames() == [f for f in fs if parts[1]["first_t_ns"] <= f[0] <= parts[1]["last_t_ns"]]
    assert second.header["part"] == 2 and second.header["started_mono_ns"] == HEADER["started_mono_ns"]


def test_rotation_by_size(tmp_path: Path) -> None:
    base = tmp_path / "frames.rec"
    rec = _rotating(base, Clock(), rotate_bytes=2_000)
    fs = frames(2_000, step=1_000)
    for i in range(0, len(fs), 100):
        rec.write_frames(fs[i:i + 100])
        rec.flush()
    rec.close()
    parts = load_index(base)["parts"]
    assert len(parts) >= 3
    assert all(p["bytes"] < 2_000 + 5_000 for p in parts)  # the limit, exceeded by one flush at most
    assert all(p["bytes"] == (base.parent / p["file"]).stat().st_size for p in parts)
    assert read_recording(base).frames() == fs


def test_a_killed_writers_part_is_corrected_and_a_restart_starts_a_new_part(tmp_path: Path) -> None:
    base = tmp_path / "frames.rec"
    clock = Clock()
    rec = _rotating(base, clock, rotate_ns=3_600_000_000_000)
    fs = frames(50)
    rec.write_frames(fs[:40])
    rec.flush()
    rec.write_frames(fs[40:])  # never flushed: kill -9
    with open(index_path(base), "a") as f:
        f.write('{"part": 1, "closed": tr')  # and killed in the middle of an index line
    (opened,) = load_index(base)["parts"]  # the torn line is skipped
    assert opened["closed"] is False and opened["frames"] == 0  # as written when the part opened
    again = _rotating(base, clock, rotate_ns=3_600_000_000_000)  # the restarted feed
    later = frames(5, t0=fs[-1][0] + 1_000_000_000)
    again.write_frames(later)
    again.close()
    first, second = load_index(base)["parts"]
    assert first["closed"] and first["frames"] == 40 and first["torn_reason"] == "unfinished compressed stream"
    assert second["file"] == "frames.00002.rec.zst" and second["frames"] == 5
    got = read_recording(base)
    assert got.frames() == fs[:40] + later and "unfinished" in got.torn_reason


def test_a_lost_index_is_rebuilt_from_the_parts(tmp_path: Path) -> None:
    base = tmp_path / "frames.rec"
    clock = Clock()
    rec = _rotating(base, clock, rotate_ns=5_000_000)
    fs = frames(20)
    for f in fs:
        clock.ns = f[0]
        rec.write_frames([f])
        rec.flush()
    rec.close()
    before = load_index(base)["parts"]
    key = [(p["file"], p["frames"], p["first_t_ns"], p["last_t_ns"]) for p in before]
    assert len(before) >= 3
    index_path(base).write_text("{not json\n")
    assert [(p["file"], p["frames"], p["first_t_ns"], p["last_t_ns"]) for p in load_index(base)["parts"]] == key
    lines = index_path(base).read_text().splitlines()
    index_path(base).write_text(lines[0] + "\n")  # an index that lists part 1 only: the others are found too
    assert len(load_index(base)["parts"]) == len(before)
    os.remove(index_path(base))
    assert read_recording(index_path(base)).frames() == fs
    again = _rotating(base, clock, rotate_ns=5_000_000)  # the next feed writes the rebuilt index whole
    again.close()
    assert [(p["file"], p["frames"]) for p in load_index(base)["parts"]][:len(before)] == [k[:2] for k in key]
    assert not load_index(base).get("rebuilt")


def test_without_rotation_or_compression_record_path_is_one_file_as_before(tmp_path: Path) -> None:
    base = tmp_path / "frames.rec"
    rec = open_recorder(base, HEADER, 5_000, RotationParams(zstd_level=None), Clock())
    assert isinstance(rec, FrameRecorder)
    rec.write_frames(frames(3))
    rec.close()
    assert base.read_bytes().startswith(MAGIC) and not index_path(base).exists()
    assert read_recording(base).frames() == frames(3)
