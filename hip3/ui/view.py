"""What the live view and the dashboard pick out of a ``status`` document (pure functions).

Both screens show the same figures; the choices made here (which actor stats are worth a panel, which
are highlighted) are shared so the terminal and the browser never disagree.

Actor stats come from heartbeats as open-ended keys, and other parts of hip3 add keys over time
(request budget, collateral, dead man's switch, clock offset, open-interest caps, loss limits). The
panels therefore show every stat of the executor and the position tracker except the ones shown
elsewhere or too fine-grained to read (``HIDDEN_PREFIXES``), and highlight keys containing one of
``HIGHLIGHT_WORDS``; of the other actors (the feed's clock skew, say) they show the highlighted keys only,
as ``actor.key`` under ``others``. A new stat appears without a change here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["HIDDEN_PREFIXES", "HIGHLIGHT_WORDS", "KEY_STATS_ACTORS", "PINNED", "api_document", "key_stats"]

KEY_STATS_ACTORS = ("executor", "position_tracker")
# Stage timings and latency percentiles are the benchmark's business; per-reason verdict counts repeat
# their totals; the signing-nonce pool is an implementation detail.
HIDDEN_PREFIXES = ("stage_", "added_latency_", "entry_accepted:", "sign_nonces_")
HIGHLIGHT_WORDS = ("budget", "rate_limit", "ratelimit", "request", "collateral", "withdrawable", "account_value",
                   "margin", "dms", "dead_man", "schedule_cancel", "clock", "skew", "offset", "oi_cap",
                   "open_interest", "loss", "backoff", "overload", "rejected", "failed", "hardstop", "outside",
                   "dust", "stale")


# Each panel's activity counters come first, whatever else is highlighted: the panel has room for a
# limited number of rows, and "is it sending, is it syncing" is the first question an operator asks.
PINNED: dict[str, tuple[str, ...]] = {
    "executor": ("orders_sent", "cancels_sent", "posts", "entry_intents", "flatten_intents", "inflight_posts"),
    "position_tracker": ("positions", "resyncs", "positions_closed"),
}


def is_highlighted(key: str) -> bool:
    k = key.lower()
    return any(w in k for w in HIGHLIGHT_WORDS)


def key_stats(status: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Per actor of ``KEY_STATS_ACTORS``: ``[{"key", "value", "hot"}]``, its ``PINNED`` counters first, then
    highlighted keys; under ``others``, the other actors' highlighted keys as ``actor.key``."""
    out: dict[str, list[dict[str, Any]]] = {}
    others: list[dict[str, Any]] = []
    for a in status.get("actors") or []:
        name = str(a.get("name"))
        stats: Mapping[str, Any] = a.get("stats") or {}
        if name not in KEY_STATS_ACTORS:
            others.extend({"key": f"{name}.{k}", "value": v, "hot": True} for k, v in stats.items()
                          if is_highlighted(k) and not k.startswith(HIDDEN_PREFIXES))
            continue
        rows = [{"key": k, "value": v, "hot": is_highlighted(k)} for k, v in stats.items()
                if not k.startswith(HIDDEN_PREFIXES)]
        pinned = PINNED.get(name, ())
        rows.sort(key=lambda r: (pinned.index(r["key"]) if r["key"] in pinned else len(pinned), not r["hot"],
                                 r["key"]))
        out[name] = rows
    out["others"] = sorted(others, key=lambda r: str(r["key"]))
    return out


def api_document(status: dict[str, Any]) -> dict[str, Any]:
    """The dashboard's ``/api/status``: the ``status`` document plus the shared selections (``view``)."""
    return {**status, "view": {"key_stats": key_stats(status)}}
