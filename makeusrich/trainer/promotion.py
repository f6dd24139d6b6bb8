"""Whether a version is promoted: the pair's bars on the validation split (point skill against persistence, the
widest range's coverage), and not significantly worse than the served version (the champion) on hours neither
trained on, the champion's own ONNX file run on them. Every rule says why, either way, in metadata.json.
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
from makeusrich.store import ChampionCheck, Metrics, ModelMetadata, PairStore, SplitMetrics
from makeusrich.trainer.evaluation import log_returns
from makeusrich.trainer.export import run_onnx
from makeusrich.trainer.features import Prepared


def promotion_decision(
    validation: SplitMetrics, max_relative_mae: float, coverage_tolerance: float
) -> tuple[bool, str]:
    """Promote when validation MAE / persistence MAE <= the pair's bar and the widest range covers the
    validation points as its level says, within the pair's tolerance; the reason says either way."""
    ratio = validation.model.rel_mae
    if ratio is None:
        return False, "validation prices never moved, so skill against persistence is undefined"
    if ratio > max_relative_mae:
        return False, f"validation MAE is {ratio:.4f} of persistence's, above the bar of {max_relative_mae:g}"
    point = f"validation MAE is {ratio:.4f} of persistence's, within the bar of {max_relative_mae:g}"
    if validation.ranges is None:
        return True, point
    widest = validation.ranges.model.ranges[0]
    off = abs(widest.rate - widest.nominal)
    said = f"its {widest.nominal:.0%} range covers {widest.rate:.1%} of validation closes"
    if off > coverage_tolerance + 1e-12:
        return False, f"{point}, but {said}, further than {coverage_tolerance:g} from {widest.nominal:.0%}"
    return True, f"{point}, and {said}"


CHAMPION_MIN_POINTS = 100
"""Validation hours the served version never trained on that a comparison needs: fewer say too little."""
CHAMPION_P = 0.05


def champion_points(data: Prepared, champion: ModelMetadata) -> np.ndarray:
    """Validation origins whose inputs and targets the champion never trained on (from its validation split on;
    it early-stopped and calibrated there, which favours the champion: the comparison errs towards keeping it)
    and with enough history for its window."""
    boundary = pd.Timestamp(champion.data.validation_from or champion.data.test_from)
    closes = close_moments(data.open_time, champion.interval)
    validation = data.split.validation
    keep = (closes.iloc[validation].to_numpy() >= boundary) & (validation - champion.window + 1 >= 0)
    return validation[keep]


def compare_with_champion(
    store: PairStore, data: Prepared, session: onnxruntime.InferenceSession, levels: list[float]
) -> ChampionCheck | None:
    """Score the served version's own ONNX file and this run's on the same newest validation hours; None when
    nothing is served yet."""
    latest = store.latest()
    if latest is None:
        return None
    version = latest.version
    try:
        champion = store.model_metadata(version)
        champion_session = onnx_session(store.read_model(version))
    except StoreError as exc:
        return ChampionCheck(version=version, n=0, compared=False, note=f"the served version is unreadable: {exc}")
    if champion.horizon != data.horizon:
        note = f"the served version forecasts {champion.horizon} candles ahead, this run {data.horizon}"
        return ChampionCheck(version=version, n=0, compared=False, note=note)
    points = champion_points(data, champion)
    if len(points) < CHAMPION_MIN_POINTS:
        note = (
            f"only {len(points)} validation hours lie after the served version's training data "
            f"(at least {CHAMPION_MIN_POINTS} are needed to compare)"
        )
        return ChampionCheck(version=version, n=len(points), compared=False, note=note)
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

    def significantly_worse(key: str) -> bool:
        p = found.get(f"{key}_dm_pvalue")
        return key in found and found[key] > found[f"champion_{key}"] and p is not None and p < CHAMPION_P

    worse = [label for key, label in (("mae", "MAE"), ("pinball", "pinball loss")) if significantly_worse(key)]
    note = (
        f"significantly worse than the served version {version} on {len(points)} validation hours neither "
        f"trained on ({' and '.join(worse)}, DM p < {CHAMPION_P:g})"
        if worse
        else f"not significantly worse than the served version {version} on {len(points)} validation hours "
        "neither trained on"
    )
    return ChampionCheck(version=version, n=len(points), compared=True, note=note, worse=bool(worse), **found)


def decide(
    store: PairStore,
    data: Prepared,
    session: onnxruntime.InferenceSession,
    metrics: Metrics,
    bars: PromotionSpec,
    levels: list[float],
) -> tuple[tuple[bool, str], ChampionCheck | None]:
    """The run's promotion: the pair's bars on validation, then the champion comparison, which can only refuse."""
    decision = promotion_decision(metrics.validation, bars.max_relative_mae, bars.coverage_tolerance)
    champion = compare_with_champion(store, data, session, levels)
    if champion is not None and decision[0]:
        decision = (not champion.worse, f"{decision[1]}; {champion.note}")
    return decision, champion
