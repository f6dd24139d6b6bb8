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
    CandleReport,
    Gap,
    candles_from_klines,
    candles_from_table,
    clean_candles,
    close_moments,
    empty_candles,
    find_gaps,
    interval_ms,
)
from makeusrich.market.exchange import API_URL_ENV, CLOCK_SKEW_MS, DEFAULT_API_URL, DEFAULT_RETRIES, PAGE_LIMIT
from makeusrich.market.feed import CandleFeed
from makeusrich.market.files import SAMPLE_ENDS, read_candle_csv, read_sample, sample_covers, sample_path
from makeusrich.market.source import (
    CandleCache,
    CandleSet,
    Source,
    last_closed_open_ms,
    load_candles,
    merge_candles,
    offline_fallback,
    read_file_source,
)

__all__ = [
    "API_URL_ENV",
    "CANDLE_DTYPES",
    "CLOCK_SKEW_MS",
    "DEFAULT_API_URL",
    "DEFAULT_RETRIES",
    "KLINE_FIELDS",
    "OHLCV",
    "PAGE_LIMIT",
    "SAMPLE_ENDS",
    "CandleCache",
    "CandleFeed",
    "CandleReport",
    "CandleSet",
    "Gap",
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
    "offline_fallback",
    "read_candle_csv",
    "read_file_source",
    "read_sample",
    "sample_covers",
    "sample_path",
]
