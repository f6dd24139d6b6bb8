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

import numpy as np
import pandas as pd

from makeusrich.contract import iso_z
from makeusrich.pair import LiveDecision, LiveShadow
from makeusrich.scoring import ranges
from makeusrich.scoring import sequential as seq
from makeusrich.store.track_schema import BASELINE, LIVE, REPLACED, SERVED, SHADOW, as_nanoseconds, level_columns

ROLLBACK = (seq.ROLLBACK_POINT, seq.ROLLBACK_RANGE)


def quantiles_of(rows: pd.DataFrame) -> tuple[list[float], np.ndarray]:
    """The levels these rows forecast (their columns with any value) and the quantile prices [rows, levels]."""
    present = [(level, column) for level, column in level_columns(rows) if rows[column].notna().any()]
    values = rows[[column for _, column in present]].to_numpy(dtype=np.float64)
    return [level for level, _ in present], values


def scale_at(rows: pd.DataFrame, origins: np.ndarray, step: pd.Timedelta) -> np.ndarray:
    """The volatility known at each of `origins`, from the served record's closes (one per origin)."""
    record = rows[rows["kind"].isin(SERVED) & rows["persistence"].notna()]
    at = as_nanoseconds(record["origin"])
    closes = record["persistence"].to_numpy(dtype=np.float64)
    consecutive = np.r_[False, np.diff(at) == step.value]
    scale = seq.volatility_scale(closes, consecutive)
    found = np.searchsorted(at, origins)
    inside = (found < at.size) & (at[np.minimum(found, at.size - 1)] == origins)
    return np.where(inside, scale[np.minimum(found, max(at.size - 1, 0))], np.nan)


def evidence(
    rows: pd.DataFrame, version: str, since: int, step: pd.Timedelta
) -> tuple[list[LiveDecision], list[LiveShadow]]:
    """Every decision that can be judged on the version's run from `since` (nanoseconds) on, and each shadow's
    comparison on the same origins."""
    first = rows[rows["step"].to_numpy() == 1]
    run = first[
        (first["kind"] == LIVE)
        & (first["version"] == version)
        & (as_nanoseconds(first["origin"]) >= since)
        & first["actual"].notna()
        & first["forecast"].notna()
    ]
    if run.empty:
        return [], []
    origins = as_nanoseconds(run["origin"])
    scale = scale_at(first, origins, step)
    actual = run["actual"].to_numpy(dtype=np.float64)
    close = run["persistence"].to_numpy(dtype=np.float64)
    forecast = run["forecast"].to_numpy(dtype=np.float64)
    levels, served_q = quantiles_of(run)
    limit = seq.threshold(seq.checks_in(seq.PERIOD, step.to_pytimedelta()))
    decisions: list[LiveDecision] = []

    def decide(
        name: str, detector: seq.Detector, served: np.ndarray, other: np.ndarray, against: str, margin: float
    ) -> None:
        x = served - (1.0 + margin) * other
        usable = np.isfinite(x)
        alarm = seq.decide(detector, x[usable], limit)
        since_at = None if alarm.since is None else run["origin"].iloc[np.flatnonzero(usable)[alarm.since]]
        decisions.append(
            LiveDecision(
                decision=name,
                on=alarm.on,
                statistic=round(alarm.statistic, 6),
                threshold=alarm.threshold,
                forecasts=alarm.checks,
                since=None if since_at is None else iso_z(pd.Timestamp(since_at).to_pydatetime()),
                against=against,
                served=_mean(served[usable]),
                other=_mean(other[usable]),
            )
        )

    served_point = seq.point_loss(actual, forecast, scale)
    persistence = seq.point_loss(actual, close, scale)
    margin = seq.DEGRADED_MARGIN
    decide(
        seq.DEGRADED_POINT,
        seq.Detector.for_losses(seq.DEGRADED_POINT, margin),
        served_point,
        persistence,
        "persistence",
        margin,
    )
    served_range = seq.range_loss(actual, close, served_q, levels, scale) if _valid(levels) else None
    if len(levels) >= 3:
        nominal = levels[-1] - levels[0]
        miss = seq.outside(actual, served_q[:, 0], served_q[:, -1])
        miss = np.where(np.isfinite(served_q[:, 0]) & np.isfinite(served_q[:, -1]), miss, np.nan)
        promised = np.full(miss.size, 1.0 - nominal)
        detector = seq.Detector.for_misses(seq.DEGRADED_COVERAGE, 1.0 - nominal)
        decide(seq.DEGRADED_COVERAGE, detector, miss, promised, f"the {nominal:.0%} range's promise", 0.0)
    shadows: list[LiveShadow] = []
    for role in (BASELINE, REPLACED):
        mine = first[(first["kind"] == SHADOW) & (first["reason"] == role) & first["actual"].notna()]
        mine = mine.drop_duplicates("origin")
        mine.index = pd.Index(as_nanoseconds(mine["origin"]))
        mine = mine.reindex(origins)
        if mine["forecast"].notna().sum() == 0:
            continue
        shadow_version = str(mine["version"].dropna().iloc[-1])
        other_point = seq.point_loss(actual, mine["forecast"].to_numpy(dtype=np.float64), scale)
        shadow_levels, shadow_q = quantiles_of(mine)
        other_range = None
        if served_range is not None and shadow_levels == levels:
            other_range = seq.range_loss(actual, close, shadow_q, levels, scale)
        shadows.append(comparison(role, shadow_version, actual, close, forecast, served_q, mine, levels, shadow_levels))
        if role == BASELINE and other_range is not None and served_range is not None:
            detector = seq.Detector.for_losses(seq.DEGRADED_RANGE, margin)
            decide(seq.DEGRADED_RANGE, detector, served_range, other_range, shadow_version, margin)
        if role == REPLACED:
            decide(
                seq.ROLLBACK_POINT,
                seq.Detector.for_losses(seq.ROLLBACK_POINT),
                served_point,
                other_point,
                shadow_version,
                0.0,
            )
            if other_range is not None and served_range is not None:
                detector = seq.Detector.for_losses(seq.ROLLBACK_RANGE)
                decide(seq.ROLLBACK_RANGE, detector, served_range, other_range, shadow_version, 0.0)
    return decisions, shadows


def comparison(
    role: str,
    version: str,
    actual: np.ndarray,
    close: np.ndarray,
    forecast: np.ndarray,
    served_q: np.ndarray,
    shadow: pd.DataFrame,
    levels: list[float],
    shadow_levels: list[float],
) -> LiveShadow:
    """The served version's MAE and pinball loss over the shadow's, on the origins both forecast."""
    other = shadow["forecast"].to_numpy(dtype=np.float64)
    both = np.isfinite(other)
    mae = np.mean(np.abs(actual[both] - forecast[both]))
    other_mae = np.mean(np.abs(actual[both] - other[both]))
    pinball = None
    if _valid(levels) and _valid(shadow_levels):
        _, shadow_q = quantiles_of(shadow)
        ranged = both & np.isfinite(served_q).all(axis=1) & np.isfinite(shadow_q).all(axis=1)
        if ranged.any():
            y, last = np.log(actual[ranged] / close[ranged]), close[ranged, None]
            served = ranges.pinball_loss(y, np.log(served_q[ranged] / last), levels)
            theirs = ranges.pinball_loss(y, np.log(shadow_q[ranged] / last), shadow_levels)
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
