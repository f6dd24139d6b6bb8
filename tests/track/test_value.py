"""The live answer to "would following it have made money after fees", on rows built here: the test split's rules,
with what the version fitted on its training split, give the same numbers on live hours as worked out by hand; a
new run answers at once, an old answer is refreshed a day later, and too few hours give none."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from makeusrich.scoring import decision
from makeusrich.scoring import sequential as seq
from makeusrich.store import DecisionMetrics, TrackSummary
from makeusrich.track.metrics import TrackCollector
from makeusrich.track.summary import summarize
from makeusrich.track.tracker import PairTrack, RoundLoop
from makeusrich.track.value import refresh_due
from tests.track.test_evidence import HOUR, NOW, SIGMA, T0, as_of, closes, record

Z95 = 1.645  # the rows' 5% and 95% quantiles lie this many sigmas from the last close


def basis(sigma_target: float) -> decision.Basis:
    """What a version's rules fitted on its training split (no drift, the given risk target, EWMA's range a normal
    one), read back from its test split's document as the tracker reads metadata.json."""
    rng = np.random.default_rng(0)
    last = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 100)))
    found = decision.Origins(last[:-1], last[1:], last[:-1], last[:-1], last[:-1] * 1.1, 0.9, np.full(99, 0.01))
    fitted = decision.Fitted(0.0, sigma_target, (-Z95, Z95))
    stored = decision.decide(found, fitted, timedelta(hours=1), resamples=200).metrics
    read = decision.refit(DecisionMetrics.model_validate_json(stored.model_dump_json(by_alias=True)))
    assert read is not None and read.fitted == fitted and read.level == 0.9
    return read


def test_the_live_answer_is_the_test_splits_rules_on_the_versions_run() -> None:
    prices = closes(200)
    rows = record(prices, [("v1", 0, 1.0), ("v2", 60, 1.003)], shadows=False)  # v2 expects +0.3% every hour
    summary = summarize(rows, "btc-usdt", "default", "1h", NOW, None, ("v2", basis(sigma_target=0.005)))
    value = summary.decision
    assert value is not None and (value.version, value.since) == ("v2", summary.live_since)
    got = value.metrics.rules
    # by hand: origins 60..199 (the closes run to 200), each held over the next candle; the volatility known at
    # each is EWMA's of the closes before it (warm from v1's hours), so all count
    origins = np.arange(60, 200)
    r = np.log(prices[origins + 1] / prices[origins])
    fee = 0.001
    assert got["buy-and-hold"].candles == origins.size and value.through == summary.last_origin
    hold = math.log(1 + math.expm1(r[0]) - fee) + r[1:].sum()
    assert got["buy-and-hold"].total_log_return == pytest.approx(hold)
    assert got["signal"].total_log_return == pytest.approx(hold)  # +0.3% beats the 0.2% round trip: always in
    assert got["signal-drift"].total_log_return == 0.0  # no drift: never in
    # the model's range says sigma = SIGMA (times 1.645 over the exact quantile) every hour: about half the pair
    half_of = 0.005 / (SIGMA * Z95 / 1.6448536269514715)
    half = math.log(1 + half_of * math.expm1(r[0]) - half_of * fee) + sum(
        math.log1p(half_of * math.expm1(x)) for x in r[1:]
    )
    assert got["risk-target"].total_log_return == pytest.approx(half)
    scale = seq.volatility_scale(prices[:-1], np.r_[False, np.ones(199, dtype=bool)])[origins]
    ewma = np.minimum(1.0, 0.005 / (scale * Z95 / 1.6448536269514715))  # EWMA's range: the scale times +-1.645
    held = [ewma[0] * math.expm1(r[0]) - ewma[0] * fee, *(ewma[1:] * np.expm1(r[1:]) - np.abs(np.diff(ewma)) * fee)]
    assert got["risk-target-ewma"].total_log_return == pytest.approx(float(np.log1p(held).sum()), rel=1e-9)


def test_an_answer_is_refreshed_a_day_later_and_a_new_run_answers_at_once() -> None:
    prices = closes(200, seed=4)
    rows = record(prices, [("v1", 0, 1.0), ("v2", 60, 1.003)], shadows=False)
    first = summarize(as_of(rows, 150), "btc-usdt", "default", "1h", NOW, None, ("v2", basis(0.005)))
    assert first.decision is not None and first.decision.through == (T0 + 149 * HOUR).strftime("%Y-%m-%dT%H:%M:%SZ")
    stored = TrackSummary.model_validate_json(first.model_dump_json(by_alias=True))
    later = NOW + timedelta(hours=2)
    kept = summarize(rows, "btc-usdt", "default", "1h", later, stored, ("v2", basis(0.005)))
    key = "default/btc-usdt"
    hour_of_its_own = refresh_due(stored.decision, "v2", stored.live_since or "", later, key)
    assert (kept.decision == stored.decision) is not hour_of_its_own  # kept, unless 02:00 is this pair's hour
    a_day_on = summarize(rows, "btc-usdt", "default", "1h", NOW + timedelta(hours=26), stored, ("v2", basis(0.005)))
    assert a_day_on.decision is not None and a_day_on.decision.through > stored.decision.through
    # a new run (v3 from origin 170) answers at once, and the old run's answer is dropped
    newer = record(prices, [("v1", 0, 1.0), ("v2", 60, 1.003), ("v3", 170, 1.0)], shadows=False)
    v3 = summarize(newer, "btc-usdt", "default", "1h", later, stored, ("v3", basis(0.005)))
    assert v3.decision is not None and v3.decision.version == "v3" and v3.decision.metrics.rules["cash"].candles == 30
    no_basis = summarize(newer, "btc-usdt", "default", "1h", later, stored, None)
    assert no_basis.decision is None  # v2's answer says nothing of v3, and v3 has none of its own


def test_fewer_than_a_day_of_hours_give_no_answer_and_a_replayed_one_is_kept() -> None:
    prices = closes(80, seed=5)
    rows = record(prices, [("v1", 0, 1.0), ("v2", 60, 1.003)], shadows=False)
    summary = summarize(rows, "btc-usdt", "default", "1h", NOW, None, ("v2", basis(0.005)))
    assert summary.version == "v2" and summary.decision is None  # 19 scored hours
    replayed = summarize(
        record(closes(200), [("v1", 0, 1.0)], shadows=False),
        "btc-usdt",
        "default",
        "1h",
        NOW,
        None,
        ("v1", basis(0.01)),
    ).decision
    carried = summarize(
        rows, "btc-usdt", "default", "1h", NOW, summary.model_copy(update={"replayed_decision": replayed})
    )
    assert replayed is not None and carried.replayed_decision == replayed  # the tracker carries a replay's answer


class Held(RoundLoop):
    """What a tracker holds between rounds, for /metrics to read (its rounds are tested in test_tracker.py)."""

    def __init__(self, pairs: dict[str, PairTrack]) -> None:
        self.pairs, self.specs, self.last_round = pairs, {}, None

    def now(self) -> datetime:
        return NOW


def test_metrics_say_each_rules_return_and_its_difference_from_holding_with_the_interval() -> None:
    rows = record(closes(200), [("v1", 0, 1.0), ("v2", 60, 1.003)], shadows=False)
    summary = summarize(rows, "btc-usdt", "default", "1h", NOW, None, ("v2", basis(0.005)))
    assert summary.decision is not None
    registry = CollectorRegistry()
    registry.register(TrackCollector(Held({"default/btc-usdt": PairTrack(summary_json=None)})))
    registry_empty = generate_latest(registry).decode()
    assert "after_fees_log_return{" not in registry_empty  # no answer, no series
    state = PairTrack()
    state.summary = summary
    registry = CollectorRegistry()
    registry.register(TrackCollector(Held({"default/btc-usdt": state})))
    text = generate_latest(registry).decode()
    at = 'namespace="default",pair="btc-usdt"'
    metrics = summary.decision.metrics
    hold = metrics.rules["buy-and-hold"]
    assert f'makeusrich_track_after_fees_log_return{{{at},rule="buy-and-hold"}} {hold.total_log_return!r}' in text
    assert f"makeusrich_track_after_fees_candles{{{at}}} {float(hold.candles)!r}" in text
    low = metrics.against_twin["risk-target"].relative[1]
    assert f'makeusrich_track_after_fees_vs_twin{{bound="low",{at},rule="risk-target"}} {low!r}' in text
