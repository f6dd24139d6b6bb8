"""The stationary block bootstrap: its blocks are what they say, and the ratio of two mean losses comes with an
interval that holds the truth, narrows with more points and tells a better series from luck."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from makeusrich.scoring import bootstrap as b


def test_the_stationary_bootstrap_keeps_blocks_and_wraps_around() -> None:
    starts, lengths = b.stationary_blocks(1000, 24.0, 200, np.random.default_rng(0))
    assert (lengths.sum(axis=1) == 1000).all() and starts.min() >= 0 and starts.max() < 1000
    used = lengths[lengths > 0]
    assert abs(used[: used.size // 2].mean() - 24.0) < 2.0  # geometric blocks of 24 candles on average
    again = b.stationary_blocks(1000, 24.0, 200, np.random.default_rng(0))
    assert np.array_equal(starts, again[0]) and np.array_equal(lengths, again[1])
    # the sums over blocks are the sums over the candles the blocks name, wrapping around the end
    values = np.random.default_rng(1).normal(size=1000)
    expanded = [
        np.concatenate([np.arange(a, a + k) % 1000 for a, k in zip(row_starts, row_lengths, strict=True)])
        for row_starts, row_lengths in zip(starts[:20], lengths[:20], strict=True)
    ]
    assert all(len(index) == 1000 for index in expanded)
    direct = np.array([values[index].sum() for index in expanded])
    np.testing.assert_allclose(b.block_sums(values, starts[:20], lengths[:20]), direct, rtol=1e-9, atol=1e-9)
    assert any((np.diff(index) % 1000 == 1).mean() < 1 and (index[:-1] > index[1:]).any() for index in expanded)


def test_a_series_against_itself_has_a_ratio_of_exactly_one() -> None:
    losses = np.random.default_rng(2).exponential(size=500)
    [(ratio, low, high)] = b.ratio_intervals(losses, [losses], mean_block=24.0, resamples=300)
    assert ratio == low == high == pytest.approx(1.0)


def test_the_interval_holds_the_true_ratio_and_narrows_with_more_points() -> None:
    widths = []
    for n in (1000, 16000):
        rng = np.random.default_rng(n)
        level = np.repeat(rng.exponential(size=n // 24 + 1), 24)[:n]  # a day's shared level: dependent points
        base = level * rng.exponential(size=n)
        better = 0.95 * level * rng.exponential(size=n)
        [(ratio, low, high)] = b.ratio_intervals(better, [base], mean_block=24.0, resamples=500)
        assert low < ratio < high and low < 0.95 < high
        widths.append(high - low)
    assert widths[1] < widths[0] / 2  # sixteen times the points: about a quarter of the width
    assert high < 1.0  # with enough points, 5% better is more than luck


def test_a_small_difference_on_few_points_could_be_luck() -> None:
    rng = np.random.default_rng(5)
    base = rng.exponential(size=200)
    [(ratio, low, high)] = b.ratio_intervals(0.98 * base + 0.02 * rng.exponential(size=200), [base], 24.0, 500)
    assert low < 1.0 < high and abs(ratio - 1.0) < 0.05


def test_a_ratio_refuses_series_it_cannot_compare() -> None:
    with pytest.raises(ValueError, match="the same for every series"):
        b.ratio_intervals(np.ones(10), [np.ones(9)], 24.0)
    with pytest.raises(ValueError, match="not all zero"):
        b.ratio_intervals(np.ones(10), [np.zeros(10)], 24.0)


def test_the_mean_block_is_a_day_of_candles_and_never_less_than_one() -> None:
    assert b.day_of_candles(timedelta(hours=1)) == 24.0 and b.day_of_candles(timedelta(minutes=15)) == 96.0
    assert b.day_of_candles(timedelta(days=1)) == 1.0 == b.day_of_candles(timedelta(weeks=1))
