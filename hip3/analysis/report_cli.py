"""``python supervisor.py report``: which journal, which view (session report, follow-up analysis, HTML).

The journal is ``<run_dir>/journal.sqlite`` of the config's run directory, or of ``--run-dir DIR`` (a
replay's run directory holds a journal written by the same recorder code as a live session's). It is
opened read-only. Every problem the operator can fix (no journal, a bad ``--since``, an unwritable HTML
path, a journal that cannot be read) is one line (``ReportError``), never a traceback.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import msgspec

from hip3.analysis.fees import TakerFees
from hip3.journal.report import build_report, format_report, open_readonly, parse_since
from hip3.journal.schema import journal_path


class ReportError(Exception):
    """One line for the operator."""


def run_report(run_dir: Path, *, since: str | None = None, as_json: bool = False, signals: bool = False,
               html_path: str | None = None, taker_fee_bps: float | None = None) -> str:
    """The text to print: the session report, or the follow-up analysis with ``signals``; with ``html_path``
    the HTML report is written too and the text says where."""
    path = journal_path(run_dir)
    try:
        fees = TakerFees() if taker_fee_bps is None else TakerFees(taker_fee_bps)
        since_ms = parse_since(since, time.time_ns() // 1_000_000) if since else None
        conn = open_readonly(path)
    except (ValueError, FileNotFoundError) as e:
        raise ReportError(str(e)) from None
    from hip3.analysis.followups import analyse, format_analysis

    out: list[str] = []
    try:
        rep = build_report(conn, since_ms)
        fu = analyse(conn, fees, since_ms) if (signals or html_path) else None
        if signals and fu is not None:
            out.append(msgspec.json.encode(fu).decode() if as_json else format_analysis(fu, str(path)))
        else:
            out.append(msgspec.json.encode(rep).decode() if as_json else format_report(rep, str(path)))
        if html_path and fu is not None:
            out.append(_write_html(conn, rep, fu, since_ms, Path(html_path), str(path), quiet=as_json))
    except sqlite3.Error as e:
        raise ReportError(f"cannot read the journal {path}: {e}") from None
    finally:
        conn.close()
    return "\n".join(o for o in out if o)


def _write_html(conn: sqlite3.Connection, rep: dict[str, Any], fu: dict[str, Any], since_ms: int | None,
                target: Path, source: str, quiet: bool) -> str:
    try:
        from hip3.analysis.equity import equity_curve
        from hip3.analysis.html import render, write_html
    except ImportError as e:  # plotly is in the analysis extra
        raise ReportError(f"--html needs plotly ({e.name} is not installed): pip install -e '.[analysis]'") from None
    from hip3.journal.report import closed_trades

    page = render(rep, equity_curve(closed_trades(conn, since_ms)), fu, source)
    try:
        write_html(target, page)
    except OSError as e:
        raise ReportError(f"cannot write {target}: {e.strerror or e}") from None
    return "" if quiet else f"wrote {target} ({len(page) // 1024} KiB)"
