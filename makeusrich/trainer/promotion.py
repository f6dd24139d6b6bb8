"""Whether a version is promoted: three rules, each computed on hours that did not tune what it judges, each
able to refuse, each saying why in metadata.json (`promotion.gates`).

- point: on the test split (hours that neither fitted, early-stopped nor calibrated the version), its MAE is at
  most the pair's bar times persistence's;
- coverage: there too, its widest range covers the closes as its level says, within the pair's tolerance;
- champion: it is not significantly worse (Diebold-Mariano, point and pinball loss) than the served version on
  the hours that neither used in any role: its test hours after the last candle that tuned the served one. With
  too few of those, the served version stays, unless it is the baseline.

The first version of a pair (the baseline, when nothing is served) is promoted without the rules: a pair serves a
forecast from the first minute, and everything after it must beat it through them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime
import pandas as pd

from makeusrich.contract import INPUT_NAME, QUANTILES_NAME
from makeusrich.errors import StoreError
from makeusrich.market import close_moments
from makeusrich.onnxrt import onnx_session
from makeusrich.pair import PromotionSpec
from makeusrich.scoring import evaluate, ranges
from makeusrich.store import (
    MODEL_KINDS,
    ChampionCheck,
    Gate,
    Metrics,
    ModelMetadata,
    PairStore,
    Promotion,
    SplitMetrics,
)
from makeusrich.trainer.evaluation import log_returns
from makeusrich.trainer.export import run_onnx
from makeusrich.trainer.features import Prepared

CHAMPION_MIN_POINTS = 100
"""Hours neither version used that a comparison needs: fewer say too little to replace the served version."""
CHAMPION_P = 0.05


def point_gate(test: SplitMetrics, bar: float) -> Gate:
    """The point forecast's MAE on the test split, at most `bar` times persistence's on the same hours."""
    ratio = test.model.rel_mae
    if ratio is None:
        return Gate(name="point", passed=False, note="the test prices never moved, so skill is undefined")
    said = f"test MAE is {ratio:.4f} of persistence's on {test.n:,} hours"
    if ratio > bar:
        return Gate(name="point", passed=False, note=f"{said}, above the bar of {bar:g}")
    return Gate(name="point", passed=True, note=f"{said}, within the bar of {bar:g}")


def coverage_gate(test: SplitMetrics, tolerance: float) -> Gate:
    """The widest range's coverage of the test closes, within `tolerance` of its nominal level."""
    if test.ranges is None:
        return Gate(name="coverage", passed=None, note="the version forecasts no ranges")
    widest = test.ranges.model.ranges[0]
    said = f"its {widest.nominal:.0%} range covers {widest.rate:.1%} of test closes"
    if abs(widest.rate - widest.nominal) > tolerance + 1e-12:
        return Gate(name="coverage", passed=False, note=f"{said}, further than {tolerance:g} from {widest.nominal:.0%}")
    return Gate(name="coverage", passed=True, note=f"{said}, within {tolerance:g} of {widest.nominal:.0%}")


def champion_gate(check: ChampionCheck | None) -> Gate:
    """Not significantly worse than the served version on hours neither used; without enough such hours the
    served version stays, unless it is the baseline (which a version that clears the bars may replace)."""
    if check is None:
        return Gate(name="champion", passed=None, note="nothing is served yet")
    if check.compared:
        return Gate(name="champion", passed=not check.worse, note=check.note)
    if check.kind == "baseline" or not check.comparable:
        return Gate(name="champion", passed=None, note=check.note)
    return Gate(name="champion", passed=False, note=f"{check.note}; the served version {check.version} stays")


def champion_points(data: Prepared, champion: ModelMetadata) -> np.ndarray:
    """The test origins (hours that tuned nothing of this run) after the last candle that tuned the champion,
    with enough history for its window: the hours that neither version used in any role."""
    boundary = pd.Timestamp(champion.data.tuned_through())
    closes = close_moments(data.open_time, champion.interval)
    test = data.split.test
    keep = (closes.iloc[test].to_numpy() > boundary) & (test - champion.window + 1 >= 0)
    return test[keep]


def compare_with_champion(
    store: PairStore, data: Prepared, session: onnxruntime.InferenceSession, levels: list[float]
) -> ChampionCheck | None:
    """Score the served version's own ONNX file and this run's on the hours neither used; None when nothing is
    served yet."""
    latest = store.latest()
    if latest is None:
        return None
    version = latest.version
    try:
        champion = store.model_metadata(version)
        champion_session = onnx_session(store.read_model(version))
    except StoreError as exc:
        note = f"the served version is unreadable: {exc}"
        return ChampionCheck(version=version, n=0, compared=False, comparable=False, note=note)
    kind, name = champion.kind, f"the served {MODEL_KINDS[champion.kind]} {version}"
    if champion.horizon != data.horizon:
        note = f"{name} forecasts {champion.horizon} candles ahead, this run {data.horizon}: nothing to compare"
        return ChampionCheck(version=version, kind=kind, n=0, compared=False, comparable=False, note=note)
    points = champion_points(data, champion)
    if len(points) < CHAMPION_MIN_POINTS:
        note = (
            f"only {len(points)} test hours lie after the last candle that tuned {name} "
            f"(at least {CHAMPION_MIN_POINTS} are needed to compare)"
        )
        return ChampionCheck(version=version, kind=kind, n=len(points), compared=False, note=note)
    found = _scores(data, session, champion_session, champion, points, levels)

    def significantly_worse(key: str) -> bool:
        p = found.get(f"{key}_dm_pvalue")
        return key in found and found[key] > found[f"champion_{key}"] and p is not None and p < CHAMPION_P

    worse = [label for key, label in (("mae", "MAE"), ("pinball", "pinball loss")) if significantly_worse(key)]
    hours = f"{len(points):,} test hours neither used"
    note = (
        f"significantly worse than {name} on {hours} ({' and '.join(worse)}, DM p < {CHAMPION_P:g})"
        if worse
        else f"not significantly worse than {name} on {hours}"
    )
    return ChampionCheck(
        version=version, kind=kind, n=len(points), compared=True, note=note, worse=bool(worse), **found
    )


def _scores(
    data: Prepared,
    session: onnxruntime.InferenceSession,
    champion_session: onnxruntime.InferenceSession,
    champion: ModelMetadata,
    points: np.ndarray,
    levels: list[float],
) -> dict[str, Any]:
    """Both versions' MAE and pinball loss on the same points, with Diebold-Mariano p-values."""
    actual, last = data.actual_prices(points), data.last_close(points)
    forecast, quantiles = run_onnx(session, data.raw_windows(points))
    windows = np.lib.stride_tricks.sliding_window_view(data.ohlcv, champion.window, axis=0)
    champion_windows = np.ascontiguousarray(windows[points - champion.window + 1].transpose(0, 2, 1), np.float32)
    names = [output.name for output in champion_session.get_outputs()]
    answers = champion_session.run(names, {INPUT_NAME: champion_windows})
    mae, champion_mae = (float(np.mean(np.abs(f - actual))) for f in (forecast, answers[0]))
    found: dict[str, Any] = {
        "mae": mae,
        "champion_mae": champion_mae,
        "mae_dm_pvalue": evaluate.diebold_mariano(forecast - actual, answers[0] - actual, data.horizon, "absolute"),
    }
    if QUANTILES_NAME in names and champion.quantiles == levels:
        y = log_returns(actual, last)
        ours = ranges.pinball_by_origin(y, log_returns(quantiles, last), levels)
        theirs = ranges.pinball_by_origin(y, log_returns(answers[names.index(QUANTILES_NAME)], last), levels)
        found.update(
            pinball=float(ours.mean()),
            champion_pinball=float(theirs.mean()),
            pinball_dm_pvalue=evaluate.diebold_mariano_losses(ours, theirs, data.horizon),
        )
    return found


def decide(
    store: PairStore,
    data: Prepared,
    session: onnxruntime.InferenceSession,
    metrics: Metrics,
    bars: PromotionSpec,
    levels: list[float],
    recalibrated: bool = False,
) -> Promotion:
    """The run's promotion: every rule, in order; promoted when none refused. A recalibration's point forecast is
    the served version's (makeusrich.trainer.recalibrate), so the point rule is not judged again."""
    champion = compare_with_champion(store, data, session, levels)
    unchanged = "the point forecast is the served version's (a recalibration moves only the ranges)"
    gates = [
        Gate(name="point", passed=None, note=unchanged)
        if recalibrated
        else point_gate(metrics.test, bars.max_relative_mae),
        coverage_gate(metrics.test, bars.coverage_tolerance),
        champion_gate(champion),
    ]
    return promotion(gates, metrics, bars, champion)


def first_promotion(metrics: Metrics, bars: PromotionSpec, kind: str) -> Promotion:
    """The promotion of a pair's first version: nothing is served, so it is, whatever the bars say of it (they are
    recorded beside, for the record and for the dashboard)."""
    note = f"nothing is served yet: the {MODEL_KINDS[kind]} serves from the first minute"
    gates = [
        Gate(name="first", passed=True, note=note),
        point_gate(metrics.test, bars.max_relative_mae),
        coverage_gate(metrics.test, bars.coverage_tolerance),
    ]
    return promotion(gates, metrics, bars, None, forced=True)


def promotion(
    gates: list[Gate], metrics: Metrics, bars: PromotionSpec, champion: ChampionCheck | None, forced: bool = False
) -> Promotion:
    """The decision from the rules' verdicts; its reason names the refusing rules first, then the others."""
    widest = metrics.test.ranges.model.ranges[0] if metrics.test.ranges else None
    promoted = forced or all(gate.passed is not False for gate in gates)
    ordered = sorted(gates, key=lambda gate: gate.passed is not False)  # stable: refusals first, in rule order
    return Promotion(
        promoted=promoted,
        reason="; ".join(gate.note for gate in ordered),
        max_relative_mae=bars.max_relative_mae,
        judged_on="test",
        relative_mae=metrics.test.model.rel_mae,
        coverage=widest.rate if widest else None,
        coverage_tolerance=bars.coverage_tolerance,
        champion=champion,
        gates=gates,
    )
