"""The rows of the track record, as pure functions over pandas frames: the rows of a forecast or of a gap, new
rows after the held ones, and the scoring of rows whose target candle has closed. Their schema is the store's
(makeusrich.store.track); the tracker and the replay make them with these functions, and nothing else does.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import pandas as pd

from makeusrich.contract import quantile_column
from makeusrich.store.track_schema import GAP, LIVE, SERVED, SHADOW, as_nanoseconds, in_order, month_of


def forecast_rows(
    origin: pd.Timestamp,
    step: pd.Timedelta,
    version: str,
    last_close: float,
    forecast: Sequence[float],
    quantiles: np.ndarray | None,
    levels: Sequence[float] | None,
    recorded_at: datetime,
    kind: str = LIVE,
    reason: str = "",
) -> pd.DataFrame:
    """The rows of one forecast: `forecast` [horizon] prices and `quantiles` [horizon, levels] (or None); a
    shadow's role goes in `reason`."""
    prices = np.asarray(forecast, dtype=np.float64).reshape(-1)
    horizon = prices.size
    extra: dict[str, np.ndarray] = {"forecast": prices}
    if quantiles is not None and levels:
        values = np.asarray(quantiles, dtype=np.float64).reshape(horizon, len(levels))
        extra |= {quantile_column(level): values[:, i] for i, level in enumerate(levels)}
    return _rows(origin, step, horizon, version, kind, reason, last_close, recorded_at, extra)


def gap_rows(
    origin: pd.Timestamp,
    step: pd.Timedelta,
    horizon: int,
    version: str | None,
    reason: str,
    last_close: float | None,
    recorded_at: datetime,
) -> pd.DataFrame:
    """The rows of an origin with no forecast: never filled in later, so the record shows the hole."""
    return _rows(origin, step, horizon, version or "", GAP, reason, last_close, recorded_at)


def _rows(
    origin: pd.Timestamp,
    step: pd.Timedelta,
    horizon: int,
    version: str,
    kind: str,
    reason: str,
    last_close: float | None,
    recorded_at: datetime,
    extra: dict[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    steps = np.arange(1, horizon + 1, dtype=np.int64)
    nothing = np.full(horizon, np.nan)
    origins = pd.DatetimeIndex([origin] * horizon).as_unit("ns")
    text = np.array([version, kind, reason], dtype=object)
    data = {  # built in BASE_COLUMNS' dtypes (a tracker makes these rows for every pair after every close)
        "origin": origins,
        "step": steps,
        "target": origins + step * steps,
        "version": np.repeat(text[:1], horizon),
        "kind": np.repeat(text[1:2], horizon),
        "reason": np.repeat(text[2:], horizon),
        "persistence": np.full(horizon, np.nan if last_close is None else float(last_close)),
        "forecast": nothing,
        "recorded_at": pd.DatetimeIndex([pd.Timestamp(recorded_at)] * horizon).as_unit("ns"),
        "actual": nothing,
        "error": nothing,
        "persistence_error": nothing,
        "direction_hit": nothing,
        "scored_at": pd.DatetimeIndex([pd.NaT] * horizon, tz="UTC").as_unit("ns"),
        **(extra or {}),  # the forecast and its quantile columns: one frame built once, not columns added
    }
    return pd.DataFrame(data)


# A row recorded more than this after now was written by a clock ahead of this one (a few seconds between
# hosts are not a clock gone wrong).
AHEAD = pd.Timedelta(minutes=1)


def written_ahead(rows: pd.DataFrame, now: datetime) -> np.ndarray:
    """Which rows a clock ahead of `now` wrote: recorded after now. Their forecasts or gaps speak of candles
    that had not closed, so they stand for nothing the tracker saw."""
    return np.asarray(as_nanoseconds(rows["recorded_at"]) > (pd.Timestamp(now) + AHEAD).value)


def slots(rows: pd.DataFrame) -> pd.MultiIndex:
    """What each row stands for at its origin: the served record (a forecast or a gap, one of them per origin), a
    shadow of one role, or a replayed forecast."""
    kind = rows["kind"].astype(str)
    slot = kind.where(kind != GAP, LIVE).where(kind != SHADOW, SHADOW + ":" + rows["reason"].astype(str))
    return pd.MultiIndex.from_arrays([rows["origin"], slot])


def append_rows(rows: pd.DataFrame, new: pd.DataFrame, now: datetime | None = None) -> pd.DataFrame:
    """`new` rows after `rows`, leaving out what an origin already holds (its served record, each shadow role:
    recorded once), unless the held row was written ahead of `now` (when given): then the new row replaces it."""
    if new.empty:
        return rows
    order = ["origin", "step"]
    if not rows.empty and new["origin"].min() > rows["origin"].iloc[-1]:  # the usual case: the next close
        return pd.concat([rows, new if in_order(new) else new.sort_values(order, kind="stable")], ignore_index=True)
    if now is not None and not rows.empty:
        rows = rows[~(rows["origin"].isin(new["origin"]).to_numpy() & written_ahead(rows, now))]
    fresh = new[~slots(new).isin(slots(rows))] if not rows.empty else new
    if fresh.empty:
        return rows
    parts = [frame for frame in (rows, fresh) if not frame.empty]
    combined = pd.concat(parts, ignore_index=True) if len(parts) > 1 else fresh.reset_index(drop=True)
    return combined.sort_values(order, kind="stable").reset_index(drop=True)


def closes_by_moment(candles: pd.DataFrame, interval_step: pd.Timedelta) -> pd.Series:
    """Close prices indexed by the moment each candle closed."""
    return pd.Series(candles["close"].to_numpy(dtype=np.float64), index=candles["open_time"] + interval_step)


def score_rows(rows: pd.DataFrame, closes: pd.Series, now: datetime) -> tuple[pd.DataFrame, int]:
    """Fill in what happened for rows whose target candle has closed and is in `closes` (from
    `closes_by_moment`): the actual close, both errors and whether the direction was right (NaN when the price
    did not move). Returns the rows and how many were scored now."""
    close_at = np.asarray(closes.index, dtype="datetime64[ns]").astype(np.int64)
    order = np.argsort(close_at, kind="stable")
    close_at, close = close_at[order], closes.to_numpy(dtype=np.float64)[order]
    targets = as_nanoseconds(rows["target"])
    waiting = (rows["kind"].to_numpy(dtype=object) != GAP) & np.isnan(rows["actual"].to_numpy(dtype=np.float64))
    pending = waiting & np.isin(targets, close_at)
    count = int(pending.sum())
    if count == 0:
        return rows, 0
    actual = np.full(len(rows), np.nan)
    actual[pending] = close[np.searchsorted(close_at, targets[pending])]
    forecast = rows["forecast"].to_numpy(dtype=np.float64)
    last = rows["persistence"].to_numpy(dtype=np.float64)
    moved = np.sign(actual - last)
    with np.errstate(invalid="ignore"):
        hit = np.where(moved == 0, np.nan, (np.sign(forecast - last) == moved).astype(np.float64))

    def filled(column: str, values: np.ndarray) -> np.ndarray:  # whole columns: a masked .loc per column is slower
        return np.where(pending, values, rows[column].to_numpy(dtype=np.float64))

    scored = rows.assign(
        actual=filled("actual", actual),
        error=filled("error", forecast - actual),
        persistence_error=filled("persistence_error", last - actual),
        direction_hit=filled("direction_hit", hit),
        scored_at=rows["scored_at"].mask(pending, pd.Timestamp(now).tz_convert("UTC")),
    )
    return scored, count


def last_seen_origin(rows: pd.DataFrame, newest: pd.Timestamp, now: datetime) -> pd.Timestamp | None:
    """The newest origin recorded live or as a gap, up to `newest` (the newest close by the clock at `now`): a
    replayed row never stands for a close the tracker saw, and a row a clock ahead wrote (its origin after
    `newest`, or recorded after `now`) must not hold the record back: its origins are recorded again."""
    origins = as_nanoseconds(rows["origin"])
    seen = rows["kind"].isin(SERVED).to_numpy() & (origins <= newest.value) & ~written_ahead(rows, now)
    if not seen.any():
        return None
    return pd.Timestamp(int(origins[seen].max()), tz="UTC")


def future_origins(rows: pd.DataFrame, newest: pd.Timestamp, now: datetime) -> int:
    """How many origins a clock ahead wrote: after the newest close by the clock, or recorded after `now`."""
    origins = as_nanoseconds(rows["origin"])
    return int(np.unique(origins[(origins > newest.value) | written_ahead(rows, now)]).size)


def oldest_unscored_target(rows: pd.DataFrame, since: pd.Timestamp) -> pd.Timestamp | None:
    """The oldest target from `since` on whose forecast still waits for its candle (gaps are never scored)."""
    targets = as_nanoseconds(rows["target"])
    waiting = (rows["kind"].to_numpy() != GAP) & np.isnan(rows["actual"].to_numpy(dtype=np.float64))
    waiting &= targets >= since.value
    return pd.Timestamp(int(targets[waiting].min()), tz="UTC") if waiting.any() else None


def update_rows(
    held: pd.DataFrame, new: list[pd.DataFrame], closes: pd.Series, now: datetime
) -> tuple[pd.DataFrame, set[str], int]:
    """A round's change to a pair's rows: `new` (forecasts and gaps) after the held rows, then every row whose target
    has closed scored. Returns the rows, the months whose files changed, and how many rows were scored now."""
    months = {month_of(pd.Timestamp(origin)) for rows in new for origin in pd.unique(rows["origin"])}
    for rows in new:
        held = append_rows(held, rows, now)
    held, scored = score_rows(held, closes, now)
    if scored:
        touched = held["scored_at"] == pd.Timestamp(now)
        months |= set(held.loc[touched, "origin"].map(month_of))
    return held, months, scored
