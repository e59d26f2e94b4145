"""The operator's commands to a running supervisor (``status``, ``hardstop``, ``reset-hardstop``, ``stop``,
``fund-dex``), as they arrive decoded from the ``ctl`` socket: one JSON reply each, never an exception."""

from __future__ import annotations

from typing import Any

import msgspec

from hip3.account.funding import FundingError, parse_amount
from hip3.config import Config
from hip3.runtime.hardstop import LatchFileError
from hip3.runtime.logs import Log
from hip3.runtime.paper import PaperExchange
from hip3.runtime.supervisor_status import latch_file_status
from hip3.runtime.supervisor_view import SupervisorView

__all__ = ["handle_command", "paper_fund_dex"]


def handle_command(sup: SupervisorView, req: dict[str, Any]) -> dict[str, Any]:
    cmd = req.get("cmd")
    if cmd == "status":
        return sup.status()
    if cmd == "hardstop":
        reason = str(req.get("reason") or "operator")
        changed = sup.hardstop(f"operator: {reason}", "cli")
        return {"ok": True, "changed": changed,
                "hard_stop": {**msgspec.to_builtins(sup.latch.state), **latch_file_status(sup.latch)}}
    if cmd == "reset-hardstop":
        try:
            changed = sup.reset_hardstop()
        except LatchFileError as e:
            sup.log.error("hardstop_reset_refused", error=str(e))
            return {"ok": False, "error": str(e)}
        return {"ok": True, "changed": changed, "hard_stop": msgspec.to_builtins(sup.latch.state)}
    if cmd == "stop":
        sup.stopping = True
        sup.stop_request = req  # stop --flatten asks for its latch to be cleared once every actor is down
        # What this stop leaves at the exchange: the loop reads no more position snapshots after this.
        return {"ok": True, "left": sup.board.left(sup.trading.snapshot)}
    if cmd == "fund-dex":
        return paper_fund_dex(sup.exchange, sup.cfg, req.get("usd"), sup.log)
    return {"ok": False, "error": f"unknown command {cmd!r}"}


def paper_fund_dex(exchange: PaperExchange | None, cfg: Config, usd: object, log: Log) -> dict[str, Any]:
    """The supervisor's ``fund-dex`` command in paper mode: the operator's explicit transfer to the dex,
    signed with the session's key (only the supervisor holds it). Live mode runs ``fund-dex`` with the
    account's key instead. The reply for the CLI."""
    if exchange is None:
        return {"ok": False, "error": "the supervisor funds the dex in paper mode only; on the real exchange "
                                      "run `python supervisor.py fund-dex` with the account's own key"}
    try:
        line = exchange.fund_dex(parse_amount(None if usd is None else str(usd), cfg.collateral.transfer_usd))
    except FundingError as e:
        return {"ok": False, "error": str(e)}
    log.warning("dex_funded_by_operator", line=line)
    return {"ok": True, "line": line}
