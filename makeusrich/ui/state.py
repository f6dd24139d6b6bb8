"""The dashboard's shared state: one refresh loop for the whole app, whatever the number of open browsers.

Every `refresh_seconds` the loop lists the pairs, and for each pair (a few at a time) asks its model server what
it serves, reads the store's latest.json and version list, takes the newest candles and, when the candles or the
served version changed, asks for a forecast. Each pair ends up as one immutable `PairState`; a page compares
revision numbers and redraws only the cards that changed. A pair whose server is down gets an error on its own
state; the others are not held up. Blocking reads (files, store, candles) go through `offload`, never the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from makeusrich.errors import CandleError, MakeUsRichError, ModelNotFoundError, ServingError
from makeusrich.market import SAMPLE_ENDS, CandleFeed
from makeusrich.pair import CurrencyPair
from makeusrich.pair_sources import (
    Offload,
    PairRecord,
    PairSource,
    describe_error,
    to_thread,
)
from makeusrich.store import (
    BacktestResult,
    ModelMetadata,
    Readable,
    StoreReader,
    StoreSummary,
    TrackFiles,
    TrackSummary,
    read_backtest,
)
from makeusrich.ui.backtest import Backtest, run_backtest, split_range
from makeusrich.ui.card import Observed, PairState, Served, build_state, promoted_version
from makeusrich.ui.settings import Options
from makeusrich.v2client import V2Client

log = logging.getLogger("makeusrich.ui")


class Dashboard:
    """Shared, refreshed state of every pair; pages read it and never do I/O of their own on the event loop."""

    def __init__(
        self, source: PairSource, feed: CandleFeed, options: Options | None = None, offload: Offload = to_thread
    ) -> None:
        self.source = source
        self.feed = feed
        self.options = options or Options()
        self.offload = offload
        self.store = StoreReader(source.store_url) if source.store_url else None
        self.records: dict[str, PairRecord] = {}
        self.states: dict[str, PairState] = {}
        self.candles: dict[str, pd.DataFrame] = {}
        self.forecasts: dict[str, pd.DataFrame] = {}
        self.revisions: dict[str, int] = {}
        self.revision = 0
        self.source_error: str | None = None
        self.refreshed_at: float | None = None
        self.loaded = asyncio.Event()
        self._clients: dict[str, V2Client] = {}
        self._forecast_keys: dict[str, tuple[Any, ...]] = {}
        self._backtests: dict[tuple[str, str], asyncio.Task[Backtest]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._refreshing = asyncio.Lock()

    # --- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="makeusrich-ui-refresh")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for task in self._backtests.values():
            task.cancel()
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
        await self.source.aclose()

    def wake(self) -> None:
        """Refresh now (after a pair was written), instead of at the next tick."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad refresh must not end live updates
                log.exception("dashboard refresh failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.options.refresh_seconds)
            self._wake.clear()

    # --- refreshing --------------------------------------------------------------------------------------------

    def client(self, url: str) -> V2Client:
        if url not in self._clients:
            self._clients[url] = V2Client(url, timeout=self.options.serving_timeout)
        return self._clients[url]

    def _publish(self, key: str, state: PairState) -> None:
        if self.states.get(key) != state:
            self.states[key] = state
            self.revisions[key] = self.revisions.get(key, 0) + 1
            self.revision += 1

    async def refresh(self) -> None:
        """One pass over every pair."""
        async with self._refreshing:
            try:
                records = await self.source.list_pairs()
                self.source_error = None
            except Exception as exc:
                error = describe_error(exc)
                if error != self.source_error:
                    self.source_error = error
                    self.revision += 1
                log.warning("cannot list pairs: %s", error)
                self.loaded.set()
                return
            fresh = {record.key: record for record in records}
            tables: tuple[dict[str, Any], ...] = (self.states, self.candles, self.forecasts, self._forecast_keys)
            for gone in set(self.states) - set(fresh):
                for table in tables:
                    table.pop(gone, None)
                self.revision += 1
            for key, record in fresh.items():
                if key not in self.states:
                    self._publish(key, PairState(key, record.name, record.namespace, record.pair, loading=True))
            self.records = fresh
            limit = asyncio.Semaphore(self.options.concurrency)

            async def one(record: PairRecord) -> None:
                async with limit:
                    try:
                        state = await self._refresh_pair(record)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:  # a bug for one pair shows on its card only
                        log.exception("refreshing %s failed", record.key)
                        state = PairState(record.key, record.name, record.namespace, record.pair, describe_error(exc))
                    self._publish(record.key, state)

            await asyncio.gather(*(one(record) for record in records))
            self.refreshed_at = time.time()
            self.loaded.set()

    async def _served(self, record: PairRecord) -> Served:
        if not record.serving_url:
            reason = "its InferenceService reports no URL yet" if self.source.kind == "kubernetes" else "no URL"
            return Served(error=f"no model server to ask: {reason}", not_found=True)
        client = self.client(record.serving_url)
        try:
            meta = await client.model_metadata(record.model_name)
            ready = await client.model_ready(record.model_name)
        except ModelNotFoundError as exc:
            return Served(ready=False, error=str(exc), not_found=True)
        except ServingError as exc:
            return Served(error=str(exc))
        try:
            window: int | None = meta.window
        except ServingError:
            window = None
        refused, why = meta.parameters.get("refused_version"), meta.parameters.get("refused_reason")
        refusal = f"version {refused} was refused: {why}" if refused else None
        return Served(meta.version, window, ready, None, refusal, levels=meta.levels)

    async def _summary(self, record: PairRecord, wanted: str | None) -> tuple[StoreSummary | None, str | None]:
        if self.store is None:
            return None, None
        store = self.store
        try:
            runs = self.source.kind == "embedded"  # only `makeusrich up` writes runs/state.json
            summary = await self.offload(
                lambda: store.summary(record.namespace, record.name, [wanted], runs, track=True)
            )
        except Exception as exc:
            return None, f"model store: {describe_error(exc)}"
        return summary, None

    async def _recent(self, pair: CurrencyPair, window: int) -> tuple[pd.DataFrame | None, str | None]:
        count = max(self.options.chart_candles, window)
        try:
            frame = await self.offload(lambda: self.feed.recent(pair.spec, count))
        except Exception as exc:
            return None, f"candles: {describe_error(exc)}"
        return frame, None

    async def _forecast(
        self, record: PairRecord, candles: pd.DataFrame, served: Served
    ) -> tuple[pd.DataFrame | None, str | None]:
        assert record.pair is not None and record.serving_url is not None
        window = served.window or record.pair.spec.model.window
        if len(candles) < window:
            return None, f"the model reads {window} candles and only {len(candles)} are available"
        key = (record.serving_url, served.version, candles["open_time"].iloc[-1], float(candles["close"].iloc[-1]))
        if self._forecast_keys.get(record.key) == key and record.key in self.forecasts:
            return self.forecasts[record.key], None
        try:
            frame = await self.client(record.serving_url).forecast(
                record.model_name, candles, record.pair.spec.interval, window, served.levels
            )
        except ServingError as exc:
            return None, str(exc)
        self._forecast_keys[record.key] = key
        self.forecasts[record.key] = frame
        return frame, None

    async def _refresh_pair(self, record: PairRecord) -> PairState:
        if record.pair is None:
            return build_state(record, Observed())
        pair = record.pair
        previous = self.states.get(record.key)
        (summary, store_error), served = await asyncio.gather(
            self._summary(record, previous.served_version if previous else None),
            self._served(record),
        )
        candles, candle_error = await self._recent(pair, served.window or pair.spec.model.window)
        forecast, forecast_error = None, None
        if candles is not None:
            self.candles[record.key] = candles
            if served.version and not served.error:
                forecast, forecast_error = await self._forecast(record, candles, served)
        shown = served.version or promoted_version(record, summary)
        if summary is not None and shown and shown in summary.versions and shown not in summary.metadata:
            store = self.store
            assert store is not None
            with contextlib.suppress(Exception):  # the card still shows; the pair page says what failed
                meta = await self.offload(lambda: store.metadata(record.namespace, record.name, shown))
                summary = replace(summary, metadata={**summary.metadata, shown: meta})
        offline, origin = None, self.feed.origin(pair.spec)  # what stands in for Binance's live candles
        if origin.kind == "sample":
            offline = f"{'offline' if self.feed.source.kind == 'auto' else 'bundled'} sample data, ends {SAMPLE_ENDS}"
        elif origin.kind == "file":
            offline = f"candles from {origin.path}"
        seen = Observed(summary, store_error, served, candles, candle_error, forecast, forecast_error, offline)
        return build_state(record, seen, self.options.spark_candles)

    # --- what a pair page asks for -------------------------------------------------------------------------------

    async def history(self, key: str) -> dict[str, Readable]:
        """Metadata of the newest versions (empty without a store)."""
        record = self.records.get(key)
        if record is None or self.store is None:
            return {}
        store, limit = self.store, self.options.history_versions
        result: dict[str, Readable] = await self.offload(lambda: store.history(record.namespace, record.name, limit))
        return result

    async def metadata(self, key: str, version: str) -> ModelMetadata | None:
        record = self.records.get(key)
        if record is None or self.store is None:
            return None
        store = self.store
        result: ModelMetadata = await self.offload(lambda: store.metadata(record.namespace, record.name, version))
        return result

    async def walk_forward(self, key: str, version: str) -> BacktestResult | None:
        """The walk-forward backtest stored beside a version (`makeusrich backtest --publish`), if one was."""
        record = self.records.get(key)
        if record is None or self.store is None:
            return None
        store = self.store.pair_store(record.namespace, record.name)
        result: BacktestResult | None = await self.offload(lambda: read_backtest(store, version))
        return result

    async def track_record(self, key: str, days: int = 30) -> tuple[TrackSummary | None, pd.DataFrame | None]:
        """track.json and the rows of the last `days` (or since the served version went live, if longer)."""
        record = self.records.get(key)
        if record is None or self.store is None:
            return None, None
        pair_store = self.store.pair_store(record.namespace, record.name)
        summary: TrackSummary | None = await self.offload(TrackFiles(pair_store).read_summary)
        since = pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=days)
        if summary is not None and summary.updated_at:
            since = pd.Timestamp(summary.updated_at) - pd.Timedelta(days=days)  # the record's clock, not ours
        store = self.store
        rows: pd.DataFrame = await self.offload(lambda: store.track_rows(record.namespace, record.name, since))
        return summary, rows

    async def backtest(self, key: str) -> Backtest:
        """The served version over its own test split; computed once per version and shared by all viewers."""
        state, record = self.states.get(key), self.records.get(key)
        if state is None or record is None or record.pair is None:
            raise MakeUsRichError(f"pair {key} is not known")
        if state.serving_error:
            raise MakeUsRichError(f"the backtest needs the model server: {state.serving_error}")
        version = state.served_version
        if version is None or record.serving_url is None:
            raise MakeUsRichError("no model is served, so there is nothing to backtest")
        if self.store is None:
            raise MakeUsRichError("the backtest needs the model store (start the dashboard with --store)")
        task = self._backtests.get((key, version))
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = asyncio.get_running_loop().create_task(self._backtest(record, version))
            self._backtests[(key, version)] = task
        return await asyncio.shield(task)

    async def _backtest(self, record: PairRecord, version: str) -> Backtest:
        assert record.pair is not None and record.serving_url is not None and self.store is not None
        pair, store, feed = record.pair, self.store, self.feed
        metadata = await self.offload(lambda: store.metadata(record.namespace, record.name, version))
        first, last, *_ = split_range(metadata)
        pair_store = store.pair_store(record.namespace, record.name)
        candles = await self.offload(lambda: feed.between(pair.spec, first, last, pair_store))
        if candles.empty:
            raise CandleError(f"no candles between {first:%Y-%m-%d %H:%M} and {last:%Y-%m-%d %H:%M} UTC")
        client = self.client(record.serving_url)

        async def infer(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
            result = await client.infer_result(record.model_name, windows)
            return result.forecast, result.quantiles

        return await run_backtest(version, metadata, candles, infer)


async def wait_loaded(dashboard: Dashboard, timeout: float) -> bool:
    """True once the first refresh ended (or False after `timeout` seconds)."""
    try:
        await asyncio.wait_for(dashboard.loaded.wait(), timeout)
    except TimeoutError:
        return False
    return True
