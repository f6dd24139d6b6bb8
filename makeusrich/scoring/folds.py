"""The rows of a walk-forward backtest as people read them: one per fold and one pooled, each with the point
forecast's skill against persistence, its direction, the ranges' coverage and the range scores as ratios to the
naive ranges; and, in a table of their own, the decision rules' returns after fees. Shared by `makeusrich
backtest`'s CSVs and tables and by the dashboard. Pure, no I/O."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from makeusrich.scoring.ranges import NAIVE_RANGE_NAMES, NAIVE_RANGES
from makeusrich.store import BacktestResult, DecisionMetrics, RangeMetrics, RangeScore, Score

COLUMNS = (
    "fold",
    "cutoff",
    "n",
    "mae_ratio",
    "dm_p",
    "direction",
    "pt_p",
    "coverage_50",
    "coverage_90",
    "interval_90_vs_climatology",
    "interval_90_vs_ewma",
    "interval_90_vs_ewma_range",
    "interval_90_vs_har",
    "pinball_vs_climatology",
    "pinball_vs_ewma",
    "pinball_vs_har",
    "epochs",
    "train_seconds",
)


def row(label: str, cutoff: str, point: Score, scored: RangeMetrics, epochs: Any, seconds: Any) -> dict[str, Any]:
    """One line of the table: point skill, direction, coverage and the range scores as ratios to baselines."""
    widest, model = scored.model.ranges[0], scored.model
    coverage = {f"coverage_{round(r.nominal * 100)}": round(r.rate, 4) for r in model.ranges}
    direction = point.directional
    return {
        "fold": label,
        "cutoff": cutoff,
        "n": point.n,
        "mae_ratio": _round(point.rel_mae, 4),
        "dm_p": _round(point.dm_pvalue, 3),
        "direction": _round(direction.accuracy if direction else None, 4),
        "pt_p": _round(direction.pt_pvalue if direction else None, 3),
        "coverage_50": coverage.get("coverage_50", ""),
        "coverage_90": coverage.get("coverage_90", ""),
        "interval_90_vs_climatology": round(widest.interval_score / scored.climatology.ranges[0].interval_score, 4),
        "interval_90_vs_ewma": round(widest.interval_score / scored.ewma.ranges[0].interval_score, 4),
        "interval_90_vs_ewma_range": _ratio(
            widest.interval_score, scored.ewma_range, lambda s: s.ranges[0].interval_score
        ),
        "interval_90_vs_har": _ratio(widest.interval_score, scored.har, lambda s: s.ranges[0].interval_score),
        "pinball_vs_climatology": round(model.pinball / scored.climatology.pinball, 4),
        "pinball_vs_ewma": round(model.pinball / scored.ewma.pinball, 4),
        "pinball_vs_har": _ratio(model.pinball, scored.har, lambda s: s.pinball),
        "epochs": epochs,
        "train_seconds": seconds,
    }


def _ratio(value: float, baseline: RangeScore | None, score: Callable[[RangeScore], float]) -> float | str:
    """The model's score over a naive range's, blank for results measured before that range existed."""
    return "" if baseline is None else round(value / score(baseline), 4)


def _round(value: float | None, digits: int) -> float | str:
    return "" if value is None else round(value, digits)


def interval_ratio_line(scored: RangeMetrics) -> str:
    """The widest range's interval score over each naive range's with its 95% bootstrap interval, in a sentence
    (empty for results measured before the intervals were): whether beating a baseline could be luck."""
    found = scored.interval_ratios or {}
    said = [
        f"{NAIVE_RANGE_NAMES[name]} {found[name].ratio:.3f} [{found[name].low:.3f}, {found[name].high:.3f}]"
        for name in NAIVE_RANGES
        if name in found
    ]
    if not said:
        return ""
    nominal = round(scored.model.ranges[0].nominal * 100)
    return f"The {nominal}% range's interval score over each naive range's, with 95% intervals: {'; '.join(said)}."


def table_rows(result: BacktestResult) -> list[dict[str, Any]]:
    """A row per fold, then the pool of all folds, then (with a hold-out) the pool a choice is made on and the
    held-out pool, labelled by their folds (`folds 1-9`, `folds 10-12`)."""
    rows = [row(str(f.fold), f.cutoff, f.point, f.ranges, f.epochs, f.train_seconds) for f in result.folds]
    epochs = sum(f.epochs for f in result.folds)
    seconds = round(sum(f.train_seconds for f in result.folds), 1)
    rows.append(row("pooled", "", result.pooled_point, result.pooled_ranges, epochs, seconds))
    for pool in (result.choice, result.held_out):
        if pool is not None:
            rows.append(row(f"folds {pool.folds[0]}-{pool.folds[-1]}", "", pool.point, pool.ranges, "", ""))
    return rows


DECISION_COLUMNS = (
    "fold",
    "cutoff",
    "candles",
    "holding",
    "signal",
    "signal_drift",
    "risk_target",
    "risk_target_ewma",
    "signal_vs_holding",
    "signal_vs_holding_low",
    "signal_vs_holding_high",
    "signal_vs_holding_p",
    "risk_target_vs_holding",
    "risk_target_vs_holding_low",
    "risk_target_vs_holding_high",
    "risk_target_vs_holding_p",
    "signal_vs_drift",
    "signal_vs_drift_low",
    "signal_vs_drift_high",
    "signal_vs_drift_p",
    "risk_target_vs_ewma",
    "risk_target_vs_ewma_low",
    "risk_target_vs_ewma_high",
    "risk_target_vs_ewma_p",
)
"""Returns after fees over the fold (exp of the total log return, minus 1), and each rule against holding and
against its twin: how much more (below 0, less) it ends with, the 95% interval of that, and the p-value of the
difference in mean return."""
COMPARED = (
    ("signal_vs_holding", "against_holding", "signal"),
    ("risk_target_vs_holding", "against_holding", "risk-target"),
    ("signal_vs_drift", "against_twin", "signal"),
    ("risk_target_vs_ewma", "against_twin", "risk-target"),
)


def decision_row(label: str, cutoff: str, traded: DecisionMetrics) -> dict[str, Any]:
    total = {rule: round(math.expm1(score.total_log_return), 4) for rule, score in traded.rules.items()}
    cells: dict[str, Any] = {
        "fold": label,
        "cutoff": cutoff,
        "candles": traded.rules["buy-and-hold"].candles,
        "holding": total["buy-and-hold"],
        "signal": total["signal"],
        "signal_drift": total["signal-drift"],
        "risk_target": total["risk-target"],
        "risk_target_ewma": total["risk-target-ewma"],
    }
    for name, against, rule in COMPARED:
        found = getattr(traded, against)[rule]
        relative, low, high = found.relative
        cells |= {
            name: round(relative, 4),
            f"{name}_low": round(low, 4),
            f"{name}_high": round(high, 4),
            f"{name}_p": round(found.mean_p, 3),
        }
    return cells


def decision_rows(result: BacktestResult) -> list[dict[str, Any]]:
    """A row per fold, the losing ones as plainly as the rest, then the pooled folds (and, with a hold-out, its
    two pools); none for a backtest from before the rules."""
    rows = [decision_row(str(f.fold), f.cutoff, f.decision) for f in result.folds if f.decision is not None]
    if result.pooled_decision is not None:
        rows.append(decision_row("pooled", "", result.pooled_decision))
    for pool in (result.choice, result.held_out):
        if pool is not None and pool.decision is not None:
            rows.append(decision_row(f"folds {pool.folds[0]}-{pool.folds[-1]}", "", pool.decision))
    return rows
