"""Candles from CSV files in the kline layout of the bundled data, and the bundled sample itself."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd

from makeusrich.errors import CandleError
from makeusrich.market.candles import candles_from_table

SAMPLE_SYMBOL = "BTCUSDT"
SAMPLE_INTERVAL = "1h"
SAMPLE_FILE = "BTCUSDT-1h-20170817-20220615.csv.gz"
SAMPLE_ENDS = "2022-06-15"  # its newest candle closes at 01:00 UTC that day


def read_candle_csv(path: str | Path, interval: str | None = None) -> pd.DataFrame:
    """Read a CSV with the Binance kline field names as header (gzip allowed); raw, not yet cleaned."""
    source = str(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise CandleError(f"candle file {source} does not exist") from None
    except pd.errors.EmptyDataError:
        raise CandleError(f"candle file {source} is empty; it needs a header row and candles") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError) as exc:
        raise CandleError(f"candle file {source} is not a readable CSV: {exc}") from None
    if raw.empty:
        raise CandleError(f"candle file {source} has a header but no candles")
    return candles_from_table(raw.replace("", None), source, interval)


def sample_path() -> Path:
    """The bundled real BTC/USDT hourly candles (see data/NOTICE.md for provenance and credit)."""
    return Path(str(resources.files("makeusrich.market") / "data" / SAMPLE_FILE))


def sample_covers(symbol: str, interval: str) -> bool:
    return (symbol, interval) == (SAMPLE_SYMBOL, SAMPLE_INTERVAL)


def read_sample(symbol: str, interval: str) -> pd.DataFrame:
    if not sample_covers(symbol, interval):
        raise CandleError(
            f"the bundled sample holds {SAMPLE_SYMBOL} {SAMPLE_INTERVAL} candles only, not {symbol} {interval}; "
            "use --source binance or --source file:PATH"
        )
    return read_candle_csv(sample_path(), interval)
