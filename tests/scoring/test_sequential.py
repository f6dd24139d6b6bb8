"""The sequential decisions: the closed form equals the recursion it stands for, the error bound holds on a null
that is exactly as good, alarms fire and clear where the formula says, and a restart never raises the statistic."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from makeusrich.scoring import sequential as seq

N = 2160  # 90 days of hourly checks


def recursion(x: np.ndarray, bets: tuple[float, ...]) -> np.ndarray:
    """R_t = (R_{t-1} + 1) * (1 + lambda x_t), averaged over the bets, as the papers write it."""
    paths = []
    for lam in bets:
        r, path = 0.0, []
        for value in x:
            r = (r + 1.0) * (1.0 + lam * value)
            path.append(r)
        paths.append(path)
    return np.mean(np.array(paths), axis=0)


def test_the_closed_form_is_the_recursion() -> None:
    rng = np.random.default_rng(1)
    detector = seq.Detector.for_losses("d", seq.DEGRADED_MARGIN)
    x = rng.uniform(-(1 + seq.DEGRADED_MARGIN) * seq.CAP, seq.CAP, size=400) * 0.3 + 0.05
    np.testing.assert_allclose(np.exp(seq.log_statistic(x, detector.bets)), recursion(x, detector.bets), rtol=1e-9)


def test_evidence_at_the_cap_fires_at_the_hour_the_recursion_crosses() -> None:
    detector = seq.Detector.for_losses("d")
    limit = seq.threshold(N)
    x = np.full(200, seq.CAP)
    expected = int(np.argmax(recursion(x, detector.bets) >= limit))
    alarm = seq.decide(detector, x, limit)
    assert alarm.on and alarm.since == expected
    assert 5 < expected < 100  # bold enough to matter, not on the first look


def null_runs(runs: int, hours: int, seed: int) -> np.ndarray:
    """Two exchangeable forecasters' capped, scaled losses on fat-tailed returns: the served one exactly as good."""
    rng = np.random.default_rng(seed)
    z = rng.standard_t(3, size=(runs, hours)) / math.sqrt(3.0)
    served = np.minimum(np.abs(z - 0.3 * rng.standard_normal((runs, hours))), seq.CAP)
    other = np.minimum(np.abs(z - 0.3 * rng.standard_normal((runs, hours))), seq.CAP)
    return served - other


def test_an_exactly_as_good_model_rarely_raises_an_alarm_within_90_days() -> None:
    detector = seq.Detector.for_losses(seq.ROLLBACK_POINT)
    log_r = seq.log_statistic(null_runs(300, N, seed=7), detector.bets)
    fired = np.any(log_r >= math.log(seq.threshold(N)), axis=1)
    # the bound is 1%: 300 runs at 1% would give more than 9 alarms with probability 0.001
    assert fired.sum() <= 9


def test_a_model_worse_by_a_constant_share_is_found() -> None:
    detector = seq.Detector.for_losses(seq.ROLLBACK_POINT)
    x = null_runs(50, N, seed=8) + 0.15  # the served loss 0.15 volatilities worse at every origin
    log_r = seq.log_statistic(x, detector.bets)
    assert np.all(np.any(log_r >= math.log(seq.threshold(N)), axis=1))


def test_a_restart_never_raises_the_statistic() -> None:
    detector = seq.Detector.for_losses("d")
    x = null_runs(1, 600, seed=9)[0] + 0.2
    whole = seq.log_statistic(x, detector.bets)
    for start in (1, 100, 350):
        assert np.all(seq.log_statistic(x[start:], detector.bets) <= whole[start:] + 1e-9)


def test_a_path_continued_from_its_state_is_the_whole_path() -> None:
    """The tracker folds each round's evidence into the bets' log R and the alarm: in pieces, the same path."""
    detector = seq.Detector.for_losses("d")
    limit = 5000.0
    x = null_runs(1, 900, seed=10)[0] + np.where(np.arange(900) < 150, 0.3, -0.4)  # fires, then clears
    whole = seq.log_wealth(x, detector.bets)
    state, pieces, was_on, since = None, [], False, None
    for a, b in ((0, 1), (1, 37), (37, 120), (120, 121), (121, 900)):
        paths = seq.log_wealth(x[a:b], detector.bets, state)
        alarm = seq.alarm_state("d", seq.average(paths), limit, was_on)
        since = a + alarm.since if alarm.since is not None else (since if alarm.on else None)
        state, was_on = paths[:, -1], alarm.on
        pieces.append(paths)
        if b == 120:
            at_120 = (alarm.on, since)
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), whole, rtol=1e-9)
    at_once = seq.alarm_state("d", seq.average(whole[:, :120]), limit)
    assert at_120 == (at_once.on, at_once.since) and at_once.on
    assert not was_on and since is None and seq.alarm_state("d", seq.average(whole), limit).on is False


def test_the_alarm_stays_on_between_the_threshold_and_its_hundredth_then_clears() -> None:
    limit = 1000.0
    values = [1.0, 2000.0, 500.0, 20.0, 11.0, 9.0, 50.0]
    states = [seq.alarm_state("d", np.log(values[: i + 1]), limit) for i in range(len(values))]
    assert [s.on for s in states] == [False, True, True, True, True, False, False]
    assert states[3].since == 1 and states[3].peak == pytest.approx(2000.0)
    again = seq.alarm_state("d", np.log([*values, 1500.0, 300.0]), limit)
    assert again.on and again.since == 7


def test_a_range_that_misses_twice_as_often_as_promised_is_found_and_a_true_one_is_not() -> None:
    rng = np.random.default_rng(3)
    detector = seq.Detector.for_misses(seq.DEGRADED_COVERAGE, 0.10)
    limit = seq.threshold(N)
    honest = (rng.random(N) < 0.10).astype(float) - 0.10
    narrow = (rng.random(N) < 0.20).astype(float) - 0.10
    assert not seq.decide(detector, honest, limit).on
    found = seq.decide(detector, narrow, limit)
    assert found.on and found.since is not None and found.since < 24 * 30


def test_the_scale_skips_holes_and_waits_for_enough_returns() -> None:
    closes = 100.0 * np.exp(np.cumsum(np.r_[0.0, np.full(40, 0.01)]))
    consecutive = np.ones(41, dtype=bool)
    consecutive[0] = False
    scale = seq.volatility_scale(closes, consecutive)
    assert np.all(np.isnan(scale[: seq.WARM_RETURNS])) and np.isfinite(scale[seq.WARM_RETURNS])
    assert scale[-1] == pytest.approx(0.01)
    closes[30:] *= 1.5  # a jump across a hole is not a return
    consecutive[30] = False
    assert seq.volatility_scale(closes, consecutive)[-1] == pytest.approx(0.01)


def test_losses_are_scaled_and_capped() -> None:
    assert seq.point_loss([101.0], [100.0], [0.01]) == pytest.approx(math.log(1.01) / 0.01)
    assert seq.point_loss([200.0], [100.0], [0.01]) == seq.CAP
    levels = [0.05, 0.5, 0.95]
    inside = seq.range_loss([100.0], [100.0], [[99.0, 100.0, 101.0]], levels, [0.01])
    below = seq.range_loss([98.0], [100.0], [[99.0, 100.0, 101.0]], levels, [0.01])
    assert 0 < inside[0] < below[0] <= seq.CAP
    assert seq.outside([98.0, 100.0], [99.0, 99.0], [101.0, 101.0]).tolist() == [1.0, 0.0]


def test_the_alarm_benchmark_measures_a_null_and_finds_a_gross_error() -> None:
    """bench/alarm_bench.py end to end on a few runs: its JSON, a null that stays quiet, a gross error found."""
    bench = Path(__file__).resolve().parents[2] / "bench" / "alarm_bench.py"
    done = subprocess.run(
        [sys.executable, str(bench), "--runs", "40", "--seed", "2", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    result = json.loads(done.stdout)
    assert result["false_alarm_rate"] <= 0.05
    assert result["old_rule_false_alarm_rate"]["any"] > result["false_alarm_rate"]
    assert result["detection_days"]["rollback_gross_2pct_high"]["detected"] == 1.0
    assert 0.5 < result["params"]["alpha"] + result["params"]["beta"] < 1.0
