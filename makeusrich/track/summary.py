"""track.json from the rows: each window's live forecasts scored with the functions that score the test split
(makeusrich.scoring), so a live MAE ratio means what the test one means. Replayed and shadow rows never count.

The rows are turned into numpy arrays once, and every window is a mask over them: a tracker summarises each of
its pairs after every candle close.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from makeusrich.contract import iso_z
from makeusrich.market import interval_ms
from makeusrich.pair import LiveDecision, LiveShadow
from makeusrich.scoring import VERSION_WINDOW, decision, evaluate, ranges
from makeusrich.store import DecisionValue, LiveWindow, RangeScore, RunEvidence, Score, TrackSummary
from makeusrich.store.track_schema import GAP, LIVE, SERVED, as_nanoseconds, level_columns
from makeusrich.track.evidence import fold, iso_ns, new_run, report
from makeusrich.track.value import decision_value, refresh_due

WINDOWS: tuple[tuple[str, timedelta], ...] = (
    ("24h", timedelta(hours=24)),
    ("7d", timedelta(days=7)),
    ("30d", timedelta(days=30)),
)


@dataclass(frozen=True)
class Columns:
    """The rows that count (live and gaps), as arrays in (origin, step) order."""

    origin: np.ndarray  # int64 nanoseconds
    step: np.ndarray
    live: np.ndarray
    gap: np.ndarray
    version: np.ndarray
    recorded_at: np.ndarray
    actual: np.ndarray
    forecast: np.ndarray
    persistence: np.ndarray
    quantiles: np.ndarray  # [rows, levels], NaN where a row has no such level
    levels: list[float]

    @classmethod
    def of(cls, rows: pd.DataFrame) -> Columns:
        """Picked from whole columns with one index: taking the rows as a frame first would copy every column."""
        kind = rows["kind"].to_numpy(dtype=object)
        at = np.flatnonzero(np.isin(kind, SERVED))
        levels = level_columns(rows)

        def column(name: str) -> np.ndarray:
            return rows[name].to_numpy(dtype=np.float64)[at]

        return cls(
            origin=as_nanoseconds(rows["origin"])[at],
            step=rows["step"].to_numpy(dtype=np.int64)[at],
            live=kind[at] == LIVE,
            gap=kind[at] == GAP,
            version=rows["version"].to_numpy(dtype=object)[at],
            recorded_at=as_nanoseconds(rows["recorded_at"])[at],
            actual=column("actual"),
            forecast=column("forecast"),
            persistence=column("persistence"),
            quantiles=np.column_stack([column(c) for _, c in levels]) if levels else np.empty((at.size, 0)),
            levels=[level for level, _ in levels],
        )


def _whole(c: Columns, chosen: np.ndarray, horizon: int) -> np.ndarray:
    """Indices of the rows of origins whose `horizon` steps have all been scored (a forecast scores once,
    whole), in (origin, step) order, so that a column reshapes to [origins, horizon]. A forecast that is no
    finite number (written before the tracker checked answers) is never scored."""
    index = np.flatnonzero(chosen & (c.step <= horizon))
    if index.size == 0:
        return index
    _, first, counts = np.unique(c.origin[index], return_index=True, return_counts=True)
    usable = np.isfinite(c.actual[index]) & np.isfinite(c.forecast[index])
    known = np.add.reduceat(usable.astype(np.int64), first)
    whole: np.ndarray = index[np.repeat((counts == horizon) & (known == horizon), counts)]
    return whole


def _ranges(c: Columns, index: np.ndarray, horizon: int) -> RangeScore | None:
    """Range coverage and pinball loss in log returns from the origin's close, on the origins whose every
    level was recorded (the levels these rows have: a version with other levels is left out)."""
    quantiles = c.quantiles[index]
    present = np.isfinite(quantiles).any(axis=0)
    if not present.any():
        return None
    n = index.size // horizon
    q = quantiles[:, present].reshape(n, horizon, -1)
    last = c.persistence[index].reshape(n, horizon)
    usable = np.isfinite(q).all(axis=(1, 2))
    if not usable.any():
        return None
    actual = np.log(c.actual[index].reshape(n, horizon)[usable] / last[usable])
    logq = np.log(q[usable] / last[usable][:, :, None])
    try:
        return ranges.range_score(actual, logq, [level for level, keep in zip(c.levels, present, strict=True) if keep])
    except ValueError:  # levels that are not a valid set (a hand-edited file): no range score
        return None


def window_summary(c: Columns, chosen: np.ndarray, name: str, start: int | None) -> LiveWindow:
    """One window: live and gap origins among `chosen` rows, and the live forecasts scored so far."""
    live = chosen & c.live
    made = int(np.unique(c.origin[live]).size)
    missed = int(np.unique(c.origin[chosen & c.gap]).size)
    point: Score | None = None
    spread: RangeScore | None = None
    scored = 0
    if made:
        horizon = int(c.step[live].max())
        index = _whole(c, live, horizon)
        scored = index.size // horizon
        if scored:
            actual = c.actual[index].reshape(scored, horizon)
            forecast = c.forecast[index].reshape(scored, horizon)
            point = evaluate.score(actual, forecast, c.persistence[index].reshape(scored, horizon)[:, 0])
            spread = _ranges(c, index, horizon)
    return LiveWindow(
        window=name, start=iso_ns(start), made=made, missed=missed, scored=scored, point=point, ranges=spread
    )


def newest_live_version(rows: pd.DataFrame) -> str | None:
    """The version of the newest live forecast among `rows`: the one a summary of them is about."""
    live = rows["kind"].to_numpy(dtype=object) == LIVE
    if not live.any():
        return None
    newest = np.flatnonzero(live)[np.argmax(as_nanoseconds(rows["origin"])[live])]
    return str(rows["version"].to_numpy(dtype=object)[newest])


def run_start(c: Columns, version: str) -> int:
    """The first origin of the version's newest run of live forecasts: a version served again (after a
    rollback) starts a new run, judged on its own."""
    others = c.live & (c.version != version)
    after = int(c.origin[others].max()) if others.any() else np.iinfo(np.int64).min
    return int(c.origin[c.live & (c.version == version) & (c.origin > after)].min())


def summarize(
    rows: pd.DataFrame,
    pair: str,
    namespace: str,
    interval: str,
    now: datetime,
    before: TrackSummary | None = None,
    basis: tuple[str, decision.Basis] | None = None,
) -> TrackSummary:
    """The summary of a pair's rows at `now`: the newest live version, since when it forecasts live (its newest
    run), every window (24 h, 7 d, 30 d back from now, and since that version went live), and the live decisions:
    the run's evidence in the last summary (`before`) with the forecasts scored since folded in, or from the rows
    alone when that was another run's. With `basis` (a version and what its decision rules fitted), also whether
    following that version on its run made money after fees, refreshed daily (makeusrich.track.value)."""
    c = Columns.of(rows)
    moment = pd.Timestamp(now).tz_convert("UTC")
    windows = []
    for name, length in WINDOWS:
        start = (moment - length).value
        windows.append(window_summary(c, c.origin >= start, name, start))
    version = since = newest_at = None
    value: DecisionValue | None = None
    decisions: list[LiveDecision] = []
    shadows: list[LiveShadow] = []
    run: RunEvidence | None = None
    if c.live.any():
        newest = np.flatnonzero(c.live)[np.argmax(c.origin[c.live])]
        version, newest_at = str(c.version[newest]), int(c.recorded_at[newest])
        since = run_start(c, version)
        windows.append(window_summary(c, (c.version == version) & (c.origin >= since), VERSION_WINDOW, since))
        step = pd.Timedelta(milliseconds=interval_ms(interval))
        prior = before.run_evidence if before else None
        run = prior if prior is not None and (prior.version, prior.live_since) == (version, iso_ns(since)) else None
        run = fold(run or new_run(version, since), rows, step)
        decisions, shadows = report(run, step)
        value = before.decision if before else None
        if value is not None and (value.version, value.since) != (version, iso_ns(since)):
            value = None  # another run's answer says nothing of this one
        if (
            basis is not None
            and basis[0] == version
            and refresh_due(value, version, iso_ns(since), now, f"{namespace}/{pair}")
        ):
            value = decision_value(rows, LIVE, version, since, step, basis[1], now) or value
    return TrackSummary(
        pair=pair,
        namespace=namespace,
        interval=interval,
        updated_at=iso_z(moment.to_pydatetime()),
        version=version,
        live_since=iso_ns(since),
        last_origin=iso_ns(int(c.origin.max())) if c.origin.size else None,
        last_forecast_at=iso_ns(newest_at),
        windows=windows,
        decisions=decisions,
        shadows=shadows,
        run_evidence=run,
        decision=value,
        replayed_decision=before.replayed_decision if before else None,
    )
