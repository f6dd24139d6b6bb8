"""The decision rules and their scores, on numbers worked out by hand: a forecast equal to persistence holds nothing
and earns exactly cash's, a model range equal to EWMA's sizes exactly as EWMA does, fees are paid on the fraction
traded, and the bootstrap tells a real difference from none."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest

from makeusrich.scoring import decision as d
from makeusrich.scoring import ranges

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
    z = 1.6448536269514715  # the standard normal's 95% quantile: a model's 5% and 95% prices under EWMA's law
    low, high = last * np.exp(-z * sigma), last * np.exp(z * sigma)
    target = float(np.std(r[:200], ddof=1))
    model = d.risk_target_positions(d.range_sigma(low, high, 0.9), target)
    ewma = d.risk_target_positions(d.range_sigma(*d.range_of(last, sigma, 0.9), 0.9), target)
    assert np.array_equal(model, ewma)
    np.testing.assert_allclose(d.range_sigma(low, high, 0.9)[1:], sigma[1:], rtol=1e-12)
    assert model[0] == 0.0 and model[1:].min() > 0.0 and model.max() <= d.CAP  # no volatility known at the first


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


def test_the_stationary_bootstrap_keeps_blocks_and_wraps_around() -> None:
    index = d.stationary_bootstrap(1000, 24.0, 200, np.random.default_rng(0))
    assert index.shape == (200, 1000) and index.min() >= 0 and index.max() < 1000
    follows = (np.diff(index, axis=1) % 1000) == 1
    assert abs(1.0 / (1.0 - follows.mean()) - 24.0) < 2.0  # blocks of 24 candles on average
    again = d.stationary_bootstrap(1000, 24.0, 200, np.random.default_rng(0))
    assert np.array_equal(index, again)


def test_the_bootstrap_finds_a_real_difference_and_calls_none_luck() -> None:
    _, r = walk(2000, seed=3)
    same = d.compare(r, r, HOURLY, mean_block=24.0, resamples=500)
    assert same.mean == 0.0 and same.sharpe == 0.0 and same.mean_p == 1.0 and same.luck
    better = r + 0.002  # two tenths of a percent a candle more, every candle
    found = d.compare(better, r, HOURLY, mean_block=24.0, resamples=500)
    assert found.mean_p < 0.01 and found.mean_low > 0 and not found.luck
    assert found.mean == pytest.approx(0.002 * HOURLY)
    noise = d.compare(r, walk(2000, seed=4)[1], HOURLY, mean_block=24.0, resamples=500)
    assert noise.mean_low < noise.mean < noise.mean_high and noise.mean_low < 0 < noise.mean_high


def origins(n: int, seed: int, forecast: str) -> tuple[d.Origins, np.ndarray]:
    """Hourly origins of a random walk with forecasts of one kind, the ranges EWMA's; and the training returns."""
    closes, _ = walk(n + 300, seed=seed)
    sigma = ranges.ewma_sigma(closes)
    last, actual, s = closes[300:-1], closes[301:], sigma[300:-1]
    low, high = d.range_of(last, s, 0.9)
    predicted = {"persistence": last, "oracle": actual}[forecast]
    return d.Origins(last, actual, predicted, low, high, 0.9, s), np.diff(np.log(closes[:300]))


def test_all_rules_on_one_set_of_origins_each_beside_holding_and_its_twin() -> None:
    found, train = origins(1500, 5, "persistence")
    got = d.decide(found, float(train.mean()), float(train.std(ddof=1)), timedelta(hours=1), resamples=300)
    assert set(got.scores) == set(d.RULES)
    assert got.scores[d.SIGNAL] == got.scores[d.CASH]  # persistence expects no move: it never trades
    twin = got.against_twin[d.RISK_TARGET]  # the model's range is EWMA's: the same positions, no difference
    assert np.array_equal(got.returns[d.RISK_TARGET].log_returns, got.returns[d.RISK_TARGET_EWMA].log_returns)
    assert (twin.mean, twin.sharpe, twin.mean_p) == (0.0, 0.0, 1.0)
    hold = got.scores[d.HOLD]
    assert hold.invested == 1.0 and hold.fees == pytest.approx(0.001)  # bought once, never sold
    assert got.against_holding[d.SIGNAL].mean == pytest.approx(-hold.total_log_return / hold.candles * HOURLY, rel=1e-9)


def test_a_forecast_that_knows_the_next_close_makes_money_beyond_luck() -> None:
    found, train = origins(1500, 6, "oracle")
    got = d.decide(found, float(train.mean()), float(train.std(ddof=1)), timedelta(hours=1))  # 2,000 in two draws
    signal = got.against_holding[d.SIGNAL]
    assert got.scores[d.SIGNAL].total_log_return > 1.0 and not signal.luck and signal.mean_low > 0
    assert 0.2 < got.scores[d.SIGNAL].invested < 0.6  # in only before the rises that pay the fees
    assert signal.resamples == d.RESAMPLES and d.BOOTSTRAP_CELLS // 1499 < d.RESAMPLES
