"""Where a training run gets its candles: Binance (through the store's cache), a CSV file or the bundled sample.

Binance fetches are incremental: the candles already cached in the store are not fetched again, and a cache
that already holds the last closed candle makes no request at all.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import pandas as pd

from makeusrich.errors import CandleError, OfflineError, StoreError
from makeusrich.market.candles import CandleReport, clean_candles, find_gaps, interval_ms
from makeusrich.market.exchange import DEFAULT_RETRIES
from makeusrich.market.files import (
    SAMPLE_ENDS,
    SAMPLE_INTERVAL,
    SAMPLE_SYMBOL,
    read_candle_csv,
    read_sample,
    sample_covers,
)
from makeusrich.pair import CurrencyPairSpec

log = logging.getLogger(__name__)


class CandleCache(Protocol):
    """Where fetched candles are kept between runs (the store's `<pair>/candles/<interval>.parquet`: PairStore
    is one). Defined here so that market never imports the store."""

    def read_candles(self, interval: str) -> pd.DataFrame | None:
        """The cached frame, None when there is none; StoreError when it is unreadable."""
        ...

    def write_candles(self, interval: str, frame: pd.DataFrame) -> None: ...


@dataclass(frozen=True)
class Source:
    """A parsed --source value: auto (Binance, else the sample where it covers the pair), binance, sample or
    file:PATH."""

    kind: str
    path: str | None = None

    @classmethod
    def parse(cls, text: str) -> Source:
        if text in ("auto", "binance", "sample"):
            return cls(text)
        if text.startswith("file:") and len(text) > len("file:"):
            return cls("file", text.removeprefix("file:"))
        raise CandleError(f"unknown candle source {text!r}: use auto, binance, sample or file:PATH")

    def __str__(self) -> str:
        return f"file:{self.path}" if self.kind == "file" else self.kind


@dataclass
class CandleSet:
    """Clean candles for one run, and how they were obtained."""

    frame: pd.DataFrame
    report: CandleReport
    source: str
    requests: int = 0


def last_closed_open_ms(now: datetime, step_ms: int) -> int:
    """Open time of the newest candle that has closed by `now` (candles sit on multiples of the interval)."""
    now_ms = int(now.timestamp() * 1000)
    return (now_ms // step_ms) * step_ms - step_ms


def merge_candles(cached: pd.DataFrame | None, fresh: pd.DataFrame) -> pd.DataFrame:
    """Cached candles followed by fresh ones; a fresh candle replaces a cached one at the same open time."""
    if cached is None or cached.empty:
        return fresh
    if fresh.empty:
        return cached
    both = pd.concat([cached, fresh], ignore_index=True)
    return both.drop_duplicates("open_time", keep="last").sort_values("open_time").reset_index(drop=True)


def fetch_incremental(
    spec: CurrencyPairSpec,
    store: CandleCache | None,
    now: datetime | None = None,
    api_url: str | None = None,
    max_retries: int = DEFAULT_RETRIES,
) -> tuple[pd.DataFrame, int]:
    """Candles covering the lookback up to the last closed one, fetching only what the cache lacks.
    Returns the raw (uncleaned) frame and the number of HTTP requests made."""
    now = now or datetime.now(UTC)
    step = interval_ms(spec.interval)
    last_closed = last_closed_open_ms(now, step)
    start = last_closed - (spec.lookback_candles() - 1) * step
    cached: pd.DataFrame | None = None
    if store is not None:
        try:
            cached = store.read_candles(spec.interval)
        except StoreError as exc:
            log.warning("ignoring the candle cache: %s", exc)
    if cached is not None and not cached.empty:
        newest = int(cached["open_time"].iloc[-1].timestamp() * 1000)
        oldest = int(cached["open_time"].iloc[0].timestamp() * 1000)
        if oldest > start:
            cached = None  # the cache does not reach back far enough: fetch the whole lookback once
        else:
            start = newest + step
    requests = 0
    fresh = pd.DataFrame()
    if start <= last_closed:
        from makeusrich.market import binance  # python-binance: loaded by the code that fetches

        result = binance.fetch_klines(
            spec.symbol,
            spec.interval,
            start,
            last_closed + step - 1,
            api_url=api_url,
            max_retries=max_retries,
            clock=now.timestamp,
        )
        fresh, requests = result.frame, result.requests
    frame = merge_candles(cached, fresh)
    if frame.empty:
        raise CandleError(f"Binance returned no {spec.symbol} {spec.interval} candles for the lookback period")
    if store is not None and requests:
        keep_from = pd.Timestamp(last_closed - (spec.lookback_candles() - 1) * step, unit="ms", tz="UTC")
        try:
            store.write_candles(spec.interval, frame[frame["open_time"] >= keep_from].reset_index(drop=True))
        except StoreError as exc:
            log.warning("could not update the candle cache: %s", exc)
    return frame, requests


def offline_fallback(spec: CurrencyPairSpec, exc: OfflineError) -> Source:
    """What `auto` uses when Binance cannot be reached: the bundled sample, said in one line; a pair it does
    not cover is refused with what to do."""
    if not sample_covers(spec.symbol, spec.interval):
        raise CandleError(
            f"{exc.reason}, and {spec.symbol} {spec.interval} has no offline data (the bundled sample holds "
            f"{SAMPLE_SYMBOL} {SAMPLE_INTERVAL} only); connect to the internet, or use --source file:PATH with "
            "its candles"
        ) from exc
    log.warning(
        "%s; using the bundled sample of %s %s candles instead (offline sample data, ends %s)",
        *(exc.reason, SAMPLE_SYMBOL, SAMPLE_INTERVAL, SAMPLE_ENDS),
    )
    return Source("sample")


def read_file_source(source: Source, spec: CurrencyPairSpec) -> pd.DataFrame:
    """The raw candles of a file source: the bundled sample, or a CSV (Binance is fetched, not read)."""
    if source.kind == "sample":
        return read_sample(spec.symbol, spec.interval)
    if source.kind == "file":
        return read_candle_csv(str(source.path), spec.interval)
    raise CandleError(f"{source} is not a file source")


def load_candles(
    spec: CurrencyPairSpec,
    source: Source,
    store: CandleCache | None = None,
    now: datetime | None = None,
    api_url: str | None = None,
    max_retries: int = DEFAULT_RETRIES,
) -> CandleSet:
    """Clean candles for the pair's lookback from the chosen source."""
    requests = 0
    if source.kind in ("auto", "binance"):
        try:
            raw, requests = fetch_incremental(spec, store, now, api_url, max_retries)
            source = Source("binance")
        except OfflineError as exc:
            if source.kind == "binance":
                raise
            source = offline_fallback(spec, exc)
    if source.kind != "binance":
        raw = read_file_source(source, spec)
    frame, report = clean_candles(raw, spec.interval, str(source))
    if frame.empty:
        raise CandleError(f"{source}: no usable {spec.symbol} {spec.interval} candles left after validation")
    # The last `lookbackDays`, measured back from the newest candle; the report says what the run uses.
    step = interval_ms(spec.interval)
    cutoff = frame["open_time"].iloc[-1] - pd.Timedelta(milliseconds=(spec.lookback_candles() - 1) * step)
    frame = frame[frame["open_time"] >= cutoff].reset_index(drop=True)
    report.gaps = find_gaps(frame["open_time"], step)
    report.broken_dropped = [t for t in report.broken_dropped if t >= frame["open_time"].iloc[0]]
    report.rows_out = len(frame)
    return CandleSet(frame=frame, report=report, source=str(source), requests=requests)
