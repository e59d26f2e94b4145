"""Nonces and cloids stay unique over 10,000 orders with the executor killed (-9) and restarted in between.
The real executor process against the simulator process; see ``harness.py``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security.helpers import loose_permissions, scan_tree, secret_needles

from .harness import Figures, Harness, check_log, figures_json

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    base = Path(os.path.realpath(tmp_path_factory.mktemp("uq", numbered=True)))
    h = Harness(base)
    try:
        yield h
    finally:
        h.close()


def _assert_unique(fig: Figures, n_orders: int, restarts: int) -> None:
    assert fig.restarts == restarts
    _assert_log_unique(fig, n_orders)
    # every redelivered intent the killed executor had sent was refused by its successor, never sent again
    if restarts:
        assert fig.redeliveries > 0 and fig.duplicates_refused == fig.redeliveries, fig


def _assert_log_unique(fig: Figures, n_orders: int) -> None:
    assert fig.orders_in_log >= n_orders, fig
    assert fig.distinct_cloids == fig.orders_in_log, fig  # every cloid distinct
    assert fig.distinct_nonces == fig.actions_signed, fig  # every nonce distinct (orders, scheduleCancel)
    assert fig.nonce_order_violations == 0, fig  # strictly increasing for the signer, across restarts
    assert fig.intents_sent_twice == 0, fig  # no intent reached the exchange twice (journal: cloid -> intent)
    assert fig.orders_without_journal_line == 0, fig  # every order at the exchange was journaled first
    assert fig.submitted_twice == 0, fig  # as the executors reported it, too
    assert fig.nonce_rejections == 0, fig  # the exchange never refused a nonce
    assert fig.submitted_missing_from_log == 0, fig  # every order the executor reported sent arrived


def test_ten_thousand_orders_with_five_executor_kills(harness: Harness) -> None:
    n, restarts = int(os.environ.get("HIP3_UNIQUENESS_ORDERS", "10000")), 5
    fig = harness.run(n, restarts, timeout_s=200)
    out = os.environ.get("HIP3_UNIQUENESS_FIGURES")
    if out:
        Path(out).write_text(figures_json(fig) + "\n")
    _assert_unique(fig, n, restarts)
    # The standalone executor (key from its own environment) killed five times: the key is nowhere on disk.
    files, hits = scan_tree([harness.run_dir, harness.base / "sim", harness.stderr_path], secret_needles(harness.key))
    assert files >= 5 and hits == [], hits
    assert not loose_permissions(harness.run_dir), loose_permissions(harness.run_dir)


def _rec(nonce: int, *cloids: str) -> dict[str, object]:
    return {"nonce": nonce, "action_type": "order" if cloids else "scheduleCancel", "cloids": list(cloids)}


def test_the_checker_catches_every_violation() -> None:
    """The property can fail: a reused nonce, a nonce going down, a reused cloid, an intent sent twice under
    two cloids, an order with no journal line, a nonce rejection, a reported order that never arrived."""
    clean = [_rec(10, "0xa"), _rec(11, "0xb", "0xc"), _rec(12)]
    journal = ["1 i1 0xa", "1 i2 0xb", "1 i3 0xc"]
    fig = check_log(Figures(), clean, journal, {"0xa": "i1"}, ["Order could not immediately match"])
    _assert_unique(fig, 3, 0)
    bad = [_rec(10, "0xa"), _rec(10, "0xb"), _rec(9, "0xa"), _rec(12, "0xd"), _rec(13, "0xe")]
    fig = check_log(Figures(), bad, [*journal, "2 i1 0xd"], {"0xa": "i1", "0xz": "i9", "0xy": "i9"},
                    ["Invalid nonce: duplicate nonce 10"])
    assert fig.distinct_nonces == 4 < fig.actions_signed
    assert fig.nonce_order_violations == 2
    assert fig.distinct_cloids == 4 < fig.orders_in_log
    assert fig.intents_sent_twice == 2  # i1 twice (0xa twice, then as 0xd)
    assert fig.orders_without_journal_line == 1  # 0xe
    assert fig.nonce_rejections == 1 and fig.submitted_missing_from_log == 2 and fig.submitted_twice == 1
