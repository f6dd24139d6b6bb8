"""track.json from the rows: each window's live forecasts scored with the functions that score the test split
(makeusrich.scoring), so a live MAE ratio means what the test one means. Replayed rows never count."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from makeusrich.contract import iso_z
from makeusrich.metadata import LiveWindow, RangeScore, Score, TrackSummary
from makeusrich.scoring.evaluate import score
from makeusrich.scoring.ranges import range_score
from makeusrich.store.track import GAP, LIVE, level_columns

WINDOWS: tuple[tuple[str, timedelta], ...] = (
    ("24h", timedelta(hours=24)),
    ("7d", timedelta(days=7)),
    ("30d", timedelta(days=30)),
)
VERSION_WINDOW = "version"


def _iso(moment: pd.Timestamp | None) -> str | None:
    return None if moment is None or pd.isna(moment) else iso_z(moment.to_pydatetime())


def _matrix(scored: pd.DataFrame, column: str, horizon: int) -> np.ndarray:
    return scored.pivot(index="origin", columns="step", values=column).to_numpy(dtype=np.float64)[:, :horizon]


def _complete(live: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """The rows of origins whose `horizon` steps have all been scored (a forecast scores once, whole)."""
    rows = live[live["step"] <= horizon]
    done = rows.groupby("origin")["actual"].agg(lambda a: bool(a.notna().all()) and len(a) == horizon)
    return rows[rows["origin"].isin(done[done].index)]


def point_score(scored: pd.DataFrame, horizon: int) -> Score | None:
    if scored.empty:
        return None
    actual, forecast = _matrix(scored, "actual", horizon), _matrix(scored, "forecast", horizon)
    last = _matrix(scored, "persistence", horizon)[:, 0]
    return score(actual, forecast, last)


def ranges_score(scored: pd.DataFrame, horizon: int) -> RangeScore | None:
    """Range coverage and pinball loss in log returns from the origin's close, on the origins whose every
    level was recorded (the newest levels: a version with other levels is left out of its windows)."""
    columns = [(level, column) for level, column in level_columns(scored) if scored[column].notna().any()]
    if not columns:
        return None
    names = [column for _, column in columns]
    usable = scored.groupby("origin")[names].transform(lambda c: c.notna().all()).all(axis=1)
    rows = scored[usable]
    if rows.empty:
        return None
    last = _matrix(rows, "persistence", horizon)
    actual = np.log(_matrix(rows, "actual", horizon) / last)
    quantiles = np.stack([np.log(_matrix(rows, column, horizon) / last) for column in names], axis=-1)
    try:
        return range_score(actual, quantiles, [level for level, _ in columns])
    except ValueError:  # levels that are not a valid set (a hand-edited file): no range score
        return None


def window_summary(rows: pd.DataFrame, name: str, start: pd.Timestamp | None) -> LiveWindow:
    """One window: live and gap origins from `start` on, and the live forecasts scored so far."""
    chosen = rows if start is None else rows[rows["origin"] >= start]
    live = chosen[chosen["kind"] == LIVE]
    made = int(live["origin"].nunique())
    missed = int(chosen.loc[chosen["kind"] == GAP, "origin"].nunique())
    horizon = int(live["step"].max()) if made else 0
    scored = _complete(live, horizon) if made else live
    count = int(scored["origin"].nunique())
    return LiveWindow(
        window=name,
        start=_iso(start),
        made=made,
        missed=missed,
        scored=count,
        point=point_score(scored, horizon) if count else None,
        ranges=ranges_score(scored, horizon) if count else None,
    )


def summarize(rows: pd.DataFrame, pair: str, namespace: str, interval: str, now: datetime) -> TrackSummary:
    """The summary of a pair's rows at `now`: the newest live version, since when it forecasts live, and every
    window (24 h, 7 d, 30 d back from now, and since that version went live)."""
    counted = rows[rows["kind"] != "replayed"]
    live = counted[counted["kind"] == LIVE]
    newest = live.sort_values("origin", kind="stable").iloc[-1] if not live.empty else None
    version = str(newest["version"]) if newest is not None else None
    since = live.loc[live["version"] == version, "origin"].min() if version is not None else None
    moment = pd.Timestamp(now).tz_convert("UTC")
    windows = [window_summary(counted, name, moment - length) for name, length in WINDOWS]
    if since is not None:
        windows.append(window_summary(counted[counted["version"] == version], VERSION_WINDOW, since))
    return TrackSummary(
        pair=pair,
        namespace=namespace,
        interval=interval,
        updated_at=iso_z(moment.to_pydatetime()),
        version=version,
        live_since=_iso(since),
        last_origin=_iso(counted["origin"].max()) if not counted.empty else None,
        last_forecast_at=_iso(newest["recorded_at"]) if newest is not None else None,
        windows=windows,
    )
