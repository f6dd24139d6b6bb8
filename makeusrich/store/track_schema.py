"""The track record's rows (contract 3): the schema of `<ns>/<pair>/track/<YYYY-MM>.parquet`.

One row per origin and step. Times are the moments candles close, in UTC (as everywhere users read them):
`origin` is the close of the last candle the model saw, `target` the close of the candle it forecast. A row's
`kind` is `live` (recorded when its origin closed), `replayed` (made later from stored candles: never counted
as live), `gap` (no forecast: the reason says why) or `shadow` (what another version would have forecast at the
same origin: the one the served version replaced, or the baseline, named in `reason`; evidence for the live
decisions, never the served record). Live and gap rows are the served record: one of them per origin. Quantiles
sit in one column per level (`q0.05`, ...), so versions with other levels share a month file.

Here: the columns and their dtypes, which month file a row belongs to, and the check of a file's rows. The
files themselves are read and written by makeusrich.store.track.TrackFiles; what goes into the rows, and when,
is the tracker's business (makeusrich.track). Apart from the files because it needs pandas, which the operator
(reading track.json only) does without.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from makeusrich.errors import StoreError

LIVE, REPLAYED, GAP, SHADOW = "live", "replayed", "gap", "shadow"
SERVED = (LIVE, GAP)  # the kinds of the served record: one per origin
REPLACED, BASELINE = "replaced", "baseline"  # a shadow's role, in its `reason`
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


def checked_rows(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """Rows read from a month file, in the dtypes above; StoreError naming what is missing or wrong."""
    missing = [name for name in BASE_COLUMNS if name not in frame.columns]
    if missing:
        raise StoreError(
            f"{where} lacks the track columns {', '.join(missing)}; move it aside, the tracker starts anew"
        )
    dtypes = frame.dtypes.to_dict()
    wrong = {name: dtype for name, dtype in BASE_COLUMNS.items() if str(dtypes[name]) != dtype}
    try:  # a tracker reads its months every round: convert and sort only what needs it
        rows = frame.astype(wrong) if wrong else frame
    except (ValueError, TypeError) as exc:
        raise StoreError(f"{where} holds track rows of the wrong type ({str(exc)[:120]})") from None
    if not in_order(rows):
        rows = rows.sort_values(["origin", "step"], kind="stable")
    return rows.reset_index(drop=True)


def in_order(rows: pd.DataFrame) -> bool:
    """Whether rows are in (origin, step) order: checked on the columns, as sorting even a few rows costs more."""
    origin, step = as_nanoseconds(rows["origin"]), rows["step"].to_numpy()
    return bool(((origin[1:] > origin[:-1]) | ((origin[1:] == origin[:-1]) & (step[1:] >= step[:-1]))).all())


def as_nanoseconds(column: pd.Series) -> np.ndarray:
    """A time column as int64 nanoseconds since the epoch: the form masks and comparisons over rows use."""
    return column.to_numpy(dtype="datetime64[ns]").astype(np.int64)
