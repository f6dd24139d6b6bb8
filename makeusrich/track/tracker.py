"""The tracker: after each candle close, every pair's served model is asked for its forecast over v2, the row
is appended to the pair's track record, rows whose target has closed are scored, and track.json is rewritten.

One process writes a pair's track files: the tracker (the chart runs one replica, `makeusrich up` one process), or
with `--workers` the one worker the pair is given (makeusrich.track.shards). Between rounds it holds no rows: each
round reads the month files its windows reach into, so memory does not grow with the pairs' history. A pair's
trouble (its model answers an error or too slowly, its candles are late or missing, its files are damaged) becomes
a gap or an error for that pair alone; the others go on. An origin that could not be forecast in time becomes a gap
with its reason: a forecast made after the fact would not be live.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import tempfile
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pandas as pd

from makeusrich.errors import MakeUsRichError, ServingError, StoreError, WorkerExited
from makeusrich.market import CandleFeed, interval_ms
from makeusrich.pair import CurrencyPair
from makeusrich.pair_sources import PairRecord, PairSource
from makeusrich.scoring import decision
from makeusrich.store import PairStore, StoreReader, TrackFiles, TrackSummary
from makeusrich.store.track_schema import LIVE, month_of, month_rows, month_start
from makeusrich.track.decide import (
    Ask,
    Wait,
    answer_problem,
    candles_needed,
    counts_yet,
    deadline,
    decide,
    due_origins,
    forecast_window,
    newest_close,
)
from makeusrich.track.rollback import roll_back, rollback_due
from makeusrich.track.rows import (
    closes_by_moment,
    forecast_rows,
    future_origins,
    gap_rows,
    last_seen_origin,
    oldest_unscored_target,
    update_rows,
)
from makeusrich.track.shadow import Comparator, ModelFiles, Shadows, missing_origins, resolve, shadow_rows
from makeusrich.track.summary import WINDOWS, newest_live_version, summarize
from makeusrich.v2client import ModelMetadata, V2Client, candle_array

log = logging.getLogger("makeusrich")
T = TypeVar("T")

KEEP = max(length for _, length in WINDOWS) + timedelta(days=1)  # rows each round reads, besides the version's
SCORE_BACK = 48  # candles fetched to score rows whose target closed this many intervals ago at most
# How often a pair's versions are listed (when training last ran, for the chart's stale-model alert): a list
# of a thousand pairs' folders every minute would cost more than the answer is worth.
RUNS_EVERY = timedelta(hours=1)


@dataclass(frozen=True)
class TrackOptions:
    serving_timeout: float = 5.0
    concurrency: int = 16
    retry_seconds: float = 30.0  # a round again this soon while an origin is still open (model or candle late)
    settle_seconds: float = 3.0  # after a close, before asking: the exchange publishes the candle
    # An origin's forecast counts as live only if recorded this soon after its close (a quarter interval at most).
    max_delay: timedelta = timedelta(minutes=15)
    # Where the comparators' model files are kept between rounds (makeusrich.track.shadow.ModelFiles).
    model_folder: Path = Path(tempfile.gettempdir()) / "makeusrich-shadow-models"


@dataclass
class PairTrack:
    """What the tracker holds for one pair between rounds: no rows, which the store holds (each round reads the
    month files its windows need, so a thousand pairs' months are never in memory at once). Small and picklable:
    a worker process sends it to the parent for /metrics."""

    model: ModelMetadata | None = None
    tried: dict[pd.Timestamp, str] = field(default_factory=dict)  # origin -> why its forecast is not in yet
    # The newest summary as JSON: parsed, one takes about 30 KB, seven times its JSON, and every worker holds its
    # pairs' and the parent all of them (for /metrics).
    summary_json: bytes | None = None
    model_created_at: str | None = None
    error: str | None = None
    offline: bool = False
    shadows: Shadows | None = None  # the served version's comparators
    rolled_back: str | None = None  # the served version this tracker rolled back
    rollback_problem: str | None = None  # why the last rollback could not be written (said once)
    basis: tuple[str, decision.Basis | None] | None = None  # a version and what its decision rules fitted
    server_up: bool | None = None  # whether the last ask reached the model server and its model answered
    training_failures: int | None = None  # trainer runs failed in a row (from the pair's status; Kubernetes)
    newest_run: str | None = None  # the newest version in the store, promoted or not: when training last ran
    runs_read: datetime | None = None  # when the store's versions were last listed for it

    @property
    def summary(self) -> TrackSummary | None:
        """Parsed at each read: a round reads it once."""
        return None if self.summary_json is None else TrackSummary.model_validate_json(self.summary_json)

    @summary.setter
    def summary(self, value: TrackSummary | None) -> None:
        self.summary_json = None if value is None else value.model_dump_json(by_alias=True).encode()


@dataclass(frozen=True)
class PairRound:
    """What one round did for one pair."""

    key: str
    recorded: int = 0
    gaps: int = 0
    scored: int = 0
    waiting: int = 0  # origins still open: their candle or the model is late, tried again soon
    requests: int = 0
    error: str | None = None
    offline: bool = False
    rolled_back: str | None = None  # what a rollback this round did, in a sentence


class RoundLoop:
    """Rounds after each candle close, until stopped: one Tracker, or a TrackerPool of worker processes."""

    options: TrackOptions
    specs: dict[str, CurrencyPair]
    pairs: Mapping[str, PairTrack]
    last_round: PairRoundReport | None

    def now(self) -> datetime:
        raise NotImplementedError

    async def round(self) -> PairRoundReport:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    def next_wake(self, report: PairRoundReport) -> float:
        """Seconds until the next round: soon while an origin is open, else just after the next close."""
        now = self.now()
        if any(r.waiting for r in report.pairs):
            return self.options.retry_seconds
        closes = []
        for pair in self.specs.values():
            step = pd.Timedelta(milliseconds=interval_ms(pair.spec.interval))
            closes.append(newest_close(now, step) + step)
        if not closes:
            return self.options.retry_seconds
        wake = min(closes) + pd.Timedelta(seconds=self.options.settle_seconds)
        return max(0.0, (wake - pd.Timestamp(now)).total_seconds())

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                report = await self.round()
                for line in report.lines():
                    log.info("%s", line)
                wait = self.next_wake(report)
            except WorkerExited:
                raise
            except MakeUsRichError as exc:  # the pair source itself failed (the API server, the folder)
                log.error("cannot list pairs: %s", exc)
                wait = self.options.retry_seconds
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)


class Tracker(RoundLoop):
    """Rounds over every pair of a pair source; `run` repeats them after each candle close."""

    def __init__(
        self,
        source: PairSource,
        feed: CandleFeed,
        store_url: str,
        options: TrackOptions = TrackOptions(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source = source
        self.feed = feed
        self.store_url = store_url
        self.options = options
        self.clock = clock
        self.pairs: dict[str, PairTrack] = {}
        self.specs: dict[str, CurrencyPair] = {}
        self.last_round: PairRoundReport | None = None
        self._clients: dict[str, V2Client] = {}
        self.reader = StoreReader(store_url)
        self.model_files = ModelFiles(options.model_folder)
        # Candle fetches and store writes wait on the network: as many threads as pairs tracked at once.
        self._pool = ThreadPoolExecutor(options.concurrency, thread_name_prefix="track")
        self._shadow_thread = ThreadPoolExecutor(1, thread_name_prefix="track-shadows")  # see track.shadow

    async def offload(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    # --- I/O helpers ---------------------------------------------------------------------------------------

    def _client(self, url: str) -> V2Client:
        if url not in self._clients:
            self._clients[url] = V2Client(url, timeout=self.options.serving_timeout)
        return self._clients[url]

    def _files(self, pair: CurrencyPair) -> TrackFiles:
        return TrackFiles(self.reader.pair_store(pair.namespace, pair.name))

    def _fetch(
        self, pair: CurrencyPair, summary: TrackSummary | None, now: datetime
    ) -> tuple[list[tuple[str, bytes]], pd.Timestamp, TrackSummary | None]:
        """The stored month files the windows need, whole (so that rewriting one loses nothing): KEEP back from
        now, and the served version's since it went live (by `summary`, else the one stored, which is returned:
        its decisions' evidence goes on). Only the I/O: the threads wait on the store, the event loop decodes, one
        pair at a time (many threads decoding at once cost memory, each allocating for itself, and CPU, contending
        for one interpreter)."""
        if summary is None:  # the first round since the tracker started
            try:
                summary = self._files(pair).read_summary()
            except StoreError as exc:  # rewritten at the end of this round
                log.warning("%s: %s", pair.name, exc)
        start = pd.Timestamp(now - KEEP)
        if summary is not None and summary.live_since:
            start = min(start, pd.Timestamp(summary.live_since))
        since = month_start(start)
        return self._files(pair).fetch(month_of(since)), since, summary

    def _newest_run(self, pair: CurrencyPair) -> str | None:
        """The newest complete version in the store, promoted or refused: when the pair's training last ran."""
        versions = self.reader.pair_store(pair.namespace, pair.name).versions()
        return versions[-1] if versions else None

    def _encoded(
        self, pair: CurrencyPair, rows: pd.DataFrame, summary: TrackSummary | None, months: set[str]
    ) -> tuple[list[tuple[str, bytes]], bytes | None]:
        files = [(month, TrackFiles.encode(in_month)) for month, in_month in month_rows(rows, months)]
        return files, TrackFiles.encode_summary(summary) if summary is not None else None

    def _put(self, pair: CurrencyPair, files: list[tuple[str, bytes]], summary: bytes | None) -> None:
        track = self._files(pair)
        for month, data in files:
            track.put(month, data)
        if summary is not None:
            track.put_summary(summary)

    def _shadow(
        self,
        store: PairStore,
        due: list[tuple[Comparator, list[pd.Timestamp]]],
        candles: pd.DataFrame,
        step: pd.Timedelta,
    ) -> list[tuple[Comparator, list[pd.DataFrame] | Exception]]:
        """Each comparator's shadow rows at its origins, or what stopped it (any failure: a damaged file, a model
        that does not run), in one hop to the shadows' thread."""
        made: list[tuple[Comparator, list[pd.DataFrame] | Exception]] = []
        for c, origins in due:
            try:
                made.append((c, shadow_rows(self.model_files.read(store, c), c, candles, origins, step, self.now())))
            except Exception as exc:
                made.append((c, exc))
        return made

    # --- one pair ------------------------------------------------------------------------------------------

    async def _shadows(
        self,
        record: PairRecord,
        state: PairTrack,
        held: pd.DataFrame,
        new_rows: list[pd.DataFrame],
        candles: pd.DataFrame,
        since: pd.Timestamp,
        last_version: str | None,
    ) -> list[pd.DataFrame]:
        """Shadow rows for the served version's live origins from `since` on that lack them
        (makeusrich.track.shadow); the served version is the newest forecast's, else `last_version` (the last
        summary's). Whatever goes wrong here is said once and costs the served record nothing."""
        pair = record.pair
        assert pair is not None
        live = [frame for frame in new_rows if frame["kind"].iloc[0] == LIVE]
        served = str(live[-1]["version"].iloc[0]) if live else last_version
        if not served:
            return []
        store = self.reader.pair_store(pair.namespace, pair.name)
        if state.shadows is None or state.shadows.served != served or state.shadows.unresolved:
            try:
                state.shadows = await self.offload(resolve, store, served, pair.spec.serving.pinned_version is not None)
            except MakeUsRichError as exc:
                problem = f"no shadow forecasts beside version {served} yet: {exc}"
                if state.shadows is None or state.shadows.problem != problem:
                    log.warning(problem, extra={"pair": record.key})
                state.shadows = Shadows(served, (), problem, unresolved=True)
        missing = missing_origins([held, *new_rows], served, since)
        due = [(c, missing[c.role]) for c in state.shadows.comparators if missing[c.role]]
        if not due:
            return []
        step = pd.Timedelta(milliseconds=interval_ms(pair.spec.interval))
        made = await asyncio.get_running_loop().run_in_executor(
            self._shadow_thread, self._shadow, store, due, candles, step
        )
        frames: list[pd.DataFrame] = []
        for c, result in made:
            if not isinstance(result, Exception):
                frames += result
                continue
            problem = f"the {c.role} version {c.version} cannot forecast: {type(result).__name__}: {result}"
            if state.shadows.problem != problem:  # said once per version
                log.warning(problem, extra={"pair": record.key})
                state.shadows = dataclasses.replace(state.shadows, problem=problem)
        return frames

    async def _basis(
        self, pair: CurrencyPair, state: PairTrack, version: str | None
    ) -> tuple[str, decision.Basis] | None:
        """The served version's test-split decision metrics (read once a version): what its live answer to "would
        it have made money" is computed with. None for a version from before them, or whose metadata.json cannot
        be read (said once). The reader's metadata cache is not used: a thousand parsed documents weigh 100 MB."""
        if version is None:
            return None
        if state.basis is None or state.basis[0] != version:
            try:
                store = self.reader.pair_store(pair.namespace, pair.name)
                recorded = (await self.offload(store.model_metadata, version)).metrics.test.decision
                found = decision.refit(recorded) if recorded else None
            except MakeUsRichError as exc:
                log.warning(f"version {version}'s metadata.json cannot be read: {exc}", extra={"pair": pair.name})
                found = None
            state.basis = (version, found)
        found = state.basis[1]
        return (version, found) if found is not None else None

    async def _model(self, client: V2Client, name: str, state: PairTrack) -> ModelMetadata:
        if state.model is None:
            state.model = await client.model_metadata(name)
        return state.model

    async def _forecast(
        self, record: PairRecord, state: PairTrack, candles: pd.DataFrame, origin: pd.Timestamp
    ) -> tuple[pd.DataFrame | None, str | None, int]:
        """The rows of the served model's forecast at `origin`, or None and why not; and the requests made."""
        pair, name = record.pair, record.model_name
        assert pair is not None and record.serving_url is not None
        step = pd.Timedelta(milliseconds=interval_ms(pair.spec.interval))
        client = self._client(record.serving_url)
        requests = 0
        try:
            fresh_model = state.model is None
            model = await self._model(client, name, state)
            requests += int(fresh_model)
            window, problem = forecast_window(candles, origin, step, model.window)
            if window is None:
                return None, problem, requests
            result = await client.infer_result(name, candle_array(window, model.window), last_candle_close=origin)
            requests += 1
            if result.model_version and model.version and result.model_version != model.version:
                state.model = None  # a new version is served: its window or levels may differ, read them again
                model = await self._model(client, name, state)
                requests += 1
        except ServingError as exc:
            state.model = None
            if exc.status is None or exc.status >= 500:  # unreachable, timed out, not ready or failing
                state.server_up = False
            return None, str(exc), requests
        state.server_up = True
        levels = model.levels
        quantiles = result.quantiles[0] if result.quantiles is not None else None
        if quantiles is not None and levels is None:
            quantiles = None  # levels unknown (a server that does not name them): the point forecast only
        last_close = float(window["close"].iloc[-1])
        if (problem := answer_problem(result.forecast[0], quantiles, model.horizon, levels, last_close)) is not None:
            return None, problem, requests
        created = result.parameters.get("model_created_at")
        state.model_created_at = str(created) if created else state.model_created_at
        rows = forecast_rows(
            origin,
            step,
            result.model_version or model.version or "",
            last_close,
            result.forecast[0],
            quantiles,
            levels,
            self.now(),
        )
        return rows, None, requests

    async def _record(
        self,
        record: PairRecord,
        state: PairTrack,
        origins: list[pd.Timestamp],
        candles: pd.DataFrame,
        first_ever: bool,
        last_version: str | None,
    ) -> tuple[list[pd.DataFrame], int, int, int]:
        """Each due origin as `decide` says: the model's forecast, a wait, or a gap (named after `last_version`, the
        last summary's). Returns the new rows, and how many of them are gaps, how many origins wait, and the
        requests made."""
        pair = record.pair
        assert pair is not None
        now = self.now()
        step = pd.Timedelta(milliseconds=interval_ms(pair.spec.interval))
        closed = set(candles["open_time"] + step)
        new_rows: list[pd.DataFrame] = []
        gaps = waiting = requests = 0
        for origin in origins:
            due = deadline(origin, step, self.options.max_delay)
            action = decide(
                origin, pd.Timestamp(now), due, origin in closed, record.serving_url, state.tried.get(origin)
            )
            if isinstance(action, Ask):
                rows, why, made = await self._forecast(record, state, candles, origin)
                requests += made
                if rows is not None:
                    new_rows.append(rows)
                    state.tried.pop(origin, None)
                    continue
                action = Wait(str(why))
            if isinstance(action, Wait):
                state.tried[origin] = action.why
                waiting += int(counts_yet(first_ever, bool(new_rows)))
                continue
            if counts_yet(first_ever, bool(new_rows)):
                last = candles.loc[candles["open_time"] + step == origin, "close"]
                horizon = state.model.horizon if state.model is not None else pair.spec.model.horizon
                last_close = float(last.iloc[0]) if len(last) else None
                new_rows.append(gap_rows(origin, step, horizon, last_version, action.reason, last_close, now))
                gaps += 1
            state.tried.pop(origin, None)
        return new_rows, gaps, waiting, requests

    async def track_pair(self, record: PairRecord) -> PairRound:
        """One round for one pair: record what is due, score what closed, write the month files and track.json."""
        pair = record.pair
        assert pair is not None
        spec = pair.spec
        now = self.now()
        state = self.pairs.setdefault(record.key, PairTrack())
        self.specs[record.key] = pair
        training = record.status.last_training if record.status is not None else None
        state.training_failures = training.failures if training is not None else None
        if self.feed.origin(spec).kind == "sample":
            state.offline = True
            return PairRound(record.key, offline=True)
        if state.runs_read is None or now - state.runs_read >= RUNS_EVERY:
            state.newest_run = await self.offload(self._newest_run, pair)
            state.runs_read = now
        step = pd.Timedelta(milliseconds=interval_ms(spec.interval))
        newest = newest_close(now, step)
        summary = state.summary  # parsed once a round (PairTrack keeps its JSON)
        files, since, stored = await self.offload(self._fetch, pair, summary, now)
        if summary is None and stored is not None:  # the first round since the tracker started
            state.summary = summary = stored
        held = self._files(pair).rows(files, since)
        last_seen = last_seen_origin(held, newest, now)
        ahead = future_origins(held, newest, now)
        if ahead:
            log.warning(
                f"{ahead} recorded origins were written by a clock ahead of this one (after the newest close "
                f"{newest.isoformat()}, or recorded later than now): the record goes on from this clock, and "
                "replaces them as it reaches them",
                extra={"pair": record.key},
            )
        origins = due_origins(last_seen, newest, step)
        unscored = oldest_unscored_target(held, newest - step * SCORE_BACK)
        window = state.model.window if state.model is not None else spec.model.window
        window = max(window, state.shadows.window if state.shadows is not None else 0)
        count = candles_needed(origins, unscored, newest, step, window, self.feed.KEEP)
        try:
            candles = await self.offload(self.feed.recent, spec, count)
        except MakeUsRichError as exc:  # the origins stay open; past their deadline they are gaps saying why
            for origin in origins:
                state.tried.setdefault(origin, f"no candles: {exc}")
            raise
        state.offline = self.feed.origin(spec).kind == "sample"  # `auto` found no network just now
        if state.offline:
            return PairRound(record.key, offline=True)
        last_version = summary.version if summary else None
        new_rows, gaps, waiting, requests = await self._record(
            record, state, origins, candles, last_seen is None, last_version
        )
        shadows = await self._shadows(record, state, held, new_rows, candles, newest - step * SCORE_BACK, last_version)
        held, months, scored = update_rows(held, beside(new_rows, shadows), closes_by_moment(candles, step), now)
        if months or summary is None:  # a retry round that changed nothing leaves it as it is
            basis = await self._basis(pair, state, newest_live_version(held) or last_version)
            state.summary = summary = summarize(held, pair.name, pair.namespace, spec.interval, now, summary, basis)
        if months:
            await self.offload(self._put, pair, *self._encoded(pair, held, summary, months))
        rolled = await self._roll_back_if_due(record, state, summary)
        return PairRound(record.key, len(new_rows) - gaps, gaps, scored, waiting, requests, rolled_back=rolled)

    async def _roll_back_if_due(self, record: PairRecord, state: PairTrack, summary: TrackSummary | None) -> str | None:
        """latest.json back to the replaced version when the evidence says so (makeusrich.track.rollback); a
        failed write is tried again next round, and said once."""
        pair = record.pair
        assert pair is not None
        due = rollback_due(summary, state.shadows, pair.spec.serving.pinned_version is not None)
        if due is None or state.rolled_back == due.served:
            return None
        try:
            await self.offload(roll_back, self.reader.pair_store(pair.namespace, pair.name), due)
        except MakeUsRichError as exc:
            problem = f"version {due.served} should be rolled back to {due.to}, but: {exc}"
            if problem != state.rollback_problem:
                log.warning(problem, extra={"pair": record.key})
                state.rollback_problem = problem
            return None
        state.rolled_back, state.rollback_problem = due.served, None
        said = f"rolled back from {due.served} to {due.to}: {due.reason}"
        log.warning(said, extra={"pair": record.key})
        return said

    # --- rounds --------------------------------------------------------------------------------------------

    async def round(self) -> PairRoundReport:
        """One round over every pair the source lists now; a pair's failure is its own line in the report."""
        started = self.now()
        records = await self.source.list_pairs()
        valid = [r for r in records if r.pair is not None and not r.pair.spec.suspend]
        gone = set(self.pairs) - {r.key for r in valid}
        for key in gone:  # a pair deleted (or suspended) while tracked: its files stay, its state goes
            self.pairs.pop(key, None)
            self.specs.pop(key, None)
        limit = asyncio.Semaphore(self.options.concurrency)

        async def one(record: PairRecord) -> PairRound:
            async with limit:
                try:
                    result = await self.track_pair(record)
                except MakeUsRichError as exc:
                    result = PairRound(record.key, error=str(exc))
                except Exception as exc:  # a bug for one pair must not stop the others
                    log.exception("tracking %s failed", record.key)
                    result = PairRound(record.key, error=f"{type(exc).__name__}: {exc}")
                state = self.pairs.get(record.key)
                if state is not None:
                    state.error = result.error
                return result

        results = await asyncio.gather(*(one(r) for r in valid))
        report = PairRoundReport(started, self.now(), list(results), [r.key for r in records if r.pair is None])
        self.last_round = report
        return report

    async def aclose(self) -> None:
        """Close the model clients, the thread pool and the pair source it was given (the tracker owns it)."""
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._shadow_thread.shutdown(wait=False, cancel_futures=True)
        await self.source.aclose()


def beside(served: list[pd.DataFrame], shadows: list[pd.DataFrame]) -> list[pd.DataFrame]:
    """A round's new frames: each shadow in the frame of its origin's served rows (one append, at the end of the
    rows), the shadows caught up for older origins in one frame before them."""
    merged = list(served)
    at = {frame["origin"].iloc[0]: i for i, frame in enumerate(served)}
    early = []
    for frame in shadows:
        i = at.get(frame["origin"].iloc[0])
        if i is None:
            early.append(frame)
        else:
            merged[i] = pd.concat([merged[i], frame], ignore_index=True)
    return ([pd.concat(early, ignore_index=True)] if early else []) + merged


@dataclass(frozen=True)
class PairRoundReport:
    started: datetime
    finished: datetime
    pairs: list[PairRound]
    invalid: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return (self.finished - self.started).total_seconds()

    def lines(self) -> list[str]:
        """One line per pair that did something or failed, for the log."""
        out = []
        for r in self.pairs:
            if r.offline:
                out.append(f"{r.key}: offline candles (the bundled sample): nothing to record")
            elif r.error:
                out.append(f"{r.key}: {r.error}")
            elif r.recorded or r.gaps or r.scored:
                out.append(f"{r.key}: {r.recorded} forecast(s) recorded, {r.gaps} gap(s), {r.scored} row(s) scored")
            if r.rolled_back:
                out.append(f"{r.key}: {r.rolled_back}")
        out += [f"{key}: the pair file or resource does not validate; not tracked" for key in self.invalid]
        return out
