"""The pairs shared out over replicas and worker processes, each running a Tracker of its own.

A Tracker's work per pair is pandas and HTTP in one Python process, so it uses one core whatever the machine
has; `--workers N` uses N, and `--replicas R` (a StatefulSet's pods, each told its ordinal) R machines. The pairs
fall into R x N shards by a hash of their key that does not change between runs: replica r's worker w tracks
shard r * N + w, and stays the only writer of its pairs' track files. A replica that is down leaves its shards
untracked (a gap in their records, never a second writer) until it is back. In a replica, the parent process is the
first worker: it tracks its own share while it asks the N-1 forked ones for theirs, merges the reports, and serves
/metrics and /healthz from what they sent back. (A parent that only coordinated would cost a process's memory for
no work.)

Workers are forked before the parent starts a thread or an event loop, so they share its imported modules
(copy on write) instead of importing them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from makeusrich.errors import MakeUsRichError, WorkerExited
from makeusrich.market import CandleFeed
from makeusrich.pair import CurrencyPair
from makeusrich.pair_sources import PairRecord, PairSource
from makeusrich.track.tracker import PairRoundReport, PairTrack, RoundLoop, Tracker, TrackOptions

log = logging.getLogger("makeusrich")

# Builds a worker's Tracker in the worker process: its shard of the pairs, and the clock it is to use.
MakeTracker = Callable[[Callable[[PairSource], PairSource], Callable[[], float]], Tracker]


def shard_of(key: str, shards: int) -> int:
    """The worker that tracks a pair: the same one on every run (Python's own hash changes between runs)."""
    return zlib.crc32(key.encode()) % shards


class ShardSource:
    """A pair source that lists only one worker's share of the pairs (invalid ones too, so each is reported
    once); everything else goes to the source it wraps."""

    def __init__(self, source: PairSource, index: int, shards: int) -> None:
        self.source = source
        self.index = index
        self.shards = shards
        self.kind = source.kind
        self.store_url = source.store_url
        self.fixed_namespace = source.fixed_namespace

    def describe(self) -> str:
        return f"{self.source.describe()} (shard {self.index + 1} of {self.shards})"

    async def list_pairs(self) -> list[PairRecord]:
        records = await self.source.list_pairs()
        return [r for r in records if shard_of(r.key, self.shards) == self.index]

    async def save(self, pair: CurrencyPair, *, create: bool, previous: PairRecord | None = None) -> None:
        await self.source.save(pair, create=create, previous=previous)

    async def delete(self, record: PairRecord) -> None:
        await self.source.delete(record)

    async def aclose(self) -> None:
        await self.source.aclose()


@dataclass(frozen=True)
class ShardReport:
    """A worker's answer to one round: its report, and its pairs' state and specs (for /metrics and the wake)."""

    report: PairRoundReport
    pairs: dict[str, PairTrack]
    specs: dict[str, CurrencyPair]


def _shard_tracker(make: MakeTracker, index: int, shards: int, clock: Callable[[], float]) -> Tracker:
    return make(lambda source: ShardSource(source, index, shards), clock)


async def _shard_round(tracker: Tracker) -> ShardReport | str:
    """One round of a shard, as the pool merges it: the report with the shard's pairs, or why its pair source
    failed (the pool raises it once every shard has answered)."""
    try:
        report = await tracker.round()
    except MakeUsRichError as exc:
        return str(exc)
    return ShardReport(report, tracker.pairs, tracker.specs)


def _worker(make: MakeTracker, index: int, shards: int, conn: Connection) -> None:
    """A worker process: one round each time the parent sends its clock, until it sends None."""
    offset = 0.0  # the parent's clock minus this one's, as of the last request

    def clock() -> float:
        return time.time() + offset

    async def serve() -> None:
        nonlocal offset
        tracker = _shard_tracker(make, index, shards, clock)
        try:
            while (now_s := await asyncio.to_thread(conn.recv)) is not None:
                offset = float(now_s) - time.time()
                conn.send(await _shard_round(tracker))
        finally:
            await tracker.aclose()

    with contextlib.suppress(EOFError, KeyboardInterrupt):  # the parent went away or was interrupted
        asyncio.run(serve())


def replica_shard(replica: int, replicas: int) -> Callable[[PairSource], PairSource]:
    """The pairs of one replica that runs a single process."""
    return lambda source: source if replicas == 1 else ShardSource(source, replica, replicas)


class TrackerPool(RoundLoop):
    """Rounds over `workers` processes (this one and workers-1 forked), each tracking its shard of replica
    `replica`'s pairs; merged, they read like one Tracker's."""

    def __init__(
        self,
        make: MakeTracker,
        workers: int,
        options: TrackOptions,
        clock: Callable[[], float] = time.time,
        replica: int = 0,
        replicas: int = 1,
    ) -> None:
        self.options = options
        self.clock = clock
        self.specs: dict[str, CurrencyPair] = {}
        self.pairs: dict[str, PairTrack] = {}
        self.last_round: PairRoundReport | None = None
        context = multiprocessing.get_context("fork")  # see the module's docstring
        CandleFeed.preload()  # before the fork, like every other module the workers use: its pages stay shared
        gc.freeze()  # the objects imported so far stay out of the workers' collections: their pages stay shared
        self._conns: list[Connection] = []
        self._processes: list[BaseProcess] = []
        first, shards = replica * workers, replicas * workers
        for index in range(1, workers):
            parent, child = context.Pipe()
            process = context.Process(
                target=_worker,
                args=(make, first + index, shards, child),
                name=f"track-worker-{index + 1}",
                daemon=True,
            )
            process.start()
            child.close()
            self._conns.append(parent)
            self._processes.append(process)
        self.own = _shard_tracker(make, first, shards, clock)  # after the fork: its threads are its own

    @property
    def worker_pids(self) -> list[int]:
        return [p.pid for p in self._processes if p.pid is not None]

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def _gone(self, index: int) -> WorkerExited:
        process = self._processes[index]
        process.join(1.0)
        return WorkerExited(
            f"tracker worker {index + 2} exited (code {process.exitcode}); stopping the tracker: its log above says "
            "why (a negative code is the signal that killed it, -9 often the memory limit); start it again"
        )

    def _receive(self, index: int) -> ShardReport | str:
        try:
            answer: ShardReport | str = self._conns[index].recv()
        except (EOFError, OSError):  # closed, or reset as its process was killed
            raise self._gone(index) from None
        return answer

    async def round(self) -> PairRoundReport:
        """Every worker's round at once, this process's too, merged into one report; a failed pair source fails
        the round."""
        started = self.now()
        for index, conn in enumerate(self._conns):
            try:
                conn.send(self.clock())
            except OSError:  # its end of the pipe closed: the worker died
                raise self._gone(index) from None
        receive = (asyncio.to_thread(self._receive, i) for i in range(len(self._conns)))
        # return_exceptions: this process's round ends before a dead worker's error is raised
        answers = await asyncio.gather(_shard_round(self.own), *receive, return_exceptions=True)
        for answer in answers:
            if isinstance(answer, BaseException):  # a worker died
                raise answer
        failed = [a for a in answers if isinstance(a, str)]
        reports = [a for a in answers if isinstance(a, ShardReport)]
        self.pairs = {key: view for r in reports for key, view in r.pairs.items()}
        self.specs = {key: spec for r in reports for key, spec in r.specs.items()}
        if failed:
            raise MakeUsRichError(failed[0])
        report = PairRoundReport(
            started,
            self.now(),
            [p for r in reports for p in r.report.pairs],
            sorted(key for r in reports for key in r.report.invalid),
        )
        self.last_round = report
        return report

    async def aclose(self) -> None:
        await self.own.aclose()
        for conn in self._conns:
            with contextlib.suppress(OSError):  # a worker that exited already
                conn.send(None)
        for process in self._processes:
            await asyncio.to_thread(process.join, 10.0)
            if process.is_alive():
                process.terminate()
                await asyncio.to_thread(process.join, 5.0)
        for conn in self._conns:
            conn.close()
