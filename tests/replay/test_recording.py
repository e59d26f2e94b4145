"""The raw-frame recording: round trip, segments, a torn or corrupt tail ignored, not a recording refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hip3.replay.recording import MAGIC, FrameRecorder, RecordingError
from hip3.replay.rotation import read_recording

pytestmark = pytest.mark.timeout(20)

HEADER = {"started_wall_ns": 1_700_000_000_000_000_000, "started_mono_ns": 5_000, "markets": ["xyz:GOLD"],
          "dex": "xyz", "dex_index": 1, "universe": [["xyz:GOLD", 4, 20, False]], "url": "ws://x/ws"}
FRAMES = [(5_100 + i, b'{"channel":"bbo","data":{"coin":"xyz:GOLD","n":%d}}' % i) for i in range(50)]


def test_round_trip_keeps_every_frame_and_its_receive_time(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "frames.rec"
    rec = FrameRecorder(path, HEADER, 5_000)
    rec.write_frames(FRAMES[:20])
    rec.write_frames(FRAMES[20:])
    rec.close()
    got = read_recording(path)
    assert got.torn_bytes == 0 and len(got.segments) == 1
    assert got.header["format"] == 1 and got.header["universe"] == HEADER["universe"]
    assert got.segments[0].t_ns == 5_000
    assert got.frames() == FRAMES


def test_nothing_reaches_the_file_until_a_flush(tmp_path: Path) -> None:
    path = tmp_path / "frames.rec"
    rec = FrameRecorder(path, HEADER, 5_000)
    size = path.stat().st_size  # the header is written at once
    rec.write_frames(FRAMES)
    assert path.stat().st_size == size  # buffered: the feed's hot path does no system call
    rec.flush()
    assert len(read_recording(path).frames()) == len(FRAMES)
    rec.close()


def test_a_restarted_feed_appends_a_segment(tmp_path: Path) -> None:
    path = tmp_path / "frames.rec"
    for start in (5_000, 9_000):
        rec = FrameRecorder(path, {**HEADER, "started_mono_ns": start}, start)
        rec.write_frames([(start + 1, b"{}")])
        rec.close()
    got = read_recording(path)
    assert [s.t_ns for s in got.segments] == [5_000, 9_000]
    assert got.frames() == [(5_001, b"{}"), (9_001, b"{}")]
    assert path.read_bytes().count(MAGIC) == 1


@pytest.mark.parametrize("cut", [1, 5, 17, 30])
def test_a_torn_last_record_is_ignored(tmp_path: Path, cut: int) -> None:
    """kill -9 in the middle of a write: everything before the cut record is read, the rest reported."""
    path = tmp_path / "frames.rec"
    rec = FrameRecorder(path, HEADER, 5_000)
    rec.write_frames(FRAMES)
    rec.close()
    whole = path.stat().st_size
    last = 17 + len(FRAMES[-1][1])
    os.truncate(path, whole - last + cut)  # the last record cut after `cut` bytes
    got = read_recording(path)
    assert got.frames() == FRAMES[:-1]
    assert got.torn_bytes == cut and got.torn_reason.startswith("truncated")


def test_a_corrupt_tail_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "frames.rec"
    rec = FrameRecorder(path, HEADER, 5_000)
    rec.write_frames(FRAMES)
    rec.close()
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # a flipped byte in the last payload
    path.write_bytes(bytes(data))
    got = read_recording(path)
    assert got.frames() == FRAMES[:-1] and got.torn_reason == "bad checksum"


def test_not_a_recording_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.rec"
    path.write_bytes(b"hello world")
    with pytest.raises(RecordingError, match="bad magic"):
        read_recording(path)
    path.write_bytes(MAGIC)
    with pytest.raises(RecordingError, match="no header"):
        read_recording(path)
