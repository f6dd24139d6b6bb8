"""The live decisions on a pair's rows: the evidence of each scored forecast of the served version's run, fed to
the e-detectors of makeusrich.scoring.sequential, which say whether it is Degraded or must be rolled back.

Only one-step forecasts count (overlapping multi-step targets would share outcomes), and only the served version's
newest run (a new version, or one served again, starts from nothing: restarting never raises a detector, so the
error bound holds across versions). The volatility that scales each loss is the RiskMetrics volatility of the
served record's closes up to the origin, from before the run if need be.

- degraded-point: the served version's loss against persistence's (the baseline's point forecast), with margin;
- degraded-range: its pinball loss against the baseline shadow's, with margin, where both forecast the same levels;
- degraded-coverage: its widest range's misses against the share it promises;
- rollback-point, rollback-range: its losses against the shadow of the version it replaced, no margin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from makeusrich.contract import iso_z
from makeusrich.pair import LiveDecision, LiveShadow
from makeusrich.scoring import ranges
from makeusrich.scoring import sequential as seq
from makeusrich.store.track_schema import BASELINE, LIVE, REPLACED, SERVED, SHADOW, as_nanoseconds, level_columns


@dataclass(frozen=True)
class Forecasts:
    """Some one-step rows as arrays, in origin order: what the decisions read (numpy masks, not frame filters: the
    tracker sums up every pair after every close)."""

    origin: np.ndarray  # int64 nanoseconds
    version: np.ndarray
    actual: np.ndarray
    close: np.ndarray
    forecast: np.ndarray
    quantiles: np.ndarray  # [rows, levels], NaN where a row lacks the level
    levels: list[float]

    @classmethod
    def of(cls, rows: pd.DataFrame) -> Forecasts:
        columns = level_columns(rows)
        return cls(
            origin=as_nanoseconds(rows["origin"]),
            version=rows["version"].to_numpy(dtype=object),
            actual=rows["actual"].to_numpy(dtype=np.float64),
            close=rows["persistence"].to_numpy(dtype=np.float64),
            forecast=rows["forecast"].to_numpy(dtype=np.float64),
            quantiles=rows[[c for _, c in columns]].to_numpy(dtype=np.float64) if columns else np.empty((len(rows), 0)),
            levels=[level for level, _ in columns],
        )

    def take(self, index: np.ndarray) -> Forecasts:
        """The rows at `index` (-1: none there, all NaN), with only the levels they forecast."""
        found = index >= 0
        at = np.where(found, index, 0)

        def pick(values: np.ndarray, blank: object = np.nan) -> np.ndarray:
            chosen = values[at]
            if chosen.dtype == object:
                chosen = chosen.copy()
            chosen[~found] = blank
            return chosen

        quantiles = pick(self.quantiles)
        present = np.isfinite(quantiles).any(axis=0)
        return Forecasts(
            origin=pick(self.origin, 0),
            version=pick(self.version, None),
            actual=pick(self.actual),
            close=pick(self.close),
            forecast=pick(self.forecast),
            quantiles=quantiles[:, present],
            levels=[level for level, keep in zip(self.levels, present, strict=True) if keep],
        )


def scale_at(rows: pd.DataFrame, kinds: np.ndarray, origins: np.ndarray, step: pd.Timedelta) -> np.ndarray:
    """The volatility known at each of `origins`, from the served record's closes (one per origin)."""
    record = np.isin(kinds, SERVED)
    at = as_nanoseconds(rows["origin"])[record]
    closes = rows["persistence"].to_numpy(dtype=np.float64)[record]
    known = np.isfinite(closes)
    at, closes = at[known], closes[known]
    if at.size == 0:
        return np.full(origins.size, np.nan)
    scale = seq.volatility_scale(closes, np.r_[False, np.diff(at) == step.value])
    found = np.minimum(np.searchsorted(at, origins), at.size - 1)
    return np.where(at[found] == origins, scale[found], np.nan)


def evidence(
    rows: pd.DataFrame, version: str, since: int, step: pd.Timedelta
) -> tuple[list[LiveDecision], list[LiveShadow]]:
    """Every decision that can be judged on the version's run from `since` (nanoseconds) on, and each shadow's
    comparison on the same origins."""
    rows = rows[rows["step"].to_numpy() == 1]
    kinds, reasons = rows["kind"].to_numpy(dtype=object), rows["reason"].to_numpy(dtype=object)
    every = Forecasts.of(rows)
    in_run = (every.origin >= since) & np.isfinite(every.actual)
    served_at = np.flatnonzero(in_run & (kinds == LIVE) & (every.version == version) & np.isfinite(every.forecast))
    if served_at.size == 0:
        return [], []
    run = every.take(served_at)
    scale = scale_at(rows, kinds, run.origin, step)
    limit = seq.threshold(seq.checks_in(seq.PERIOD, step.to_pytimedelta()))
    decisions: list[LiveDecision] = []

    def decide(
        name: str, detector: seq.Detector, served: np.ndarray, other: np.ndarray, against: str, margin: float = 0.0
    ) -> None:
        x = served - (1.0 + margin) * other
        usable = np.flatnonzero(np.isfinite(x))
        alarm = seq.decide(detector, x[usable], limit)
        fired = None if alarm.since is None else int(run.origin[usable[alarm.since]])
        decisions.append(
            LiveDecision(
                decision=name,
                on=alarm.on,
                statistic=round(alarm.statistic, 6),
                threshold=alarm.threshold,
                forecasts=alarm.checks,
                since=None if fired is None else iso_z(pd.Timestamp(fired, tz="UTC").to_pydatetime()),
                against=against,
                served=_mean(served[usable]),
                other=_mean(other[usable]),
            )
        )

    margin = seq.DEGRADED_MARGIN
    served_point = seq.point_loss(run.actual, run.forecast, scale)
    persistence = seq.point_loss(run.actual, run.close, scale)
    decide(
        seq.DEGRADED_POINT,
        seq.Detector.for_losses(seq.DEGRADED_POINT, margin),
        served_point,
        persistence,
        "persistence",
        margin,
    )
    served_range = _range_loss(run, run.quantiles, scale)
    if len(run.levels) >= 3:
        nominal = run.levels[-1] - run.levels[0]
        low, high = run.quantiles[:, 0], run.quantiles[:, -1]
        miss = np.where(np.isfinite(low) & np.isfinite(high), seq.outside(run.actual, low, high), np.nan)
        detector = seq.Detector.for_misses(seq.DEGRADED_COVERAGE, 1.0 - nominal)
        decide(
            seq.DEGRADED_COVERAGE,
            detector,
            miss,
            np.full(miss.size, 1.0 - nominal),
            f"the {nominal:.0%} range's promise",
        )
    shadows: list[LiveShadow] = []
    for role in (BASELINE, REPLACED):
        mine = np.flatnonzero(in_run & (kinds == SHADOW) & (reasons == role))
        if mine.size == 0:
            continue
        # each run origin's shadow of this role, or -1 (origins are unique per role and sorted)
        found = np.minimum(np.searchsorted(every.origin[mine], run.origin), mine.size - 1)
        shadow = every.take(np.where(every.origin[mine[found]] == run.origin, mine[found], -1))
        named = [v for v in shadow.version if v is not None]
        if not named:
            continue
        other_point = seq.point_loss(run.actual, shadow.forecast, scale)
        other_range = _range_loss(run, shadow.quantiles, scale) if shadow.levels == run.levels else None
        shadows.append(comparison(role, str(named[-1]), run, shadow))
        if role == BASELINE and other_range is not None and served_range is not None:
            detector = seq.Detector.for_losses(seq.DEGRADED_RANGE, margin)
            decide(seq.DEGRADED_RANGE, detector, served_range, other_range, str(named[-1]), margin)
        if role == REPLACED:
            decide(
                seq.ROLLBACK_POINT,
                seq.Detector.for_losses(seq.ROLLBACK_POINT),
                served_point,
                other_point,
                str(named[-1]),
            )
            if other_range is not None and served_range is not None:
                detector = seq.Detector.for_losses(seq.ROLLBACK_RANGE)
                decide(seq.ROLLBACK_RANGE, detector, served_range, other_range, str(named[-1]))
    return decisions, shadows


def _range_loss(run: Forecasts, quantiles: np.ndarray, scale: np.ndarray) -> np.ndarray | None:
    if not _valid(run.levels):
        return None
    return seq.range_loss(run.actual, run.close, quantiles, run.levels, scale)


def comparison(role: str, version: str, run: Forecasts, shadow: Forecasts) -> LiveShadow:
    """The served version's MAE and pinball loss over the shadow's, on the origins both forecast."""
    both = np.isfinite(shadow.forecast)
    mae = np.mean(np.abs(run.actual[both] - run.forecast[both]))
    other_mae = np.mean(np.abs(run.actual[both] - shadow.forecast[both]))
    pinball = None
    if _valid(run.levels) and _valid(shadow.levels):
        ranged = both & np.isfinite(run.quantiles).all(axis=1) & np.isfinite(shadow.quantiles).all(axis=1)
        if ranged.any():
            y, last = np.log(run.actual[ranged] / run.close[ranged]), run.close[ranged, None]
            served = ranges.pinball_loss(y, np.log(run.quantiles[ranged] / last), run.levels)
            theirs = ranges.pinball_loss(y, np.log(shadow.quantiles[ranged] / last), shadow.levels)
            pinball = _ratio(served, theirs)
    return LiveShadow(
        role=role,
        version=version,
        scored=int(both.sum()),
        mae_ratio=_ratio(float(mae), float(other_mae)),
        pinball_ratio=pinball,
    )


def _valid(levels: list[float]) -> bool:
    try:
        ranges.check_levels(levels)
    except ValueError:
        return False
    return True


def _mean(values: np.ndarray) -> float | None:
    return round(float(np.mean(values)), 6) if values.size else None


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 6) if denominator > 0 else None
