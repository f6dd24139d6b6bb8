"""The candle table every source produces, and the validation real exchange data needs.

A candle frame has one row per candle, oldest first, with the columns of `CANDLE_DTYPES`. Times are
timezone-aware UTC timestamps. Gaps are reported, never filled: a missing hour stays missing.

Frames are keyed by `open_time`, as Binance sends them; what people read names a candle by the moment it closes
(`close_moments`): the 1h candle from 00:00 to 01:00 is the 01:00 candle, and its close is the price at 01:00.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from makeusrich.contract import FIELDS, INTERVAL_MS
from makeusrich.errors import CandleError

# The eleven fields of a Binance kline row (the twelfth, "ignore", is dropped), as in the CSV files.
KLINE_FIELDS: tuple[str, ...] = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_asset_volume",
    "number_of_trades",
    "taker_buy_base_asset_volume",
    "taker_buy_quote_asset_volume",
)

OHLCV: tuple[str, ...] = FIELDS  # the model's input order (contract 2)

CANDLE_DTYPES: dict[str, str] = {
    "open_time": "datetime64[ns, UTC]",
    "open": "float64",
    "high": "float64",
    "low": "float64",
    "close": "float64",
    "volume": "float64",
    "close_time": "datetime64[ns, UTC]",
    "quote_volume": "float64",
    "trades": "Int64",
}

_RENAMES = {"quote_asset_volume": "quote_volume", "number_of_trades": "trades"}
REQUIRED_FIELDS: tuple[str, ...] = ("open_time", *OHLCV)

# A spike is a log move beyond both of these; see broken_bars.
SPIKE_MIN_LOG = 0.5
SPIKE_FACTOR = 25.0


def interval_ms(interval: str) -> int:
    """Length of one candle in milliseconds; a clear error for an interval we do not support."""
    try:
        return INTERVAL_MS[interval]
    except KeyError:
        raise CandleError(f"unsupported interval {interval!r}: use one of {', '.join(INTERVAL_MS)}") from None


def close_moments(open_times: pd.Series, interval: str) -> pd.Series:
    """When each candle closes (open time + interval): the time that names a candle wherever people read it.
    Binance's own `close_time` is a millisecond earlier."""
    return open_times + pd.Timedelta(milliseconds=interval_ms(interval))


def empty_candles() -> pd.DataFrame:
    """A candle frame with no rows and the right dtypes."""
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in CANDLE_DTYPES.items()})


def _numeric(raw: pd.DataFrame, column: str, source: str) -> pd.Series:
    """Parse one column as numbers, naming the first value that is not one."""
    values = pd.to_numeric(raw[column], errors="coerce")
    bad = values.isna() & raw[column].notna() & (raw[column].astype(str).str.strip() != "")
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise CandleError(
            f"{source}: column {column!r} holds {raw[column].iloc[row]!r} in data row {row + 1}, "
            "which is not a number; fix or remove that row"
        )
    return values.astype("float64")


def candles_from_table(raw: pd.DataFrame, source: str, interval: str | None = None) -> pd.DataFrame:
    """Build a candle frame from a table with the kline field names (CSV files, Binance rows).
    Prices and volumes may arrive as strings (Binance sends them so); times are epoch milliseconds.
    `close_time` is derived from the interval when the table lacks it."""
    missing = [name for name in REQUIRED_FIELDS if name not in raw.columns]
    if missing:
        raise CandleError(
            f"{source}: missing column(s) {', '.join(missing)}; expected the Binance kline fields "
            f"{', '.join(KLINE_FIELDS)}"
        )
    if raw.empty:
        return empty_candles()
    open_ms = _numeric(raw, "open_time", source)
    if open_ms.isna().any():
        row = int(np.flatnonzero(open_ms.isna().to_numpy())[0])
        raise CandleError(f"{source}: open_time is empty in data row {row + 1}")
    out = pd.DataFrame({"open_time": pd.to_datetime(open_ms.astype("int64"), unit="ms", utc=True)})
    for column in OHLCV:
        out[column] = _numeric(raw, column, source).to_numpy()
    if "close_time" in raw.columns:
        close_ms = _numeric(raw, "close_time", source)
    elif interval is not None:
        close_ms = open_ms + interval_ms(interval) - 1
    else:
        raise CandleError(f"{source}: missing column close_time and no interval to derive it from")
    out["close_time"] = pd.to_datetime(close_ms.astype("int64"), unit="ms", utc=True).to_numpy()
    for field_name, column in _RENAMES.items():
        out[column] = _numeric(raw, field_name, source).to_numpy() if field_name in raw.columns else np.nan
    out["trades"] = out["trades"].round().astype("Int64")
    return out.astype(CANDLE_DTYPES).reset_index(drop=True)


def candles_from_klines(rows: Sequence[Sequence[Any]], source: str = "binance") -> pd.DataFrame:
    """Candle frame from Binance's raw kline rows (lists of 12 values). Rows that all parse as numbers (what
    Binance sends) take a numpy path, many times quicker for the few new candles a feed gets each close; any
    other input takes the table path, which names the value at fault."""
    fast = _klines_frame(rows)
    if fast is not None:
        return fast
    table = pd.DataFrame([list(row[: len(KLINE_FIELDS)]) for row in rows], columns=list(KLINE_FIELDS))
    return candles_from_table(table, source)


def _klines_frame(rows: Sequence[Sequence[Any]]) -> pd.DataFrame | None:
    """The candle frame of well-formed kline rows, or None when one is not (short, empty, NaN, not a number)."""
    width = len(KLINE_FIELDS)
    try:
        values = np.array([[float(v) for v in row[:width]] for row in rows], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if values.ndim != 2 or values.shape[1] != width or np.isnan(values).any():
        return None
    column = dict(zip(KLINE_FIELDS, values.T, strict=True))
    out = {
        "open_time": pd.to_datetime(column["open_time"].astype("int64"), unit="ms", utc=True),
        **{name: column[name] for name in OHLCV},
        "close_time": pd.to_datetime(column["close_time"].astype("int64"), unit="ms", utc=True),
        "quote_volume": column["quote_asset_volume"],
        "trades": pd.array(column["number_of_trades"].round().astype("int64"), dtype="Int64"),
    }
    return pd.DataFrame(out)  # the dtypes of CANDLE_DTYPES already: an astype would double the time


@dataclass(frozen=True)
class Gap:
    """Candles missing between two present ones: `missing` candles starting at `start`."""

    start: pd.Timestamp
    missing: int


@dataclass
class CandleReport:
    """What validation found and did: counts and the places a user may want to check."""

    rows_in: int = 0
    rows_out: int = 0
    unsorted: bool = False
    duplicates_dropped: int = 0
    broken_dropped: list[pd.Timestamp] = field(default_factory=list)
    misaligned_dropped: int = 0
    gaps: list[Gap] = field(default_factory=list)
    step_ms: int = 0  # the interval, so that the summary names candles by their close

    @property
    def missing_candles(self) -> int:
        return sum(gap.missing for gap in self.gaps)

    def summary(self) -> str:
        parts = [f"{self.rows_out} candles"]
        if self.unsorted:
            parts.append("rows were out of order (sorted)")
        if self.duplicates_dropped:
            parts.append(f"{self.duplicates_dropped} duplicate(s) dropped")
        if self.broken_dropped:
            step = pd.Timedelta(milliseconds=self.step_ms)
            first = ", ".join(f"{t + step:%Y-%m-%d %H:%M}Z" for t in self.broken_dropped[:3])
            parts.append(f"{len(self.broken_dropped)} broken bar(s) dropped (closing {first})")
        if self.misaligned_dropped:
            parts.append(f"{self.misaligned_dropped} candle(s) off the interval grid dropped")
        if self.gaps:
            parts.append(f"{len(self.gaps)} gap(s), {self.missing_candles} candle(s) missing, not filled")
        return "; ".join(parts)


def find_gaps(open_times: pd.Series, step_ms: int) -> list[Gap]:
    """Gaps in a sorted, duplicate-free series of open times (pure, vectorised)."""
    if len(open_times) < 2:
        return []
    ms = open_times.astype("int64").to_numpy() // 1_000_000
    steps = np.diff(ms) // step_ms
    where = np.flatnonzero(steps > 1)
    return [
        Gap(start=pd.Timestamp(int(ms[i]) + step_ms, unit="ms", tz="UTC"), missing=int(steps[i] - 1)) for i in where
    ]


def broken_bars(frame: pd.DataFrame) -> np.ndarray:
    """Boolean mask of bars that cannot be real.

    Impossible values (non-positive prices, high/low not bounding open and close, negative volume), and
    spikes: a bar whose high/low range, or whose open's jump from the previous close, is both above
    `SPIKE_MIN_LOG` and `SPIKE_FACTOR` times the series' median range. The bundled data's first row (open
    16,199.91 against a close of 4,308.83) is such a spike; a real hourly crash is not.
    """
    o, h, lo, c, v = (frame[name].to_numpy(dtype="float64") for name in OHLCV)
    impossible = (np.minimum.reduce([o, h, lo, c]) <= 0) | (h < np.maximum(o, c)) | (lo > np.minimum(o, c)) | (v < 0)
    if len(frame) < 3:
        return np.asarray(impossible)
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = np.log(h / lo)
        jump = np.abs(np.log(o[1:] / c[:-1]))
    typical = float(np.median(spread[~impossible])) if (~impossible).any() else 0.0
    limit = max(SPIKE_MIN_LOG, SPIKE_FACTOR * typical)
    spikes = spread > limit
    spikes[1:] |= jump > limit
    return np.asarray(impossible | spikes)


def clean_candles(frame: pd.DataFrame, interval: str, source: str = "candles") -> tuple[pd.DataFrame, CandleReport]:
    """Sort, drop duplicates and impossible bars, and report gaps; refuse NaN prices outright.
    Duplicated open times keep the last row (a later fetch supersedes an earlier one). Broken bars are
    dropped and named in the report, which turns them into reported gaps rather than invented values."""
    step = interval_ms(interval)
    report = CandleReport(rows_in=len(frame), step_ms=step)
    nan_rows = frame[list(OHLCV)].isna().any(axis=1).to_numpy()
    if nan_rows.any():
        first = frame["open_time"].iloc[int(np.flatnonzero(nan_rows)[0])]
        raise CandleError(
            f"{source}: {int(nan_rows.sum())} candle(s) have empty or NaN prices or volume, the first at "
            f"{first:%Y-%m-%d %H:%M}Z; re-fetch the data or remove those rows"
        )
    out = frame
    if not out["open_time"].is_monotonic_increasing:
        report.unsorted = True
        out = out.sort_values("open_time", kind="stable")
    dup = out["open_time"].duplicated(keep="last").to_numpy()
    report.duplicates_dropped = int(dup.sum())
    out = out[~dup]
    ms = out["open_time"].astype("int64").to_numpy() // 1_000_000
    offset = ms % step
    if len(offset):
        # Candles sit on a grid (open times are multiples of the interval, weekly ones shifted to Mondays).
        usual = np.bincount((offset // 1000).astype(np.int64)).argmax() * 1000
        misaligned = offset != usual
        report.misaligned_dropped = int(misaligned.sum())
        out = out[~misaligned]
    broken = broken_bars(out)
    report.broken_dropped = [pd.Timestamp(t) for t in out["open_time"][broken]]
    out = out[~broken].reset_index(drop=True)
    report.gaps = find_gaps(out["open_time"], step)
    report.rows_out = len(out)
    return out, report
