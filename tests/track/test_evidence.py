"""The live decisions on rows built here, whose evidence is known: a version 2% high is found by the rollback and
Degraded detectors at the hour the e-detector's recursion says, a calibrated one is not, and the volatility scale
may come from before the version's run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from makeusrich.market import Source, clean_candles, read_sample
from makeusrich.scoring import sequential as seq
from makeusrich.store import TrackSummary, pair_store
from makeusrich.store.track_schema import BASELINE, LIVE, REPLACED, SHADOW, empty_rows
from makeusrich.track.evidence import evidence
from makeusrich.track.rollback import rollback_due
from makeusrich.track.rows import append_rows, closes_by_moment, forecast_rows, score_rows
from makeusrich.track.shadow import Comparator, Shadows, comparator, shadow_rows
from makeusrich.track.summary import summarize
from makeusrich.trainer.export import export_onnx
from makeusrich.trainer.pipeline import run_training
from makeusrich.trainer.recalibrate import with_margins
from makeusrich.trainer.warm import read_forecaster
from tests.fixtures.models import small_pair

HOUR = pd.Timedelta(hours=1)
T0 = pd.Timestamp("2026-03-01T00:00Z")
LEVELS = (0.05, 0.25, 0.5, 0.75, 0.95)
Z = np.array([-1.645, -0.674, 0.0, 0.674, 1.645])  # standard normal quantiles at LEVELS
NOW = datetime(2026, 6, 1, tzinfo=UTC)
SIGMA = 0.01


def closes(hours: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100.0 * np.exp(np.cumsum(np.r_[0.0, SIGMA * rng.standard_normal(hours)]))


def record(prices: np.ndarray, runs: list[tuple[str, int, float]], shadows: bool = True) -> pd.DataFrame:
    """Rows at origins 0 .. len(prices) - 2: each (version, first origin, factor) forecasts close * factor with
    exact normal ranges, from its first origin on; beside it the replaced version (persistence) and the baseline
    (persistence) as shadows."""
    rows = empty_rows()
    for k in range(len(prices) - 1):
        version, _, factor = next(run for run in reversed(runs) if run[1] <= k)
        origin = T0 + k * HOUR
        q = prices[k] * np.exp(SIGMA * Z)[None, :]
        frames = [forecast_rows(origin, HOUR, version, prices[k], [prices[k] * factor], q, LEVELS, NOW)]
        if shadows:
            for role, name in ((REPLACED, "v1"), (BASELINE, "v0")):
                frames.append(
                    forecast_rows(origin, HOUR, name, prices[k], [prices[k]], q, LEVELS, NOW, kind=SHADOW, reason=role)
                )
        rows = append_rows(rows, pd.concat(frames, ignore_index=True))
    scored, _ = score_rows(
        rows, pd.Series(prices[1:], index=[T0 + (k + 1) * HOUR for k in range(len(prices) - 1)]), NOW
    )
    return scored


def by_name(decisions: list) -> dict:
    return {d.decision: d for d in decisions}


def test_a_version_two_percent_high_is_rolled_back_at_the_hour_the_recursion_crosses() -> None:
    prices = closes(200)
    rows = record(prices, [("v1", 0, 1.0), ("v2", 60, 1.02)])
    decisions, shadows = evidence(rows, "v2", (T0 + 60 * HOUR).value, HOUR)
    found = by_name(decisions)
    rollback = found[seq.ROLLBACK_POINT]
    assert rollback.on and rollback.against == "v1" and rollback.forecasts == 140
    # the same evidence by hand: capped scaled losses, the recursion over the bets
    origins = np.arange(60, 200)
    scale = seq.volatility_scale(prices[:-1], np.r_[False, np.ones(199, dtype=bool)])[origins]
    x = seq.point_loss(prices[origins + 1], prices[origins] * 1.02, scale) - seq.point_loss(
        prices[origins + 1], prices[origins], scale
    )
    limit = seq.threshold(24 * 90)
    bets = seq.Detector.for_losses("x").bets
    r = np.zeros(len(bets))
    crossed = None
    for i, value in enumerate(x):
        r = (r + 1.0) * (1.0 + np.array(bets) * value)
        if crossed is None and r.mean() >= limit:
            crossed = i
    assert crossed is not None and rollback.since == (T0 + int(origins[crossed]) * HOUR).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert found[seq.DEGRADED_POINT].on and found[seq.DEGRADED_POINT].against == "persistence"
    assert not found[seq.DEGRADED_COVERAGE].on and not found[seq.ROLLBACK_RANGE].on
    replaced = next(s for s in shadows if s.role == REPLACED)
    assert replaced.version == "v1" and replaced.scored == 140 and replaced.mae_ratio is not None
    assert replaced.mae_ratio > 1.5 and replaced.pinball_ratio == 1.0


def test_a_calibrated_version_as_good_as_its_comparators_raises_nothing() -> None:
    prices = closes(400, seed=2)
    decisions, _ = evidence(record(prices, [("v1", 0, 1.0), ("v2", 100, 1.0)]), "v2", (T0 + 100 * HOUR).value, HOUR)
    found = by_name(decisions)
    assert set(found) == set(seq.DECISIONS)
    assert not any(d.on for d in decisions)
    assert found[seq.DEGRADED_COVERAGE].against == "the 90% range's promise"
    assert found[seq.DEGRADED_COVERAGE].other == 0.1


def test_the_scale_comes_from_before_the_run_and_no_shadow_means_no_rollback_decision() -> None:
    prices = closes(100, seed=3)
    rows = record(prices, [("v1", 0, 1.0), ("v2", 90, 1.0)], shadows=False)
    decisions, shadows = evidence(rows, "v2", (T0 + 90 * HOUR).value, HOUR)
    found = by_name(decisions)
    assert found[seq.DEGRADED_POINT].forecasts == 10  # warm from v1's closes: every scored origin counts
    assert seq.ROLLBACK_POINT not in found and seq.DEGRADED_RANGE not in found and shadows == []
    young = record(prices[:20], [("v2", 0, 1.0)], shadows=False)
    assert by_name(evidence(young, "v2", T0.value, HOUR)[0])[seq.DEGRADED_POINT].forecasts == 0


def as_of(rows: pd.DataFrame, hour: int) -> pd.DataFrame:
    """The rows a tracker held after the close of hour `hour`: origins up to it, scored where their target closed."""
    held = rows[rows["origin"] <= T0 + hour * HOUR].copy()
    held.loc[held["target"] > T0 + hour * HOUR, ["actual", "error", "persistence_error", "direction_hit"]] = np.nan
    return held


def test_decisions_folded_in_round_by_round_through_track_json_are_those_of_every_row_at_once() -> None:
    prices = closes(200)
    rows = record(prices, [("v1", 0, 1.0), ("v2", 60, 1.02)])
    summary = None
    for hour in (59, 60, 61, 62, 70, 71, 95, 130, 131, 200):  # rounds, some of which score nothing new
        summary = summarize(as_of(rows, hour), "btc-usdt", "default", "1h", NOW, summary)
        summary = TrackSummary.model_validate_json(summary.model_dump_json(by_alias=True))  # as stored
    assert summary is not None and summary.run_evidence is not None
    decisions, shadows = evidence(rows, "v2", (T0 + 60 * HOUR).value, HOUR)
    folded = by_name(summary.decisions)
    assert set(folded) == set(seq.DECISIONS) and folded[seq.ROLLBACK_POINT].on
    for d in decisions:
        f = folded[d.decision]
        assert (f.on, f.since, f.forecasts, f.against) == (d.on, d.since, d.forecasts, d.against)
        assert f.statistic == pytest.approx(d.statistic, rel=1e-9) and f.served == pytest.approx(d.served)
    assert [(s.role, s.version, s.scored) for s in summary.shadows] == [(s.role, s.version, s.scored) for s in shadows]
    assert [s.mae_ratio for s in summary.shadows] == pytest.approx([s.mae_ratio for s in shadows])


def test_a_new_run_starts_its_evidence_anew_and_a_late_shadow_is_not_counted() -> None:
    prices = closes(200)
    rows = record(prices, [("v1", 0, 1.0), ("v2", 60, 1.02)])
    earlier = summarize(as_of(rows, 150), "btc-usdt", "default", "1h", NOW)
    assert earlier.run_evidence is not None
    other_run = earlier.run_evidence.model_copy(update={"live_since": "2026-03-01T00:00:00Z"})
    restarted = summarize(
        rows, "btc-usdt", "default", "1h", NOW, earlier.model_copy(update={"run_evidence": other_run})
    )
    assert restarted.run_evidence is not None and restarted.run_evidence.live_since == "2026-03-03T12:00:00Z"
    assert by_name(restarted.decisions)[seq.DEGRADED_POINT].forecasts == 140  # not the other run's 90 besides
    # origins 100-119 scored before their replaced shadow was recorded: the rollback decisions never count them
    late = rows[~((rows["kind"] == SHADOW) & rows["origin"].between(T0 + 100 * HOUR, T0 + 119 * HOUR))]
    first = summarize(as_of(late, 120), "btc-usdt", "default", "1h", NOW)
    final = summarize(rows, "btc-usdt", "default", "1h", NOW, first)
    assert by_name(final.decisions)[seq.ROLLBACK_POINT].forecasts == 120 and final.run_evidence is not None
    assert by_name(final.decisions)[seq.DEGRADED_POINT].forecasts == 140


def test_a_rollback_is_due_only_with_a_fired_decision_a_replaced_version_and_no_pin() -> None:
    prices = closes(200)
    rows = record(prices, [("v1", 0, 1.0), ("v2", 60, 1.02)])
    summary = summarize(rows, "btc-usdt", "default", "1h", NOW)
    replaced = Comparator(REPLACED, "v1", "0" * 64, 24, 1, LEVELS)
    baseline = Comparator(BASELINE, "v0", "1" * 64, 24, 1, LEVELS)
    due = rollback_due(summary, Shadows("v2", (replaced, baseline)), pinned=False)
    assert due is not None and (due.served, due.to, due.decision.decision) == ("v2", "v1", seq.ROLLBACK_POINT)
    assert due.reason.startswith("worse than v1 on the same live hours: its point forecast against the version")
    assert due.evidence()["liveSince"] == summary.live_since and due.evidence()["on"] is True
    assert rollback_due(summary, Shadows("v2", (replaced, baseline)), pinned=True) is None  # the pin wins
    assert rollback_due(summary, Shadows("v2", (baseline,)), pinned=False) is None  # nothing it replaced
    assert rollback_due(summary, Shadows("v3", (replaced,)), pinned=False) is None  # another version serves now
    calm = summarize(record(prices, [("v1", 0, 1.0), ("v2", 60, 1.0)]), "btc-usdt", "default", "1h", NOW)
    assert rollback_due(calm, Shadows("v2", (replaced, baseline)), pinned=False) is None


def replayed(tmp_path: Path, days_back: int, narrower: float = 0.0) -> tuple[pd.DataFrame, TrackSummary]:
    """The bundled pair's model trained as if `days_back` days before the sample ends, replayed over the next 30 days
    from its ONNX file (as the tracker's shadows and the replay run it), with the baseline beside it as a shadow:
    its rows and their summary at the end of the 30 days. With `narrower`, the served graph's widest range is moved
    inward by that many of its standardised units first (a version whose ranges are too narrow)."""
    end = datetime(2022, 6, 15, 1, 0, tzinfo=UTC) - timedelta(days=days_back - 30)
    start = end - timedelta(days=30)
    pair = small_pair(model={"maxEpochs": 6})
    url = f"file://{tmp_path}/store-{days_back}-{narrower:g}"
    outcome = run_training(pair, Source("sample"), url, now=start, progress=None)
    assert outcome.first is not None  # the baseline, published first
    store = pair_store(url, pair.namespace, pair.name)
    candles, _ = clean_candles(read_sample("BTCUSDT", "1h"), "1h")
    closes = closes_by_moment(candles, HOUR)
    origins = [t for t in closes.index if start <= t < end - HOUR]
    frames = []
    served = store.read_model(outcome.version)
    if narrower:
        graph = read_forecaster(store.read_file(outcome.version, store.weights_path()), pair.spec)
        margins = graph.margins.numpy().copy()
        margins[:, [0, -1]] -= narrower
        served = export_onnx(with_margins(graph, margins), pair.spec.model.window)
    for role, version in (("served", outcome.version), (BASELINE, outcome.first.version)):
        model = served if role == "served" else store.read_model(version)
        made = shadow_rows(model, comparator(store, role, version), candles, origins, HOUR, start)
        frames += [f.assign(kind=LIVE, reason="") for f in made] if role == "served" else made
    rows, _ = score_rows(
        pd.concat(frames, ignore_index=True).sort_values(["origin", "step"], kind="stable"), closes, end
    )
    rows = rows.reset_index(drop=True)
    return rows, summarize(rows, pair.name, pair.namespace, "1h", end)


def worst_day(rows: pd.DataFrame) -> int:
    """The most closes the served 90% range missed in any 24 hours."""
    served = rows[rows["kind"] == LIVE]
    missed = ((served["actual"] < served["q0.05"]) | (served["actual"] > served["q0.95"])).to_numpy(dtype=int)
    return int(np.convolve(missed, np.ones(24, dtype=int), mode="valid").max())


def test_no_false_degraded_in_a_calm_month_and_a_true_one_when_the_ranges_are_too_narrow(tmp_path: Path) -> None:
    """No false Degraded over 30 days the model never saw: the newest month before the crashes of May and June 2022
    (trained 90 days before the sample ends, replayed over the next 30). In the sample's last month, the June crash,
    the model's ranges widen with the in-window volatility and hold (no alarm); the same version with its 90% range
    moved inward, so that it misses far more than the tenth it promises, raises the coverage decision, as it
    should. (Before the ranges were sized by the in-window HAR, the model itself missed about half the closes of
    the crash's worst day and this decision fired on it.)"""
    rows, summary = replayed(tmp_path, 90)
    found = by_name(summary.decisions)
    assert {seq.DEGRADED_POINT, seq.DEGRADED_RANGE, seq.DEGRADED_COVERAGE} <= set(found)
    assert found[seq.DEGRADED_POINT].forecasts > 24 * 28
    assert not any(d.on for d in summary.decisions), [(d.decision, d.statistic) for d in summary.decisions]
    assert worst_day(rows) <= 8
    crash_rows, crash = replayed(tmp_path, 30)
    held = by_name(crash.decisions)[seq.DEGRADED_COVERAGE]
    assert not held.on and held.served is not None and held.served < 0.12
    narrow_rows, narrow = replayed(tmp_path, 30, narrower=1.0)
    coverage = by_name(narrow.decisions)[seq.DEGRADED_COVERAGE]
    assert coverage.served is not None and coverage.served > 0.15  # a 90% range missing more than 15% of closes
    assert coverage.on and coverage.since is not None and coverage.since >= "2022-05-16"  # within the replayed month
    assert worst_day(narrow_rows) > worst_day(crash_rows)
