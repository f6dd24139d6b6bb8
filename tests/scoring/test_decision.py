"""The decision rules and their scores, on numbers worked out by hand: a forecast equal to persistence holds nothing
and earns exactly cash's, a model range equal to EWMA's sizes exactly as EWMA does, fees are paid on the fraction
traded, and the bootstrap tells a real difference from none."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest

from makeusrich.scoring import bootstrap, ranges
from makeusrich.scoring import decision as d

HOURLY = d.per_year(timedelta(hours=1))


def walk(n: int, seed: int = 1, sigma: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Closes and the log return of each following candle."""
    rng = np.random.default_rng(seed)
    closes = 100.0 * np.exp(np.cumsum(np.r_[0.0, sigma * rng.standard_t(4, n)]))
    return closes[:-1], np.diff(np.log(closes))


def test_a_forecast_equal_to_persistence_holds_nothing_and_earns_exactly_cash() -> None:
    last, r = walk(500)
    positions = d.signal_positions(last, last, threshold=0.0)
    assert not positions.any()
    held = d.net_returns(positions, r, fee_bps=0.0)
    cash = d.net_returns(np.zeros_like(r), r, fee_bps=0.0)
    assert np.array_equal(held.log_returns, cash.log_returns) and not held.log_returns.any()
    score = d.rule_score(held, HOURLY)
    assert (score.total_log_return, score.sharpe, score.max_drawdown, score.invested) == (0.0, 0.0, 0.0, 0.0)


def test_a_model_range_equal_to_ewmas_sizes_exactly_as_ewma_does() -> None:
    last, r = walk(800, seed=2)
    sigma = ranges.ewma_sigma(np.r_[last, last[-1] * math.exp(r[-1])])[:-1]
    fitted = d.Fitted.of(r[1:200], sigma[1:200], 0.9)
    low_z, high_z = np.quantile(r[1:200] / sigma[1:200], [0.05, 0.95])  # the training returns in units of sigma
    assert fitted.ewma_bounds == (pytest.approx(low_z), pytest.approx(high_z))
    low, high = last * np.exp(low_z * sigma), last * np.exp(high_z * sigma)  # a model's range drawn as EWMA's
    model = d.risk_target_positions(d.range_sigma(low, high, 0.9), fitted.sigma_target)
    ewma = d.risk_target_positions(
        d.range_sigma(*d.ewma_range(last, sigma, fitted.ewma_bounds), 0.9), fitted.sigma_target
    )
    assert np.array_equal(model, ewma)
    z = 1.6448536269514715  # the standard normal's 95% quantile: the range's log width is 2 z sigma_t
    np.testing.assert_allclose(d.range_sigma(low, high, 0.9)[1:], (high_z - low_z) / (2 * z) * sigma[1:], rtol=1e-9)
    assert model[0] == 0.0 and model[1:].min() > 0.0 and model.max() <= d.CAP  # no volatility known at the first
    assert 0.2 < model[1:].mean() < 1.0  # below the cap in wild hours, at it in calm ones


def test_the_risk_target_shares_the_ranges_scale() -> None:
    """Under a normal law the central-range volatility is the standard deviation; under fat tails it is smaller, as
    a calibrated range's implied volatility is, so that an ordinary hour's forecast holds the pair about fully."""
    rng = np.random.default_rng(7)
    normal, fat = rng.normal(0.0, 0.01, 200_000), rng.standard_t(3, 200_000) * 0.01
    assert d.central_sigma(normal, 0.9) == pytest.approx(0.01, rel=0.01)
    assert d.central_sigma(fat, 0.9) < 0.9 * float(np.std(fat))  # Student t, 3 degrees: 2.35 / 1.64 / 1.73


def test_fees_are_paid_on_the_fraction_traded_and_a_round_trip_must_beat_them() -> None:
    r = np.array([0.01, -0.02, 0.03, 0.0])
    positions = np.array([1.0, 0.5, 0.5, 0.0])
    got = d.net_returns(positions, r, fee_bps=10.0)
    fee = 0.001
    expected = [
        math.log(1 + math.expm1(0.01) - fee),  # into the pair: the whole holding traded
        math.log(1 + 0.5 * math.expm1(-0.02) - 0.5 * fee),  # half sold
        math.log(1 + 0.5 * math.expm1(0.03)),  # held: no fee
        math.log(1 - 0.5 * fee),  # the rest sold
    ]
    np.testing.assert_allclose(got.log_returns, expected, rtol=1e-12)
    score = d.rule_score(got, HOURLY)
    assert score.turnover == 2.0 and score.fees == pytest.approx(2 * fee) and score.invested == 0.75
    assert d.round_trip(10.0) == pytest.approx(-2 * math.log(1 - fee))
    # a forecast of exactly the fee's round trip does not trade; one above it does
    assert d.signal_positions([100 * math.exp(d.round_trip(10.0)) * 1.0001], [100.0], d.round_trip(10.0))[0] == 1.0
    assert d.signal_positions([100.0 * 1.0015], [100.0], d.round_trip(10.0))[0] == 0.0
    with pytest.raises(ValueError, match="finite"):
        d.net_returns([1.0, np.nan], [0.0, 0.0], 10.0)


def test_the_score_reads_as_a_trader_reads_it() -> None:
    r = np.log([1.1, 0.5, 1.2, 1.5])  # up 10%, halved, up 20%, up 50%
    score = d.rule_score(d.net_returns(np.ones(4), r, 0.0), HOURLY)
    assert score.total_log_return == pytest.approx(math.log(1.1 * 0.5 * 1.2 * 1.5))
    assert score.max_drawdown == pytest.approx(0.5)  # from 1.1 to 0.55
    assert score.candles == 4 and score.invested == 1.0 and score.turnover == 1.0


def test_the_bootstrap_finds_a_real_difference_and_calls_none_luck() -> None:
    _, r = walk(2000, seed=3)
    same = d.compare(r, r, HOURLY, mean_block=24.0, resamples=500)
    assert same.mean == 0.0 and same.sharpe == 0.0 and same.mean_p == 1.0 and same.luck
    better = r + 0.002  # two tenths of a percent a candle more, every candle
    found = d.compare(better, r, HOURLY, mean_block=24.0, resamples=500)
    assert found.mean_p < 0.01 and found.mean_low > 0 and not found.luck
    assert found.mean == pytest.approx(0.002 * HOURLY) and found.total == pytest.approx(0.002 * 2000)
    assert found.total_low == pytest.approx(found.mean_low * 2000 / HOURLY) and found.relative[1] > 0
    noise = d.compare(r, walk(2000, seed=4)[1], HOURLY, mean_block=24.0, resamples=500)
    assert noise.mean_low < noise.mean < noise.mean_high and noise.mean_low < 0 < noise.mean_high


def origins(n: int, seed: int, forecast: str) -> tuple[d.Origins, d.Fitted]:
    """Hourly origins of a random walk with forecasts of one kind, the ranges EWMA's; and the training returns."""
    closes, _ = walk(n + 300, seed=seed)
    sigma = ranges.ewma_sigma(closes)
    last, actual, s = closes[300:-1], closes[301:], sigma[300:-1]
    train = np.diff(np.log(closes[:301]))
    fitted = d.Fitted.of(train[1:], sigma[1:300], 0.9)
    low, high = d.ewma_range(last, s, fitted.ewma_bounds)
    predicted = {"persistence": last, "oracle": actual}[forecast]
    return d.Origins(last, actual, predicted, low, high, 0.9, s), fitted


def test_all_rules_on_one_set_of_origins_each_beside_holding_and_its_twin() -> None:
    found, fitted = origins(1500, 5, "persistence")
    got = d.decide(found, fitted, timedelta(hours=1), resamples=300)
    assert set(got.metrics.rules) == set(d.RULES)
    assert got.metrics.rules[d.SIGNAL] == got.metrics.rules[d.CASH]  # persistence expects no move: it never trades
    twin = got.metrics.against_twin[d.RISK_TARGET]  # the model's range is EWMA's: the same positions, no difference
    assert np.array_equal(got.returns[d.RISK_TARGET].log_returns, got.returns[d.RISK_TARGET_EWMA].log_returns)
    assert (twin.mean, twin.sharpe, twin.mean_p) == (0.0, 0.0, 1.0)
    hold = got.metrics.rules[d.HOLD]
    assert hold.invested == 1.0 and hold.fees == pytest.approx(0.001)  # bought once, never sold
    assert got.metrics.against_holding[d.SIGNAL].mean == pytest.approx(
        -hold.total_log_return / hold.candles * HOURLY, rel=1e-9
    )


def test_a_forecast_that_knows_the_next_close_makes_money_beyond_luck() -> None:
    found, fitted = origins(1500, 6, "oracle")
    got = d.decide(found, fitted, timedelta(hours=1))  # 2,000 in two draws
    signal = got.metrics.against_holding[d.SIGNAL]
    assert got.metrics.rules[d.SIGNAL].total_log_return > 1.0 and not signal.luck and signal.mean_low > 0
    assert 0.2 < got.metrics.rules[d.SIGNAL].invested < 0.6  # in only before the rises that pay the fees
    assert signal.resamples == d.RESAMPLES


def test_the_headline_says_both_rules_beside_holding_with_intervals_and_whether_it_is_luck() -> None:
    found, fitted = origins(1500, 6, "persistence")  # a walk that ends about where it started (+1.7%)
    line = d.headline(d.decide(found, fitted, timedelta(hours=1), resamples=300).metrics, "the test split")
    assert line.startswith("After fees, the test split (1,499 candles): holding +1.7%; against it, signal -1.7% [-61%")
    assert " and risk target " in line and line.count("[") == 2 and line.endswith("; luck can explain both")
    oracle, fitted = origins(1500, 6, "oracle")
    line = d.headline(d.decide(oracle, fitted, timedelta(hours=1), resamples=300).metrics, "x")
    assert line.endswith("; signal ahead of holding beyond luck")
    drifting, fitted = origins(1500, 5, "persistence")  # a walk that ends 4.5 times higher: cash falls behind
    line = d.headline(d.decide(drifting, fitted, timedelta(hours=1), resamples=300).metrics, "x")
    assert "; signal behind holding beyond luck" in line


def test_a_long_series_is_resampled_in_bounded_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = walk(3000, seed=8)[1], walk(3000, seed=9)[1]
    whole = d.compare(a, b, HOURLY, 24.0, resamples=1000)
    monkeypatch.setattr(bootstrap, "BOOTSTRAP_CELLS", 500)  # four resamples of 125 blocks at a time
    chunked = d.compare(a, b, HOURLY, 24.0, resamples=1000)
    assert chunked.resamples == 1000 and chunked.mean == whole.mean and chunked.sharpe == whole.sharpe
    width = whole.mean_high - whole.mean_low
    assert (
        abs(chunked.mean_low - whole.mean_low) < 0.1 * width and abs(chunked.mean_high - whole.mean_high) < 0.1 * width
    )
