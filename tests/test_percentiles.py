"""The two percentile definitions (``hip3.runtime.percentiles``): which sample each picks."""

from __future__ import annotations

import random

import pytest

from hip3.runtime.percentiles import percentile_floor, percentile_round


def test_round_picks_the_sample_nearest_to_q_times_n_minus_1() -> None:
    xs = [float(v) for v in range(1, 11)]  # 1..10
    random.Random(7).shuffle(xs)  # unsorted input is sorted first
    assert percentile_round(xs, 0.0) == 1.0
    assert percentile_round(xs, 0.5) == 5.0  # index round(4.5) = 4 (half to even)
    assert percentile_round(xs, 0.9) == 9.0  # index round(8.1) = 8
    assert percentile_round(xs, 1.0) == 10.0
    assert percentile_round([3.5], 0.99) == 3.5


def test_floor_picks_index_n_times_percent_over_100() -> None:
    xs = list(range(1, 11))
    assert percentile_floor(xs, 0) == 1
    assert percentile_floor(xs, 50) == 6  # the upper of the two middle samples
    assert percentile_floor(xs, 90) == 10
    assert percentile_floor(xs, 99) == 10
    assert percentile_floor(xs, 100) == 10
    assert percentile_floor([7], 50) == 7


def test_the_two_definitions_differ_where_the_figures_say_so() -> None:
    xs = list(range(100))
    assert percentile_round([float(x) for x in xs], 0.99) == 98.0
    assert percentile_floor(xs, 99) == 99


@pytest.mark.parametrize("n", [1, 2, 3, 7, 10, 99, 100, 101, 1000, 4096])
def test_floor_is_integer_arithmetic_for_every_count(n: int) -> None:
    xs = list(range(n))
    for percent in (50, 90, 99):
        assert percentile_floor(xs, percent) == min(n - 1, n * percent // 100)
