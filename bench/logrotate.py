"""What a log line costs the process that writes it, and what a rotation adds (``hip3.ops.logrotate``).

Run: ``python -m bench.logrotate [--lines N]``.

Three handlers write the same JSON records (hip3's formatter, one line each) to a file in a temporary
directory: ``logging.FileHandler`` (what hip3 used before: no rotation; the baseline), the standard
``logging.handlers.RotatingFileHandler`` (it stats the path and formats every record twice to decide) and
hip3's ``RotatingLineHandler`` (one ``write(2)`` per line, the size counted in memory, a rotation is one
rename). Both rotating handlers rotate every ``--rotate-kb`` with ``keep`` = 5: the standard one renames every
older file up by one, deletes the last and creates the new file, inside the log call that crossed the size;
hip3's renames the file aside and its spare into place (the supervisor's housekeeping makes the spares and
prunes, here between two rotations, untimed). ``hip3_rotating_no_spare``: no supervisor (an actor run
alone), so every rotation after the first creates the file itself. Reported: the median and p99 of a
line's cost, the median and worst of the lines that rotated, and the rename of such a file alone (the part
no rotation avoids). Figures on a shared machine are indicative; compare the ratios measured in the same
run. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from hip3.ops.logrotate import RotatingLineHandler, housekeep
from hip3.runtime.logs import _JsonFormatter
from hip3.runtime.percentiles import percentile_floor


def _record(i: int) -> logging.LogRecord:
    rec = logging.LogRecord("hip3.executor", logging.INFO, __file__, 1, "order_sent", None, None)
    rec.fields = {"intent_id": f"x123-{i}", "cloid": "0x68697033000100000000000000000001", "px": "2345.6",
                  "sz": "0.0213", "coin": "xyz:GOLD", "tick_to_trade_us": 71}
    rec.actor = "executor"
    return rec


def _measure(handler: logging.Handler, n: int, rotated: Any, after_rotation: Any = None) -> dict[str, float]:
    handler.setFormatter(_JsonFormatter())
    records = [_record(i) for i in range(n)]
    plain: list[int] = []
    rotating: list[int] = []
    before = rotated()
    for rec in records:
        t0 = time.perf_counter_ns()
        handler.handle(rec)
        dt = time.perf_counter_ns() - t0
        now = rotated()
        (rotating if now != before else plain).append(dt)
        if now != before and after_rotation is not None:
            after_rotation()  # untimed: what the supervisor's housekeeping does meanwhile
        before = now
    handler.close()
    plain.sort()
    return {"line_ns_median": statistics.median(plain), "line_ns_p99": percentile_floor(plain, 99),
            "rotations": len(rotating), "rotation_ns_median": statistics.median(rotating) if rotating else 0.0,
            "rotation_ns_max": max(rotating) if rotating else 0.0}


def _rename_baseline(base: Path, size: int, n: int = 60) -> float:
    """The median cost of renaming a log file just written to ``size`` bytes: what a rotation cannot avoid."""
    line = b"x" * 200 + b"\n"
    out = []
    for i in range(n):
        fd = os.open(base / "r.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        for _ in range(size // len(line)):
            os.write(fd, line)
        t0 = time.perf_counter_ns()
        os.rename(base / "r.log", base / f"r.log.{i}")
        out.append(time.perf_counter_ns() - t0)
        os.close(fd)
    return statistics.median(out)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.logrotate", description=__doc__.split("\n")[0])
    p.add_argument("--lines", type=int, default=200_000)
    p.add_argument("--rotate-kb", type=int, default=256)
    args = p.parse_args()
    max_bytes = args.rotate_kb * 1024
    out: dict[str, Any] = {"lines": args.lines, "rotate_kb": args.rotate_kb}
    with tempfile.TemporaryDirectory(prefix="h3lr", dir="/tmp") as d:
        base = Path(d)
        out["rename_ns_median"] = _rename_baseline(base, max_bytes)
        fh = logging.FileHandler(base / "a.log", encoding="utf-8")
        out["file_handler"] = _measure(fh, args.lines, lambda: 0)
        std = logging.handlers.RotatingFileHandler(base / "b.log", maxBytes=max_bytes, backupCount=5,
                                                   encoding="utf-8")
        out["stdlib_rotating"] = _measure(std, args.lines, lambda: (base / "b.log.1").exists() and
                                          (base / "b.log.1").stat().st_ino)
        ours = RotatingLineHandler(base / "c.log", max_bytes, keep=5)
        out["hip3_rotating"] = _measure(ours, args.lines, lambda: ours.rotations,
                                        lambda: housekeep(base, 5))
        alone = RotatingLineHandler(base / "d.log", max_bytes, keep=5)  # no supervisor: no spare after the first
        out["hip3_rotating_no_spare"] = _measure(alone, args.lines, lambda: alone.rotations)
    for name in ("file_handler", "stdlib_rotating", "hip3_rotating", "hip3_rotating_no_spare"):
        r = out[name]
        print(f"{name:<22} line median {r['line_ns_median'] / 1000:6.2f} us  p99 {r['line_ns_p99'] / 1000:6.2f} us"
              f"  rotations {r['rotations']:>4}  rotating line median {r['rotation_ns_median'] / 1000:7.1f} us"
              f"  max {r['rotation_ns_max'] / 1000:7.1f} us")
    base_ns = out["file_handler"]["line_ns_median"]
    out["hip3_line_vs_file_handler"] = round(out["hip3_rotating"]["line_ns_median"] / base_ns, 2)
    out["hip3_rotation_vs_stdlib"] = round(out["hip3_rotating"]["rotation_ns_median"]
                                           / out["stdlib_rotating"]["rotation_ns_median"], 2)
    out["stdlib_line_vs_file_handler"] = round(out["stdlib_rotating"]["line_ns_median"] / base_ns, 2)
    extra_ns = out["hip3_rotating"]["rotation_ns_median"] - base_ns - out["rename_ns_median"]
    print(f"renaming a {args.rotate_kb} KiB log file just written: {out['rename_ns_median'] / 1000:.1f} us "
          f"(median); hip3's rotating line adds {extra_ns / 1000:.1f} us to a plain line and that rename")
    print(f"a line costs {out['hip3_line_vs_file_handler']}x FileHandler's with hip3's rotation, "
          f"{out['stdlib_line_vs_file_handler']}x with the standard library's; a rotating line "
          f"{out['hip3_rotation_vs_stdlib']}x the standard library's (indicative: shared machine)")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
