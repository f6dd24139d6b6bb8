"""Range scores and their baselines on hand-checked cases and on simulated data whose truth is known."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from makeusrich.pair import ModelSpec
from makeusrich.scoring.ranges import (
    GARMAN_KLASS,
    baseline_quantiles,
    check_levels,
    climatology_quantiles,
    conformal_margin,
    conformal_margins,
    coverage,
    ewma_quantiles,
    ewma_sigma,
    ewma_through,
    ewma_variance,
    fit_har,
    har_spans,
    interval_score,
    pinball_loss,
    range_metrics,
    range_score,
    range_variance,
    widest_ratios,
)

LEVELS = [0.05, 0.25, 0.5, 0.75, 0.95]


def test_pinball_by_hand_and_lowest_at_the_true_quantiles() -> None:
    assert pinball_loss([0.0], [[-1.0, 0.0, 1.0]], [0.25, 0.5, 0.75]) == pytest.approx(0.5 / 3)
    rng = np.random.default_rng(1)
    y = rng.normal(size=50_000)
    truth = np.quantile(rng.normal(size=500_000), LEVELS)
    exact = pinball_loss(y, np.tile(truth, (y.size, 1)), LEVELS)
    for shift in (-0.1, 0.1):
        assert pinball_loss(y, np.tile(truth + shift, (y.size, 1)), LEVELS) > exact
    wide = truth * 1.2
    assert pinball_loss(y, np.tile(wide, (y.size, 1)), LEVELS) > exact


def test_coverage_counts_the_ends_and_gives_a_binomial_interval() -> None:
    found = coverage([0.0, 1.0, 2.0, 3.0], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], nominal=0.5)
    assert (found.hits, found.n, found.rate) == (2, 4, 0.5)
    assert found.low < 0.5 < found.high and found.calibrated
    many = coverage(np.zeros(1000), np.full(1000, 1.0), np.full(1000, 2.0), nominal=0.9)
    assert many.rate == 0.0 and not many.calibrated


def test_interval_score_is_the_width_plus_the_penalty_outside() -> None:
    assert interval_score([0.5], [0.0], [1.0], alpha=0.1) == pytest.approx(1.0)
    assert interval_score([1.5], [0.0], [1.0], alpha=0.1) == pytest.approx(1.0 + 20 * 0.5)
    assert interval_score([-0.25], [0.0], [1.0], alpha=0.5) == pytest.approx(1.0 + 4 * 0.25)
    with pytest.raises(ValueError, match="upper end lies below"):
        interval_score([0.0], [1.0], [0.0], alpha=0.1)


def test_conformal_margin_makes_a_too_narrow_range_cover_on_new_data() -> None:
    rng = np.random.default_rng(7)
    calibration, test = rng.standard_t(4, size=2_000), rng.standard_t(4, size=50_000)
    low, high = -1.0, 1.0  # far too narrow for 90% of a t(4)
    before = coverage(test, np.full(test.size, low), np.full(test.size, high), 0.9)
    margin = conformal_margin(calibration, np.full(2_000, low), np.full(2_000, high), alpha=0.1)
    after = coverage(test, np.full(test.size, low - margin), np.full(test.size, high + margin), 0.9)
    assert before.rate < 0.8 and margin > 0
    assert abs(after.rate - 0.9) < 0.015
    too_wide = conformal_margin(calibration, np.full(2_000, -10.0), np.full(2_000, 10.0), alpha=0.1)
    assert too_wide < 0  # a range wider than needed is narrowed
    with pytest.raises(ValueError, match="too few"):
        conformal_margin([0.0] * 5, [0.0] * 5, [1.0] * 5, alpha=0.1)


def test_ewma_variance_uses_only_the_past() -> None:
    r = np.array([0.01, -0.02, 0.03, 0.0])
    v = ewma_variance(r, lam=0.9)
    assert v[0] == pytest.approx(1e-4)
    assert v[1] == pytest.approx(0.9 * 1e-4 + 0.1 * 1e-4)
    assert v[2] == pytest.approx(0.9 * v[1] + 0.1 * 4e-4)
    changed = r.copy()
    changed[2] = 0.5
    assert ewma_variance(changed, lam=0.9)[2] == v[2]  # the return at t does not move the variance at t


def test_ewma_ranges_beat_climatology_when_volatility_clusters() -> None:
    rng = np.random.default_rng(3)
    n = 12_000
    regime = np.repeat(rng.choice([0.3, 1.0, 3.0], size=n // 200), 200)  # calm and wild stretches
    returns = rng.normal(size=n) * regime * 0.01
    train, test = returns[:8_000], returns[8_000:]
    sigma = np.sqrt(ewma_variance(returns))
    levels = [0.05, 0.5, 0.95]
    clim = climatology_quantiles(train, levels, test.size)
    ewma = ewma_quantiles(train, sigma[:8_000], sigma[8_000:], levels)
    assert clim.shape == ewma.shape == (test.size, 3)
    clim_score = interval_score(test, clim[:, 0], clim[:, 2], alpha=0.1)
    ewma_score = interval_score(test, ewma[:, 0], ewma[:, 2], alpha=0.1)
    assert ewma_score < 0.8 * clim_score
    assert pinball_loss(test, ewma, levels) < pinball_loss(test, clim, levels)


@pytest.mark.parametrize(
    ("levels", "said"),
    [
        ([0.25, 0.4, 0.75], "must include 0.5"),
        ([0.5, 0.25, 0.75], "sorted and distinct"),
        ([0.0, 0.5, 1.0], "strictly between 0 and 1"),
        ([0.1, 0.5, 0.8], "in pairs around 0.5"),
        ([0.5], "at least one range"),
    ],
)
def test_quantile_levels_are_checked(levels: list[float], said: str) -> None:
    with pytest.raises(ValueError, match=said):
        check_levels(levels)
    with pytest.raises(ValidationError, match=said if len(levels) >= 3 else "at least 3 items"):
        ModelSpec(quantiles=levels)  # the pair spec refuses the same lists (the CRD says minItems 3)


def test_ewma_sigma_at_a_candle_knows_that_candle_and_nothing_later() -> None:
    closes = np.array([100.0, 101.0, 99.0, 99.0, 120.0])
    sigma = ewma_sigma(closes, lam=0.9)
    r = np.diff(np.log(closes))
    assert np.isnan(sigma[0])
    assert sigma[1] == pytest.approx(abs(r[0]))  # the first variance is the first square
    assert sigma[2] ** 2 == pytest.approx(0.9 * r[0] ** 2 + 0.1 * r[1] ** 2)
    later = closes.copy()
    later[4] = 50.0
    assert np.array_equal(ewma_sigma(later, lam=0.9)[:4], sigma[:4], equal_nan=True)


def test_conformal_margins_make_a_too_narrow_model_cover_new_points() -> None:
    rng = np.random.default_rng(7)
    levels = [0.05, 0.25, 0.5, 0.75, 0.95]
    narrow = np.array([-0.5, -0.2, 0.0, 0.2, 0.5])  # a model whose ranges are far too narrow for N(0, 1)
    calibration, fresh = rng.normal(size=(4_000, 2)), rng.normal(size=(20_000, 2))
    q = np.broadcast_to(narrow, (4_000, 2, 5))
    margins = conformal_margins(calibration, q, levels)
    assert margins.shape == (2, 5) and np.all(margins[:, 2] == 0)
    assert np.all(margins[:, [0, 4]] > 1.0)  # the 90% range's ends move out by about 1.64 - 0.5
    moved = np.broadcast_to(narrow + margins * np.array([-1, -1, 0, 1, 1]), (20_000, 2, 5))
    scored = range_score(fresh, moved, levels)
    assert [r.nominal for r in scored.ranges] == [0.9, 0.5]
    assert [r.rate for r in scored.ranges] == pytest.approx([0.9, 0.5], abs=0.015)
    before = range_score(fresh, np.broadcast_to(narrow, (20_000, 2, 5)), levels)
    assert before.ranges[0].rate < 0.5 and before.ranges[0].interval_score > scored.ranges[0].interval_score
    assert scored.pinball < before.pinball


def clustered_candles(n: int, seed: int, steps: int = 60) -> np.ndarray:
    """Candles [n, 5] of a price path whose volatility clusters (its log follows an AR(1) with persistence 0.98),
    each candle the open, high, low and close of `steps` moves within it: what range estimators read."""
    rng = np.random.default_rng(seed)
    log_sigma = np.empty(n)
    log_sigma[0] = 0.0
    for t in range(1, n):
        log_sigma[t] = 0.98 * log_sigma[t - 1] + 0.2 * rng.normal()
    sigma = 0.01 * np.exp(log_sigma)
    moves = rng.normal(size=(n, steps)) * (sigma / np.sqrt(steps))[:, None]
    path = np.cumsum(moves, axis=1) + np.concatenate([[0.0], np.cumsum(moves.sum(axis=1))[:-1]])[:, None]
    start = np.concatenate([[0.0], path[:-1, -1]])
    high = np.maximum(path.max(axis=1), start)
    low = np.minimum(path.min(axis=1), start)
    return np.column_stack([np.exp(start), np.exp(high), np.exp(low), np.exp(path[:, -1]), np.ones(n)]) * 100.0


def test_range_variance_by_hand_never_negative_and_counting_a_jump() -> None:
    candles = np.array([[100.0, 110.0, 95.0, 105.0, 1.0], [107.0, 108.0, 104.0, 104.0, 1.0]])
    found = range_variance(candles)
    first = 0.5 * np.log(110 / 95) ** 2 - GARMAN_KLASS * np.log(105 / 100) ** 2
    second = 0.5 * np.log(108 / 104) ** 2 - GARMAN_KLASS * np.log(104 / 107) ** 2 + np.log(107 / 105) ** 2
    assert found == pytest.approx([first, second])
    assert (range_variance(clustered_candles(2_000, seed=5)) >= 0).all()
    with pytest.raises(ValueError, match="positive candles"):
        range_variance([[100.0, 110.0, 0.0, 105.0, 1.0]])


def test_ewma_through_knows_each_value_and_nothing_later() -> None:
    values = np.array([4.0, 1.0, 9.0, 16.0])
    found = ewma_through(values, lam=0.5)
    assert found == pytest.approx([4.0, 2.5, 5.75, 10.875])
    changed = ewma_through(np.array([4.0, 1.0, 9.0, 100.0]), lam=0.5)
    assert changed[:3] == pytest.approx(found[:3]) and changed[3] != found[3]


def test_har_spans_are_a_candle_a_day_a_week_and_four_weeks() -> None:
    assert har_spans(3_600_000) == (1, 24, 168, 672)
    assert har_spans(86_400_000) == (1, 7, 28)
    assert har_spans(60_000) == (1, 1_440, 10_080, 40_320)
    with pytest.raises(ValueError, match="positive"):
        har_spans(0)


def test_har_sigma_at_a_candle_knows_that_candle_and_nothing_later() -> None:
    candles = clustered_candles(3_000, seed=6)
    variance = range_variance(candles)
    har = fit_har(variance, np.arange(100, 2_000), (1, 24, 168))
    sigma = har.sigma(variance)
    later = variance.copy()
    later[2_500:] *= 50.0
    assert har.sigma(later)[:2_500] == pytest.approx(sigma[:2_500])
    assert har.sigma(later)[2_500] != pytest.approx(sigma[2_500])
    with pytest.raises(ValueError, match="needs more origins"):
        fit_har(variance, np.arange(3), (1, 24, 168))


def test_range_volatility_beats_close_volatility_when_candles_carry_their_path() -> None:
    """The reason for the range baselines: a candle's high and low say more about its volatility than its close
    (Parkinson 1980, Garman and Klass 1980), so on clustered volatility both range ranges are sharper than EWMA of
    closes (HAR, which also weighs the last candle most, clearly), and all three sharper than climatology; each is
    fitted on the first 6,000 origins only."""
    candles = clustered_candles(9_000, seed=7)
    closes = candles[:, 3]
    origins = np.arange(800, len(candles) - 1)
    train, test = origins[origins < 6_000], origins[origins >= 6_000]
    returns = np.log(closes[1:] / closes[:-1])  # returns[t] ends at candle t + 1
    variance = range_variance(candles)
    har = fit_har(variance, train, (1, 24, 168))
    volatility = {
        "ewma": ewma_sigma(closes),
        "ewma_range": np.sqrt(ewma_through(variance)),
        "har": har.sigma(variance),
    }
    naive = baseline_quantiles(
        returns[train][:, None], LEVELS, {name: (sigma[train], sigma[test]) for name, sigma in volatility.items()}
    )
    scored = range_metrics(returns[test][:, None], naive["ewma"], naive, LEVELS)
    score = {name: getattr(scored, name).ranges[0].interval_score for name in naive}
    assert score["ewma_range"] < score["ewma"] and score["har"] < 0.95 * score["ewma"]
    assert score["ewma"] < score["climatology"]
    assert all(abs(getattr(scored, name).ranges[0].rate - 0.9) < 0.03 for name in naive)


def test_range_metrics_names_its_naive_ranges() -> None:
    y = np.zeros((3, 1))
    q = np.tile(np.array([-1.0, -0.5, 0.0, 0.5, 1.0]), (3, 1, 1))
    with pytest.raises(ValueError, match="climatology and ewma required"):
        range_metrics(y, q, {"ewma": q}, LEVELS)
    with pytest.raises(ValueError, match="naive ranges are"):
        range_metrics(y, q, {"climatology": q, "ewma": q, "garch": q}, LEVELS)
    assert range_metrics(y, q, {"climatology": q, "ewma": q}, LEVELS).har is None


def test_the_ratio_to_each_naive_range_says_whether_it_could_be_luck() -> None:
    """Volatility that clusters: EWMA's ranges beat climatology's beyond luck over many points; over a few hours
    the same ranges could be level; and a range scored against itself is exactly level."""
    rng = np.random.default_rng(11)
    n = 12_000
    returns = rng.normal(size=n) * np.repeat(rng.choice([0.3, 1.0, 3.0], size=n // 200), 200) * 0.01
    sigma = np.sqrt(ewma_variance(returns))
    train, test = slice(0, 8_000), slice(8_000, n)
    ewma = ewma_quantiles(returns[train], sigma[train], sigma[test], LEVELS)[:, None, :]
    clim = climatology_quantiles(returns[train], LEVELS, n - 8_000)[:, None, :]
    actual = returns[test][:, None]
    scored = range_metrics(actual, ewma, {"climatology": clim, "ewma": ewma}, LEVELS, mean_block=24.0)
    found = scored.interval_ratios or {}
    assert found["ewma"].ratio == found["ewma"].low == found["ewma"].high == pytest.approx(1.0)
    assert found["climatology"].high < 1.0  # better beyond luck
    assert found["climatology"].ratio == pytest.approx(
        scored.model.ranges[0].interval_score / scored.climatology.ranges[0].interval_score
    )
    few = slice(0, 150)  # not a week of hours: 11% better, and that could be luck
    level = widest_ratios(actual[few], ewma[few], {"climatology": clim[few]}, LEVELS, 24.0)["climatology"]
    assert level.ratio < 0.95 and level.low < 1.0 < level.high
    assert range_metrics(actual, ewma, {"climatology": clim, "ewma": ewma}, LEVELS).interval_ratios is None
