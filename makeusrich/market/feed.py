"""Recent candles for what refreshes every few seconds (the dashboard, the tracker), fetched only when a new
candle can have closed. Training runs read their lookback through `source.load_candles`; both
go through the same source dispatch and the same cleaning."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from makeusrich.errors import CandleError, OfflineError, StoreError
from makeusrich.market.candles import clean_candles, interval_ms
from makeusrich.market.exchange import CLOCK_SKEW_MS
from makeusrich.market.source import CandleCache, Source, merge_candles, offline_fallback, read_file_source
from makeusrich.pair import CurrencyPairSpec

if TYPE_CHECKING:  # python-binance is loaded by the code that fetches, when it fetches
    from makeusrich.market.binance import Client


class CandleFeed:
    """Recent candles per symbol and interval, fetched only when a new candle can have closed.
    `binance` keeps a rolling window in memory and asks only for candles newer than it holds; `sample` and
    `file:PATH` read their file once (a file again when it changes), so tests and demos can append candles; `auto`
    is `binance`, or the sample while Binance cannot be reached (for the pairs the sample covers)."""

    KEEP = 1500
    OFFLINE_RETRY_S = 60.0  # `auto` asks Binance again this long after it could not be reached

    def __init__(
        self, source: Source, api_url: str | None = None, clock: Callable[[], float] = time.time, max_retries: int = 2
    ) -> None:
        self.source = source
        self.api_url = api_url
        self.max_retries = max_retries
        self.clock = clock
        self._frames: dict[tuple[str, str], pd.DataFrame] = {}
        self._files: dict[tuple[str, str, str], pd.DataFrame] = {}
        self._stamps: dict[tuple[str, str, str], Any] = {}
        self._offline_until: dict[tuple[str, str], float] = {}
        self._locks: dict[tuple[str, ...], threading.Lock] = {}
        self._guard = threading.Lock()
        self._local = threading.local()

    def _lock(self, key: tuple[str, ...]) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def origin(self, spec: CurrencyPairSpec) -> Source:
        """Where the pair's candles come from now: `auto` is Binance, or the sample for OFFLINE_RETRY_S after
        Binance could not be reached."""
        if self.source.kind != "auto":
            return self.source
        offline = self._offline_until.get((spec.symbol, spec.interval), 0.0) > self.clock()
        return Source("sample" if offline else "binance")

    def _answer(self, spec: CurrencyPairSpec, online: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        """`online()` for Binance, the file's candles otherwise, and the sample when `auto` finds no network."""
        source = self.origin(spec)
        if source.kind == "binance":
            try:
                return online()
            except OfflineError as exc:
                if self.source.kind != "auto":
                    raise
                source = offline_fallback(spec, exc)
                self._offline_until[(spec.symbol, spec.interval)] = self.clock() + self.OFFLINE_RETRY_S
        return self._file_frame(spec, source)

    def _file_frame(self, spec: CurrencyPairSpec, source: Source) -> pd.DataFrame:
        key = (spec.symbol, spec.interval, str(source))
        if source.kind == "sample":
            stamp: Any = "sample"
        else:
            path = Path(str(source.path))
            try:
                info = path.stat()
            except OSError as exc:
                raise CandleError(f"cannot read candle file {path}: {exc.strerror or exc}") from None
            stamp = (info.st_mtime_ns, info.st_size)
        with self._lock(key):
            if self._stamps.get(key) == stamp and key in self._files:
                return self._files[key]
            frame, _ = clean_candles(read_file_source(source, spec), spec.interval, str(source))
            self._files[key], self._stamps[key] = frame, stamp
            return frame

    @staticmethod
    def preload() -> None:
        """Load python-binance now: a process that forks workers calls this first, so that they share its pages
        (about 20 MB a process) instead of each loading its own at its first fetch."""
        from makeusrich.market import binance  # noqa: F401

    def _client(self) -> Client:
        """This thread's python-binance client, kept between requests: a new one per request costs a thread and
        a connection, and threads cannot share one (it keeps each answer in an attribute of its own)."""
        client: Client | None = getattr(self._local, "client", None)
        if client is None:
            from makeusrich.market import binance

            client = self._local.client = binance.make_client(self.api_url)
        return client

    def _fetch(self, spec: CurrencyPairSpec, start_ms: int, end_ms: int | None = None) -> pd.DataFrame:
        from makeusrich.market import binance

        result = binance.fetch_klines(
            spec.symbol,
            spec.interval,
            start_ms,
            end_ms,
            client=self._client(),
            max_retries=self.max_retries,
            max_wait_s=5.0,
            clock=self.clock,
        )
        frame, _ = clean_candles(result.frame, spec.interval, f"binance {spec.symbol} {spec.interval}")
        return frame

    def recent(self, spec: CurrencyPairSpec, count: int) -> pd.DataFrame:
        """The newest `count` closed candles (fewer if the source has fewer)."""
        return self._answer(spec, lambda: self._recent_online(spec, count)).tail(count).reset_index(drop=True)

    def _recent_online(self, spec: CurrencyPairSpec, count: int) -> pd.DataFrame:
        key = (spec.symbol, spec.interval)
        step = interval_ms(spec.interval)
        now_ms = int(self.clock() * 1000)
        with self._lock(key):
            frame = self._frames.get(key)
            if frame is None or len(frame) < count:
                frame = self._fetch(spec, now_ms - (count + 1) * step)
            else:
                newest = int(frame["open_time"].iloc[-1].timestamp() * 1000)
                if now_ms >= newest + 2 * step + CLOCK_SKEW_MS:  # the next candle has closed
                    fresh = self._fetch(spec, newest + step)
                    frame = merge_candles(frame, fresh).tail(self.KEEP).reset_index(drop=True)
                    # Fresh column labels for the frame kept: pandas notes each view of an index in a list of
                    # weak references that it prunes only past 500, and every round's frame shared one index.
                    frame.columns = pd.Index(frame.columns.tolist())
            if frame.empty:
                raise CandleError(f"Binance returned no {spec.symbol} {spec.interval} candles")
            self._frames[key] = frame
            return frame

    @staticmethod
    def _cached(cache: CandleCache, spec: CurrencyPairSpec) -> pd.DataFrame | None:
        try:
            cached = cache.read_candles(spec.interval)
        except StoreError:
            return None
        return None if cached is None or cached.empty else cached

    def between(
        self, spec: CurrencyPairSpec, start: pd.Timestamp, end: pd.Timestamp, cache: CandleCache | None = None
    ) -> pd.DataFrame:
        """Candles with open times in [start, end]: from the file, else the cache (the store's), else Binance."""

        def online() -> pd.DataFrame:
            cached = self._cached(cache, spec) if cache is not None else None
            if cached is not None and cached["open_time"].iloc[0] <= start and cached["open_time"].iloc[-1] >= end:
                return clean_candles(cached, spec.interval, "store candle cache")[0]
            return self._fetch(spec, int(start.timestamp() * 1000), int(end.timestamp() * 1000))

        frame = self._answer(spec, online)
        chosen = frame[(frame["open_time"] >= start) & (frame["open_time"] <= end)]
        return chosen.reset_index(drop=True)
