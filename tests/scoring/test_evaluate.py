"""Tests of the pure scoring functions: hand-computed values, closed forms and seeded simulations."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from makeusrich.scoring import evaluate as ev


def random_walk(n: int, seed: int, sigma: float = 0.01, start: float = 30_000.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return start * np.exp(np.cumsum(rng.normal(0.0, sigma, n)))


# ------------------------------------------------------------------------------------------- MAE and RMSE


def test_mae_and_rmse_by_hand() -> None:
    actual = [1.0, 2.0, 3.0, 4.0]
    forecast = [2.0, 2.0, 1.0, 4.0]
    assert ev.mae(actual, forecast) == pytest.approx(0.75)
    assert ev.rmse(actual, forecast) == pytest.approx(math.sqrt(5.0 / 4.0))


def test_metrics_reject_nan_and_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="NaN"):
        ev.mae([1.0, 2.0], [1.0, float("nan")])
    with pytest.raises(ValueError, match="shape"):
        ev.rmse([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        ev.score([1.0, 2.0], [1.0, float("inf")], [1.0, 1.0])


# -------------------------------------------------------------------------------------------------- Wilson


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        (50, 100, 0.4038, 0.5962),
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (3, 4, 0.3006, 0.9544),
    ],
)
def test_wilson_interval_against_hand_computed_values(successes: int, n: int, low: float, high: float) -> None:
    got_low, got_high = ev.wilson_interval(successes, n)
    assert round(got_low, 4) == low
    assert round(got_high, 4) == high


def test_wilson_interval_edges() -> None:
    assert ev.wilson_interval(0, 0) == (0.0, 1.0)
    assert ev.wilson_interval(0, 10)[0] == 0.0
    assert ev.wilson_interval(10, 10)[1] == 1.0
    with pytest.raises(ValueError):
        ev.wilson_interval(11, 10)
    with pytest.raises(ValueError):
        ev.wilson_interval(-1, 10)


# ------------------------------------------------------------------------------------ directional accuracy


def test_directional_accuracy_six_points_by_hand() -> None:
    last = [100.0] * 6
    forecast = [101.0, 99.0, 102.0, 98.0, 100.0, 103.0]
    actual = [102.0, 98.0, 99.0, 100.0, 101.0, 104.0]
    # hit, hit, miss, actual flat (excluded), forecast flat (excluded), hit
    result = ev.directional_accuracy(last, forecast, actual)
    assert result is not None
    assert (result.hits, result.n, result.excluded) == (3, 4, 2)
    assert result.accuracy == 0.75
    assert (round(result.wilson_low, 4), round(result.wilson_high, 4)) == (0.3006, 0.9544)


def test_directional_accuracy_of_persistence_is_undefined() -> None:
    closes = random_walk(50, seed=1)
    assert ev.directional_accuracy(closes[:-1], closes[:-1], closes[1:]) is None


def test_pesaran_timmermann_tells_information_from_luck() -> None:
    rng = np.random.default_rng(5)
    actual = rng.normal(size=2_000)
    informed = actual + rng.normal(size=2_000)  # right more often than chance
    pure_luck = rng.normal(size=2_000)
    informed_p, luck_p = ev.pesaran_timmermann(actual, informed), ev.pesaran_timmermann(actual, pure_luck)
    assert informed_p is not None and informed_p < 1e-6
    assert luck_p is not None and luck_p > 0.01
    assert ev.pesaran_timmermann(actual, np.ones(2_000)) is None  # never predicts a fall: nothing to test
    assert ev.pesaran_timmermann([1.0], [1.0]) is None


# ------------------------------------------------------------------------------------- t distribution


@pytest.mark.parametrize("t", [0.0, 0.3, 1.0, 2.5, 10.0, -4.0])
def test_student_t_matches_closed_forms(t: float) -> None:
    # df = 1 is the Cauchy distribution, df = 2 has a closed-form CDF too.
    assert ev.student_t_two_sided_p(t, 1) == pytest.approx(1.0 - 2.0 / math.pi * math.atan(abs(t)), abs=1e-12)
    assert ev.student_t_two_sided_p(t, 2) == pytest.approx(1.0 - abs(t) / math.sqrt(2.0 + t * t), abs=1e-12)


def test_student_t_known_quantile_and_normal_limit() -> None:
    assert ev.student_t_two_sided_p(2.228138851986, 10) == pytest.approx(0.05, abs=1e-9)
    for z in (0.5, 1.959963984540054, 3.0):
        assert ev.student_t_two_sided_p(z, 1e7) == pytest.approx(ev.normal_two_sided_p(z), abs=1e-6)
    assert ev.normal_two_sided_p(1.959963984540054) == pytest.approx(0.05, abs=1e-12)


# ---------------------------------------------------------------------------------------- Diebold-Mariano


def test_dm_identical_errors_give_one() -> None:
    errors = np.random.default_rng(0).normal(size=200)
    assert ev.diebold_mariano(errors, errors) == 1.0
    assert ev.diebold_mariano(errors, -errors, loss="absolute") == 1.0
    assert ev.diebold_mariano(errors, errors, horizon=3, loss="absolute") == 1.0


def test_dm_constant_nonzero_differential_gives_zero() -> None:
    assert ev.diebold_mariano(np.full(20, 2.0), np.full(20, 1.0), loss="absolute") == 0.0


def test_dm_hand_computed_small_sample() -> None:
    # Squared losses d = [1, 4, 9]: mean 14/3, variance 98/27, DM = 2.4495, HLN factor sqrt(2/3) -> t = 2
    # with 2 degrees of freedom, whose two-sided p-value is 1 - 2 / sqrt(6).
    p = ev.diebold_mariano([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    assert p == pytest.approx(1.0 - 2.0 / math.sqrt(6.0), abs=1e-12)


def test_dm_uses_h_minus_one_autocovariances() -> None:
    rng = np.random.default_rng(5)
    a = rng.normal(size=300)
    b = rng.normal(size=300) * 0.9
    d = a**2 - b**2
    n, h = d.size, 3
    c = d - d.mean()
    long_run = (c @ c + 2 * (c[1:] @ c[:-1]) + 2 * (c[2:] @ c[:-2])) / n
    statistic = d.mean() / math.sqrt(long_run / n) * math.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
    expected = ev.student_t_two_sided_p(statistic, n - 1)
    assert ev.diebold_mariano(a, b, horizon=h) == pytest.approx(expected, rel=1e-12)
    assert ev.diebold_mariano(a, b, horizon=h) != pytest.approx(ev.diebold_mariano(a, b, horizon=1))


@pytest.mark.parametrize("loss", ["squared", "absolute"])
def test_dm_detects_clearly_better_forecasts(loss: ev.Loss) -> None:
    rng = np.random.default_rng(42)
    better = rng.normal(0.0, 1.0, 1000)
    worse = rng.normal(0.0, 1.5, 1000)
    p = ev.diebold_mariano(better, worse, loss=loss)
    assert p is not None and p < 0.01
    assert ev.diebold_mariano(worse, better, loss=loss) == pytest.approx(p)


def test_dm_equal_noise_is_not_significant() -> None:
    # One seeded draw (seed 1; any single draw is below 0.05 one time in twenty, seed 7 happens to be one).
    rng = np.random.default_rng(1)
    p = ev.diebold_mariano(rng.normal(size=1000), rng.normal(size=1000))
    assert p is not None and p > 0.1
    # The test's size: under equal accuracy it rejects at 5% about 5% of the time.
    rejections = 0
    for seed in range(300):
        r = np.random.default_rng(1000 + seed)
        q = ev.diebold_mariano(r.normal(size=500), r.normal(size=500), loss="absolute")
        assert q is not None
        rejections += q < 0.05
    assert 0.01 <= rejections / 300 <= 0.10


def test_dm_undefined_for_too_few_points() -> None:
    assert ev.diebold_mariano([1.0], [2.0]) is None
    assert ev.diebold_mariano([1.0, 2.0], [2.0, 1.0], horizon=5) is None
    with pytest.raises(ValueError):
        ev.diebold_mariano([1.0, 2.0], [2.0, 1.0], loss="huber")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------------ AR


def test_fit_ar_recovers_simulated_ar2() -> None:
    rng = np.random.default_rng(3)
    intercept, phi1, phi2 = 2e-4, 0.3, -0.2
    r = np.zeros(20_000)
    noise = rng.normal(0.0, 0.01, r.size)
    for t in range(2, r.size):
        r[t] = intercept + phi1 * r[t - 1] + phi2 * r[t - 2] + noise[t]
    coefs = ev.fit_ar(r[100:], 2)
    assert coefs.shape == (3,)
    assert coefs[1] == pytest.approx(phi1, abs=0.03)
    assert coefs[2] == pytest.approx(phi2, abs=0.03)
    assert coefs[0] == pytest.approx(intercept, abs=2e-4)


def test_predict_ar_orders_lags_most_recent_last() -> None:
    coefs = [0.1, 0.5, 0.25]  # intercept, lag 1, lag 2
    recent = [[9.0, 1.0, 2.0], [0.0, 0.0, 0.0]]  # oldest first: only the last two columns count
    assert ev.predict_ar(coefs, recent) == pytest.approx([0.1 + 0.5 * 2.0 + 0.25 * 1.0, 0.1])
    assert ev.predict_ar(coefs, [1.0, 2.0]) == pytest.approx([1.35])
    with pytest.raises(ValueError):
        ev.predict_ar(coefs, [[1.0]])
    with pytest.raises(ValueError):
        ev.fit_ar(np.zeros(4), 2)


def test_fit_ar_zero_order_is_the_mean() -> None:
    r = np.array([0.01, -0.02, 0.04, 0.01])
    assert ev.fit_ar(r, 0) == pytest.approx([r.mean()])


# ---------------------------------------------------------------------------------------------- the rules


def test_trivial_rules_by_hand() -> None:
    history = np.array([[100.0, 110.0, 121.0], [50.0, 50.0, 40.0], [10.0, 10.0, 10.0]])
    assert ev.persistence_forecast(history, 2) == pytest.approx(np.array([[121.0, 121.0], [40.0, 40.0], [10.0] * 2]))
    assert ev.against_last_move_forecast(history)[:, 0] == pytest.approx([110.0, 50.0, 10.0])
    up = ev.always_up_forecast(history, 0.01, 2)
    assert up == pytest.approx(history[:, -1:] * np.exp([[0.01, 0.02]]))
    assert np.all(ev.always_up_forecast(history, -0.05) > history[:, -1:])
    # AR(1) with phi 0.5 on log returns: next return = 0.5 * log(121/110), then 0.5 * that.
    r1 = 0.5 * math.log(121.0 / 110.0)
    ar = ev.ar_forecast(history, [0.0, 0.5], horizon=2)
    assert ar[0] == pytest.approx([121.0 * math.exp(r1), 121.0 * math.exp(r1 + 0.5 * r1)])
    assert ar[2] == pytest.approx([10.0, 10.0])


def test_past_closes_builds_history_rows() -> None:
    closes = np.arange(1.0, 11.0)
    rows = ev.past_closes(closes, [2, 9], 3)
    assert rows == pytest.approx(np.array([[1.0, 2.0, 3.0], [8.0, 9.0, 10.0]]))
    with pytest.raises(ValueError):
        ev.past_closes(closes, [1], 3)


# ------------------------------------------------------------------------------------------------- scoring


def test_persistence_scores_exactly_one_against_itself() -> None:
    closes = random_walk(2_000, seed=11)
    last, actual = closes[:-1], closes[1:]
    result = ev.score(actual, last, last)
    assert result.rel_mae == 1.0
    assert result.rel_rmse == 1.0
    assert result.dm_pvalue == 1.0
    assert result.directional is None


def test_perfect_forecast_scores_zero_error_and_full_direction() -> None:
    closes = random_walk(500, seed=12)
    last, actual = closes[:-1], closes[1:]
    result = ev.score(actual, actual, last)
    assert result.mae == 0.0
    assert result.rmse == 0.0
    assert result.rel_mae == 0.0
    assert result.directional.accuracy == 1.0
    assert result.directional.n == 499
    assert result.dm_pvalue < 1e-10


def test_multi_step_scores_every_step_against_last_close() -> None:
    closes = random_walk(300, seed=13)
    h, window = 3, 5
    origins = np.arange(window - 1, closes.size - h)
    history = ev.past_closes(closes, origins, window)
    actual = np.stack([closes[origins + k] for k in range(1, h + 1)], axis=1)
    last = history[:, -1]
    result = ev.evaluate_split(actual, actual * 1.001, last, history, 0.0, ev.fit_ar(np.diff(np.log(closes)), 2))
    assert result.horizon == h
    persistence = result.rules.persistence
    assert persistence.rel_mae == 1.0
    expected = [float(np.mean(np.abs(last - actual[:, k]))) for k in range(h)]
    assert persistence.mae_by_step == pytest.approx(expected)
    assert persistence.mae == pytest.approx(np.mean(expected))
    assert len(result.model.mae_by_step) == h


def test_json_ready_turns_nan_and_numpy_types_into_plain_values() -> None:
    value = ev._json_ready({"a": np.float64("nan"), "b": [np.int64(3), float("inf")], "c": np.bool_(True)})
    assert value == {"a": None, "b": [3, None], "c": True}
    assert json.dumps(value, allow_nan=False)


def test_evaluate_split_is_json_ready_without_nan() -> None:
    closes = random_walk(1_200, seed=21)
    # A flat stretch: persistence is perfect there, so ratios against it would be 0/0.
    flat = np.full(40, 25_000.0)
    window, p = 6, 3
    train = closes[:800]
    coefs = ev.fit_ar(np.diff(np.log(train)), p)
    mu = float(np.mean(np.diff(np.log(train))))
    for series in (closes[800:], flat):
        origins = np.arange(window - 1, series.size - 1)
        history = ev.past_closes(series, origins, window)
        actual = series[origins + 1]
        result = ev.evaluate_split(actual, history[:, -1] * 1.0001, history[:, -1], history, mu, coefs)
        text = json.dumps(result.to_json(), allow_nan=False)  # undefined numbers are null, not NaN
        assert type(result).model_validate_json(text) == result
        assert set(result.rules.model_dump(by_alias=False)) == set(ev.RULES)
    assert result.rules.persistence.rel_mae is None
    assert result.model.directional is None


def test_evaluate_split_rules_behave_as_documented() -> None:
    closes = random_walk(3_000, seed=31)
    window, p = 4, 2
    returns = np.diff(np.log(closes))
    coefs = ev.fit_ar(returns[:2_000], p)
    origins = np.arange(2_000, closes.size - 1)
    history = ev.past_closes(closes, origins, window)
    actual = closes[origins + 1]
    result = ev.evaluate_split(actual, history[:, -1], history[:, -1], history, -0.001, coefs)
    rules = result.rules
    assert result.model == rules.persistence
    # On a random walk, a full reversal doubles the error variance: MAE about sqrt(2) times persistence's.
    assert rules.against_last_move.rel_mae == pytest.approx(math.sqrt(2.0), abs=0.1)
    assert rules.against_last_move.dm_pvalue < 1e-6
    # always_up predicts a rise everywhere: its accuracy is the share of rises.
    rises = float(np.mean(actual > history[:, -1]))
    assert rules.always_up.directional.accuracy == pytest.approx(rises)
    assert rules.always_up.rel_mae == pytest.approx(1.0, abs=1e-6)
    # A fitted AR on a random walk is no better than persistence, and not significantly different.
    assert rules.ar.rel_mae == pytest.approx(1.0, abs=0.01)
    assert rules.ar.dm_pvalue > 0.01
    no_ar = ev.evaluate_split(actual, history[:, -1], history[:, -1], history, 0.0, None)
    assert no_ar.rules.ar is None


def test_evaluate_split_checks_history_matches_last_close() -> None:
    history = np.array([[1.0, 2.0], [2.0, 3.0]])
    with pytest.raises(ValueError, match="last column"):
        ev.evaluate_split([2.5, 3.5], [2.0, 3.0], [2.0, 4.0], history, 0.0, None)


def test_reproduces_the_measured_baselines_on_real_btc_data() -> None:
    """The table in shared/data/README.md: 2017-2022 hourly BTCUSDT, split 80/10/10, test = the last 10%."""
    import pandas as pd

    from makeusrich.market import __file__ as market_init

    path = Path(market_init).parent / "data" / "BTCUSDT-1h-20170817-20220615.csv.gz"
    closes = pd.read_csv(path, usecols=["close"])["close"].to_numpy(dtype=np.float64)
    n = closes.size
    train_end, val_end = int(n * 0.8), int(n * 0.9)
    returns = np.diff(np.log(closes))
    train_returns = returns[1 : train_end - 1]  # the first row is broken; the last return reaches validation
    coefs = ev.fit_ar(train_returns, 24)
    origins = np.arange(val_end - 1, n - 1)
    history = ev.past_closes(closes, origins, 25)
    actual = closes[origins + 1]
    result = ev.evaluate_split(actual, history[:, -1], history[:, -1], history, float(train_returns.mean()), coefs)
    rules = result.rules
    assert rules.persistence.mae == pytest.approx(179.26, abs=0.5)
    assert rules.persistence.rmse == pytest.approx(266.83, abs=0.5)
    assert rules.ar.mae == pytest.approx(179.12, abs=0.5)
    assert rules.ar.rel_mae == pytest.approx(0.999, abs=0.002)
    assert rules.ar.directional.accuracy == pytest.approx(0.526, abs=0.003)
    assert rules.ar.dm_pvalue > 0.05  # 0.999 of persistence is noise, not skill
    against = rules.against_last_move.directional
    assert against.accuracy == pytest.approx(0.537, abs=0.003)
    assert against.wilson_low == pytest.approx(0.522, abs=0.003)
    assert against.wilson_high == pytest.approx(0.552, abs=0.003)
