"""Contract 3's track rows (`<ns>/<pair>/track/<YYYY-MM>.parquet`) as pure functions over pandas frames: which
origins are due, the rows of a forecast or of a gap, and the scoring of rows whose target candle has closed.
The tracker writes them; the dashboard reads them.

One row per origin and step. Times are the moments candles close, in UTC (as everywhere users read them):
`origin` is the close of the last candle the model saw, `target` the close of the candle it forecast. A row's
`kind` is `live` (recorded when its origin closed), `replayed` (made later from stored candles: never counted
as live) or `gap` (no forecast: the reason says why). Quantiles sit in one column per level (`q0.05`, ...),
so versions with other levels share a month file.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import pandas as pd

from makeusrich.contract import quantile_column
from makeusrich.errors import StoreError

LIVE, REPLAYED, GAP = "live", "replayed", "gap"
TIME_COLUMNS = ("origin", "target", "recorded_at", "scored_at")
BASE_COLUMNS: dict[str, str] = {
    "origin": "datetime64[ns, UTC]",
    "step": "int64",
    "target": "datetime64[ns, UTC]",
    "version": "object",
    "kind": "object",
    "reason": "object",
    "persistence": "float64",
    "forecast": "float64",
    "recorded_at": "datetime64[ns, UTC]",
    "actual": "float64",
    "error": "float64",
    "persistence_error": "float64",
    "direction_hit": "float64",
    "scored_at": "datetime64[ns, UTC]",
}


def empty_rows() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in BASE_COLUMNS.items()})


def level_columns(rows: pd.DataFrame) -> list[tuple[float, str]]:
    """(level, column) of every quantile column in a frame of rows, lowest level first."""
    found = [(float(c[1:]), c) for c in rows.columns if c.startswith("q") and c[1:].replace(".", "", 1).isdigit()]
    return sorted(found)


def month_of(moment: pd.Timestamp) -> str:
    """The month file an origin's rows belong to."""
    return f"{moment.year:04d}-{moment.month:02d}"


def month_rows(rows: pd.DataFrame, months: set[str]) -> list[tuple[str, pd.DataFrame]]:
    """Each of `months` with its rows, as its file holds them: what a writer puts back after a change."""
    month = rows["origin"].to_numpy(dtype="datetime64[ns]").astype("datetime64[M]")
    return [(m, rows[month == np.datetime64(m, "M")].reset_index(drop=True)) for m in sorted(months)]


def month_start(moment: pd.Timestamp) -> pd.Timestamp:
    """The first moment of the month file holding `moment`: a reader that keeps whole months from here can
    rewrite any of them without losing a row."""
    return pd.Timestamp(year=moment.year, month=moment.month, day=1, tz="UTC")


def due_origins(last_recorded: pd.Timestamp | None, newest: pd.Timestamp, step: pd.Timedelta) -> list[pd.Timestamp]:
    """Origins to record now, oldest first: every close after the last recorded one up to `newest` (the newest
    close by the clock). A tracker's first round starts at `newest`: the past is filled only by a replay."""
    if last_recorded is None:
        return [newest]
    count = int((newest - last_recorded) // step)
    return [last_recorded + step * (i + 1) for i in range(max(count, 0))]


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
) -> pd.DataFrame:
    """The rows of one forecast: `forecast` [horizon] prices and `quantiles` [horizon, levels] (or None)."""
    prices = np.asarray(forecast, dtype=np.float64).reshape(-1)
    horizon = prices.size
    extra: dict[str, np.ndarray] = {"forecast": prices}
    if quantiles is not None and levels:
        values = np.asarray(quantiles, dtype=np.float64).reshape(horizon, len(levels))
        extra |= {quantile_column(level): values[:, i] for i, level in enumerate(levels)}
    return _rows(origin, step, horizon, version, kind, "", last_close, recorded_at, extra)


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


def checked_rows(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """Rows read from a month file, in the dtypes above; StoreError naming what is missing or wrong."""
    missing = [name for name in BASE_COLUMNS if name not in frame.columns]
    if missing:
        raise StoreError(
            f"{where} lacks the track columns {', '.join(missing)}; move it aside, the tracker starts anew"
        )
    wrong = {name: dtype for name, dtype in BASE_COLUMNS.items() if str(frame[name].dtype) != dtype}
    try:  # a tracker reads its months every round: convert and sort only what needs it
        rows = frame.astype(wrong) if wrong else frame
    except (ValueError, TypeError) as exc:
        raise StoreError(f"{where} holds track rows of the wrong type ({str(exc)[:120]})") from None
    origin, step = _nanoseconds(rows["origin"]), rows["step"].to_numpy()
    ordered = (origin[1:] > origin[:-1]) | ((origin[1:] == origin[:-1]) & (step[1:] > step[:-1]))
    if not ordered.all():
        rows = rows.sort_values(["origin", "step"], kind="stable")
    return rows.reset_index(drop=True)


def append_rows(rows: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """`new` rows after `rows`, leaving out any origin already recorded (an origin is recorded once)."""
    if new.empty:
        return rows
    order = ["origin", "step"]
    if not rows.empty and new["origin"].min() > rows["origin"].iloc[-1]:  # the usual case: the next close
        return pd.concat([rows, new.sort_values(order, kind="stable")], ignore_index=True)
    fresh = new[~new["origin"].isin(rows["origin"])] if not rows.empty else new
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
    pending = ((rows["kind"] != GAP) & rows["actual"].isna() & rows["target"].isin(closes.index)).to_numpy()
    count = int(pending.sum())
    if count == 0:
        return rows, 0
    actual = np.full(len(rows), np.nan)
    actual[pending] = closes.reindex(rows["target"][pending]).to_numpy()
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


def _nanoseconds(column: pd.Series) -> np.ndarray:
    return column.to_numpy(dtype="datetime64[ns]").astype(np.int64)


def last_seen_origin(rows: pd.DataFrame) -> pd.Timestamp | None:
    """The newest origin recorded live or as a gap: a replayed row never stands for a close the tracker saw."""
    seen = rows["kind"].to_numpy() != REPLAYED
    if not seen.any():
        return None
    return pd.Timestamp(int(_nanoseconds(rows["origin"])[seen].max()), tz="UTC")


def oldest_unscored_target(rows: pd.DataFrame, since: pd.Timestamp) -> pd.Timestamp | None:
    """The oldest target from `since` on whose forecast still waits for its candle (gaps are never scored)."""
    targets = _nanoseconds(rows["target"])
    waiting = (rows["kind"].to_numpy() != GAP) & np.isnan(rows["actual"].to_numpy(dtype=np.float64))
    waiting &= targets >= since.value
    return pd.Timestamp(int(targets[waiting].min()), tz="UTC") if waiting.any() else None
