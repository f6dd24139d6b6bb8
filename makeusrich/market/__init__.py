"""Candles: where they come from and how they are checked, one frame layout for every source.

    candles    the candle frame: its columns, close moments, gaps and broken bars, cleaning
    files      CSV files in Binance's kline layout, and the bundled BTC/USDT sample
    source     a command's candle source (binance, sample, file:PATH, auto) and a training run's lookback
    feed       recent candles for what refreshes every few seconds (the dashboard, the tracker)
    exchange   what is known of Binance's REST API without python-binance
    binance    the client itself: python-binance's one room, loaded only by the code that fetches

Callers import from this package; makeusrich.market.binance is imported by name, by the code that fetches.
"""

from makeusrich.market.candles import (
    CANDLE_DTYPES,
    KLINE_FIELDS,
    OHLCV,
    candles_from_klines,
    candles_from_table,
    clean_candles,
    close_moments,
    empty_candles,
    find_gaps,
    interval_ms,
)
from makeusrich.market.exchange import DEFAULT_RETRIES
from makeusrich.market.feed import CandleFeed
from makeusrich.market.files import SAMPLE_ENDS, read_candle_csv, read_sample, sample_path
from makeusrich.market.source import (
    CandleSet,
    Source,
    last_closed_open_ms,
    load_candles,
    merge_candles,
)

__all__ = [
    "CANDLE_DTYPES",
    "DEFAULT_RETRIES",
    "KLINE_FIELDS",
    "OHLCV",
    "SAMPLE_ENDS",
    "CandleFeed",
    "CandleSet",
    "Source",
    "candles_from_klines",
    "candles_from_table",
    "clean_candles",
    "close_moments",
    "empty_candles",
    "find_gaps",
    "interval_ms",
    "last_closed_open_ms",
    "load_candles",
    "merge_candles",
    "read_candle_csv",
    "read_sample",
    "sample_path",
]
