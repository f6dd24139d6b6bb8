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

import math
from dataclasses import dataclass
from typing import overload

import numpy as np
import pandas as pd

from makeusrich.contract import iso_z
from makeusrich.pair import LiveDecision, LiveShadow
from makeusrich.scoring import ranges
from makeusrich.scoring import sequential as seq
from makeusrich.store import DetectorState, RunEvidence, ShadowSums
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
    def of(cls, rows: pd.DataFrame, index: np.ndarray | None = None) -> Forecasts:
        """The rows at `index` (all of them when None), picked from whole columns: cheaper than a frame's."""
        at = np.arange(len(rows)) if index is None else index
        columns = level_columns(rows)

        def column(name: str) -> np.ndarray:
            return rows[name].to_numpy(dtype=np.float64)[at]

        return cls(
            origin=as_nanoseconds(rows["origin"])[at],
            version=rows["version"].to_numpy(dtype=object)[at],
            actual=column("actual"),
            close=column("persistence"),
            forecast=column("forecast"),
            quantiles=np.column_stack([column(c) for _, c in columns]) if columns else np.empty((at.size, 0)),
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


SCALE_HISTORY = 600
"""Candles of closes before the first origin folded in that its volatility scale reads: the EWMA's weight on
anything older is below 0.94^600, about 1e-16."""


def scale_at(at: np.ndarray, closes: np.ndarray, origins: np.ndarray, step: pd.Timedelta) -> np.ndarray:
    """The volatility known at each of `origins`, from the served record's closes (`at`: their origins, sorted)."""
    known = np.isfinite(closes)
    at, closes = at[known], closes[known]
    if at.size == 0:
        return np.full(origins.size, np.nan)
    scale = seq.volatility_scale(closes, np.r_[False, np.diff(at) == step.value])
    found = np.minimum(np.searchsorted(at, origins), at.size - 1)
    return np.where(at[found] == origins, scale[found], np.nan)


def new_run(version: str, since: int) -> RunEvidence:
    """The evidence of a run that nothing has been folded into yet."""
    return RunEvidence(version=version, live_since=iso_ns(since))


def evidence(
    rows: pd.DataFrame, version: str, since: int, step: pd.Timedelta
) -> tuple[list[LiveDecision], list[LiveShadow]]:
    """Every decision that can be judged on the version's run from `since` (nanoseconds) on, and each shadow's
    comparison on the same origins, from the rows at once: what folding them in round by round gives."""
    return report(fold(new_run(version, since), rows, step), step)


def fold(state: RunEvidence, rows: pd.DataFrame, step: pd.Timedelta) -> RunEvidence:
    """`state` with the run's one-step forecasts scored after `state.through` folded in, in origin order, each
    beside the shadows recorded for its origin by then (a shadow that comes later is not counted: which forecasts
    count never depends on how they fared, so the error bound holds). The served record's closes before the run
    give the volatility scale."""
    after = pd.Timestamp(state.through or state.live_since).value + int(state.through is not None)
    one = rows["step"].to_numpy() == 1
    origin, kinds = as_nanoseconds(rows["origin"]), rows["kind"].to_numpy(dtype=object)
    candidates = np.flatnonzero(one & (origin >= after) & (kinds == LIVE))
    candidates = candidates[rows["version"].to_numpy(dtype=object)[candidates] == state.version]
    run = Forecasts.of(rows, candidates)
    run = run.take(np.flatnonzero(np.isfinite(run.actual) & np.isfinite(run.forecast)))
    if run.origin.size == 0:
        return state
    record = one & np.isin(kinds, SERVED) & (origin <= run.origin[-1])
    record &= origin >= run.origin[0] - SCALE_HISTORY * step.value
    scale = scale_at(origin[record], rows["persistence"].to_numpy(dtype=np.float64)[record], run.origin, step)
    beside = _shadows(rows, origin, kinds, after, int(run.origin[-1]))
    every, reasons = Forecasts.of(rows, beside), rows["reason"].to_numpy(dtype=object)[beside]
    limit = seq.threshold(seq.checks_in(seq.PERIOD, step.to_pytimedelta()))
    decisions: dict[str, DetectorState] = {d.decision: d for d in state.decisions}

    def add(name: str, served: np.ndarray, other: np.ndarray, against: str, margin: float = 0.0) -> None:
        x = served - (1.0 + margin) * other
        usable = np.isfinite(x)
        detector = (
            seq.Detector.for_misses(name, float(other[0]))
            if name == seq.DEGRADED_COVERAGE
            else seq.Detector.for_losses(name, margin)
        )
        decisions[name] = _folded(
            decisions.get(name), detector, x[usable], served[usable], other[usable], run.origin[usable], against, limit
        )

    margin = seq.DEGRADED_MARGIN
    served_point = seq.point_loss(run.actual, run.forecast, scale)
    add(seq.DEGRADED_POINT, served_point, seq.point_loss(run.actual, run.close, scale), "persistence", margin)
    served_range = _range_loss(run, run.quantiles, scale)
    if len(run.levels) >= 3:
        nominal = run.levels[-1] - run.levels[0]
        low, high = run.quantiles[:, 0], run.quantiles[:, -1]
        miss = np.where(np.isfinite(low) & np.isfinite(high), seq.outside(run.actual, low, high), np.nan)
        add(seq.DEGRADED_COVERAGE, miss, np.full(miss.size, 1.0 - nominal), f"the {nominal:.0%} range's promise")
    shadows: dict[str, ShadowSums] = {s.role: s for s in state.shadows}
    for role in (BASELINE, REPLACED):
        mine = np.flatnonzero(reasons == role)
        if mine.size == 0:
            continue
        # each run origin's shadow of this role, or -1 (origins are unique per role and sorted)
        found = np.minimum(np.searchsorted(every.origin[mine], run.origin), mine.size - 1)
        shadow = every.take(np.where(every.origin[mine[found]] == run.origin, mine[found], -1))
        named = [v for v in shadow.version if v is not None]
        if not named:
            continue
        version = str(named[-1])
        shadows[role] = _compared(shadows.get(role), role, version, run, shadow)
        other_point = seq.point_loss(run.actual, shadow.forecast, scale)
        other_range = _range_loss(run, shadow.quantiles, scale) if shadow.levels == run.levels else None
        if role == BASELINE and other_range is not None and served_range is not None:
            add(seq.DEGRADED_RANGE, served_range, other_range, version, margin)
        if role == REPLACED:
            add(seq.ROLLBACK_POINT, served_point, other_point, version)
            if other_range is not None and served_range is not None:
                add(seq.ROLLBACK_RANGE, served_range, other_range, version)
    return state.model_copy(
        update={
            "through": iso_ns(int(run.origin.max())),
            "decisions": [decisions[name] for name in seq.DECISIONS if name in decisions],
            "shadows": [shadows[role] for role in (BASELINE, REPLACED) if role in shadows],
        }
    )


def _shadows(rows: pd.DataFrame, origin: np.ndarray, kinds: np.ndarray, first: int, last: int) -> np.ndarray:
    """Where the one-step shadow rows of origins from `first` to `last` (nanoseconds) are among `rows`, in origin
    order (so that each role's are sorted for the lookups)."""
    mine = (rows["step"].to_numpy() == 1) & (kinds == SHADOW)
    found = np.flatnonzero(mine & (origin >= first) & (origin <= last))
    return found[np.argsort(origin[found], kind="stable")]


def _folded(
    prior: DetectorState | None,
    detector: seq.Detector,
    x: np.ndarray,
    served: np.ndarray,
    other: np.ndarray,
    origins: np.ndarray,
    against: str,
    limit: float,
) -> DetectorState:
    """One decision's detector after the evidence `x` (usable forecasts, in origin order)."""
    paths = seq.log_wealth(x, detector.bets, None if prior is None or not prior.log_wealth else prior.log_wealth)
    was_on = prior is not None and prior.on
    alarm = seq.alarm_state(detector.name, seq.average(paths) if x.size else [], limit, was_on)
    since = prior.since if prior is not None and alarm.on and alarm.since is None else None
    if alarm.since is not None:
        since = iso_ns(int(origins[alarm.since]))
    return DetectorState(
        decision=detector.name,
        against=against,
        log_wealth=paths[:, -1].tolist() if x.size else (prior.log_wealth if prior else []),
        forecasts=(prior.forecasts if prior else 0) + int(x.size),
        served_sum=(prior.served_sum if prior else 0.0) + float(served.sum()),
        other_sum=(prior.other_sum if prior else 0.0) + float(other.sum()),
        on=alarm.on,
        since=since,
    )


def report(state: RunEvidence, step: pd.Timedelta) -> tuple[list[LiveDecision], list[LiveShadow]]:
    """The decisions and shadow comparisons as track.json and the status show them."""
    limit = seq.threshold(seq.checks_in(seq.PERIOD, step.to_pytimedelta()))
    decisions = [
        LiveDecision(
            decision=d.decision,
            on=d.on,
            statistic=round(math.exp(float(seq.average(d.log_wealth))), 6) if d.log_wealth else 0.0,
            threshold=limit,
            forecasts=d.forecasts,
            since=d.since,
            against=d.against,
            served=round(d.served_sum / d.forecasts, 6) if d.forecasts else None,
            other=round(d.other_sum / d.forecasts, 6) if d.forecasts else None,
        )
        for d in state.decisions
    ]
    shadows = [
        LiveShadow(
            role=s.role,
            version=s.version,
            scored=s.scored,
            mae_ratio=_ratio(s.served_error, s.other_error),
            pinball_ratio=_ratio(s.served_pinball, s.other_pinball) if s.ranged else None,
        )
        for s in state.shadows
    ]
    return decisions, shadows


def _range_loss(run: Forecasts, quantiles: np.ndarray, scale: np.ndarray) -> np.ndarray | None:
    if not _valid(run.levels):
        return None
    return seq.range_loss(run.actual, run.close, quantiles, run.levels, scale)


def _compared(prior: ShadowSums | None, role: str, version: str, run: Forecasts, shadow: Forecasts) -> ShadowSums:
    """The sums of the served version beside a shadow, with the origins both forecast added."""
    sums = prior or ShadowSums(role=role, version=version)
    both = np.isfinite(shadow.forecast)
    added = {
        "version": version,
        "scored": sums.scored + int(both.sum()),
        "served_error": sums.served_error + float(np.abs(run.actual[both] - run.forecast[both]).sum()),
        "other_error": sums.other_error + float(np.abs(run.actual[both] - shadow.forecast[both]).sum()),
    }
    if _valid(run.levels) and _valid(shadow.levels):
        ranged = both & np.isfinite(run.quantiles).all(axis=1) & np.isfinite(shadow.quantiles).all(axis=1)
        if ranged.any():
            y, last = np.log(run.actual[ranged] / run.close[ranged]), run.close[ranged, None]
            n = int(ranged.sum())
            served = ranges.pinball_loss(y, np.log(run.quantiles[ranged] / last), run.levels) * n
            theirs = ranges.pinball_loss(y, np.log(shadow.quantiles[ranged] / last), shadow.levels) * n
            added |= {
                "ranged": sums.ranged + n,
                "served_pinball": sums.served_pinball + served,
                "other_pinball": sums.other_pinball + theirs,
            }
    return sums.model_copy(update=added)


def _valid(levels: list[float]) -> bool:
    try:
        ranges.check_levels(levels)
    except ValueError:
        return False
    return True


@overload
def iso_ns(nanoseconds: int) -> str: ...
@overload
def iso_ns(nanoseconds: None) -> None: ...
def iso_ns(nanoseconds: int | None) -> str | None:
    """A moment in nanoseconds since the epoch as the documents write it."""
    return None if nanoseconds is None else iso_z(pd.Timestamp(nanoseconds, tz="UTC").to_pydatetime())


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 6) if denominator > 0 else None
