"""Candle validation and the CSV/sample sources, on the real bundled data and small hand-made tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from makeusrich.errors import CandleError
from makeusrich.market import CANDLE_DTYPES, KLINE_FIELDS, clean_candles, find_gaps, read_candle_csv, read_sample

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "BTCUSDT-1h-20240101-20240102.csv"
HOUR = 3_600_000


def table(closes: list[float], start_ms: int = 1_704_067_200_000, step: int = HOUR) -> pd.DataFrame:
    """A kline table of flat-ish candles around the given closes (open = previous close)."""
    opens = [closes[0], *closes[:-1]]
    rows = {
        "open_time": [start_ms + i * step for i in range(len(closes))],
        "open": opens,
        "high": [max(o, c) * 1.001 for o, c in zip(opens, closes, strict=True)],
        "low": [min(o, c) * 0.999 for o, c in zip(opens, closes, strict=True)],
        "close": closes,
        "volume": [10.0] * len(closes),
    }
    return pd.DataFrame(rows)


def write_csv(tmp_path: Path, frame: pd.DataFrame, name: str = "c.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_golden_sample_reads_exactly() -> None:
    frame = read_candle_csv(GOLDEN)
    assert list(frame.columns) == list(CANDLE_DTYPES)
    assert {c: str(t) for c, t in frame.dtypes.items()} == CANDLE_DTYPES
    assert len(frame) == 48
    assert frame["open_time"].iloc[0] == pd.Timestamp("2024-01-01 00:00", tz="UTC")
    raw = pd.read_csv(GOLDEN)
    assert np.array_equal(frame["close"].to_numpy(), raw["close"].to_numpy())
    assert frame["trades"].iloc[0] == raw["number_of_trades"].iloc[0]
    assert (frame["close_time"] - frame["open_time"] == pd.Timedelta(milliseconds=HOUR - 1)).all()
    clean, report = clean_candles(frame, "1h")
    assert len(clean) == 48 and not report.gaps and not report.broken_dropped


def test_bundled_sample_keeps_its_real_quirks_visible() -> None:
    frame = read_sample("BTCUSDT", "1h")
    assert len(frame) == 42_287
    assert frame["trades"].isna().sum() > 0  # empty before 2020-08-01: never invented
    clean, report = clean_candles(frame, "1h")
    assert report.broken_dropped == [pd.Timestamp("2017-08-17 04:00", tz="UTC")]
    assert len(report.gaps) == 10 and report.missing_candles == 22
    assert max(g.missing for g in report.gaps) <= 5
    assert len(clean) == 42_286
    assert "10 gap(s), 22 candle(s) missing, not filled" in report.summary()


def test_sample_only_for_its_own_pair() -> None:
    with pytest.raises(CandleError, match="holds BTCUSDT 1h candles only"):
        read_sample("ETHUSDT", "1h")


def test_duplicates_unsorted_and_gaps() -> None:
    frame = read_candle_csv(GOLDEN)
    shuffled = pd.concat([frame.iloc[10:], frame.iloc[:10], frame.iloc[[5]]]).drop(index=[20, 21, 22])
    clean, report = clean_candles(shuffled, "1h")
    assert report.unsorted and report.duplicates_dropped == 1
    assert clean["open_time"].is_monotonic_increasing and clean["open_time"].is_unique
    assert [(g.start, g.missing) for g in report.gaps] == [(frame["open_time"].iloc[20], 3)]
    assert len(clean) == 45  # the gap is reported, not filled


def test_broken_bars_are_dropped_and_named() -> None:
    frame = read_candle_csv(GOLDEN)
    broken = frame.copy()
    broken.loc[3, "high"] = broken.loc[3, "close"] - 1  # high below the close
    broken.loc[7, "low"] = -1.0  # non-positive price
    broken.loc[11, "open"] = broken.loc[11, "open"] * 3  # a spike no hour of BTC ever made
    broken.loc[11, "high"] = broken.loc[11, "open"]
    clean, report = clean_candles(broken, "1h")
    assert report.broken_dropped == [frame["open_time"].iloc[i] for i in (3, 7, 11)]
    assert len(clean) == 45 and len(report.gaps) == 3


def test_nan_prices_are_refused_with_the_time() -> None:
    frame = read_candle_csv(GOLDEN)
    frame.loc[4, "close"] = np.nan
    with pytest.raises(CandleError, match="1 candle.*NaN.*2024-01-01 04:00Z"):
        clean_candles(frame, "1h")


def test_misaligned_candles_are_dropped() -> None:
    frame = read_candle_csv(GOLDEN)
    frame.loc[6, "open_time"] += pd.Timedelta(minutes=30)
    clean, report = clean_candles(frame, "1h")
    assert report.misaligned_dropped == 1 and len(clean) == 47


def test_find_gaps_is_vectorised_and_exact() -> None:
    times = pd.Series(pd.to_datetime([0, HOUR, 4 * HOUR, 5 * HOUR, 7 * HOUR], unit="ms", utc=True))
    gaps = find_gaps(times, HOUR)
    assert [(g.start.value // 1_000_000, g.missing) for g in gaps] == [(2 * HOUR, 2), (6 * HOUR, 1)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty"),
        (",".join(KLINE_FIELDS) + "\n", "has a header but no candles"),
        ("open_time,open,close\n1,2,3\n", "missing column\\(s\\) high, low, volume"),
        (
            "open_time,open,high,low,close,volume\n1704067200000,42283.58,42554.57,42261.02,abc,1271.68\n",
            "column 'close' holds 'abc' in data row 1",
        ),
        ("open_time,open,high,low,close,volume\n,1,1,1,1,1\n", "open_time is empty in data row 1"),
    ],
)
def test_bad_csv_files_get_one_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(CandleError, match=message):
        read_candle_csv(path, "1h")


def test_missing_file() -> None:
    with pytest.raises(CandleError, match="does not exist"):
        read_candle_csv("/nonexistent/candles.csv")


def test_minimal_csv_gets_close_time_from_the_interval(tmp_path: Path) -> None:
    frame = read_candle_csv(write_csv(tmp_path, table([100.0, 101.0, 102.0])), "1h")
    assert frame["close_time"].iloc[0] == frame["open_time"].iloc[0] + pd.Timedelta(milliseconds=HOUR - 1)
    assert frame["trades"].isna().all()


def test_empty_price_cell_is_refused_not_invented(tmp_path: Path) -> None:
    frame = table([100.0, 101.0, 102.0]).astype(object)
    frame.loc[1, "close"] = ""
    raw = read_candle_csv(write_csv(tmp_path, frame), "1h")
    with pytest.raises(CandleError, match="NaN prices"):
        clean_candles(raw, "1h", "c.csv")
