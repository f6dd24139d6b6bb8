"""`makeusrich track`: record every served forecast after each candle close, score it when its candle closes.
Registered by makeusrich.cli through `add_track_command`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from makeusrich.errors import MakeUsRichError

if TYPE_CHECKING:
    import pandas as pd

    from makeusrich.pair_sources import PairSource
    from makeusrich.settings import Add
    from makeusrich.track.settings import TrackSettings
    from makeusrich.track.tracker import RoundLoop, Tracker, TrackOptions

log = logging.getLogger("makeusrich")


def cmd_track(args: argparse.Namespace) -> int:
    from makeusrich.settings import from_args
    from makeusrich.track.settings import TrackSettings

    settings = from_args(TrackSettings, args)
    replica = settings.ordinal()
    if settings.workers > 1 and not args.replay and not settings.once:
        from makeusrich.net import check_free
        from makeusrich.track.shards import TrackerPool

        check_free(settings.host, settings.port)
        # Forked here, before this process starts an event loop or a thread (see makeusrich.track.shards).
        pool = TrackerPool(
            lambda shard, clock: make_tracker(settings, shard, clock),
            settings.workers,
            options(settings),
            replica=replica,
            replicas=settings.replicas,
        )
        what = f"the pairs in {settings.workers} worker processes" + replica_note(replica, settings.replicas)

        async def pooled() -> int:
            try:
                return await serve_rounds(settings, pool, what)
            finally:
                await pool.aclose()

        return asyncio.run(pooled())
    return asyncio.run(run_track(settings, args.replay, replica))


def replica_note(replica: int, replicas: int) -> str:
    return "" if replicas == 1 else f", replica {replica} of {replicas}"


def options(settings: TrackSettings) -> TrackOptions:
    from makeusrich.track.tracker import TrackOptions

    return TrackOptions(
        serving_timeout=settings.serving_timeout, concurrency=settings.concurrency, retry_seconds=settings.retry_seconds
    )


def make_tracker(
    settings: TrackSettings,
    shard: Callable[[PairSource], PairSource] = lambda source: source,
    clock: Callable[[], float] = time.time,
) -> Tracker:
    """The tracker `settings` describe, over `shard` of the pairs (all of them unless a worker's share)."""
    from makeusrich.market import CandleFeed, Source
    from makeusrich.store import store_location
    from makeusrich.track.tracker import Tracker

    _, store = store_location(settings.store)  # a folder by its absolute path, an S3 URL as given
    source = shard(settings.pair_source(store, agent="makeusrich-track"))
    feed = CandleFeed(
        Source.parse(settings.source), api_url=settings.api_url, max_retries=settings.binance_retries, clock=clock
    )
    return Tracker(source, feed, store, options(settings), clock)


def moment(text: str) -> pd.Timestamp:
    """A --replay bound: an ISO date or time, read as UTC when it names no zone."""
    import pandas as pd

    try:
        found = pd.Timestamp(text)
    except ValueError:
        raise MakeUsRichError(
            f"--replay: {text!r} is not a date or time (write 2026-11-01 or 2026-11-01T12:00Z)"
        ) from None
    return found.tz_localize("UTC") if found.tzinfo is None else found.tz_convert("UTC")


async def run_track(settings: TrackSettings, replay_span: list[str] | None = None, replica: int = 0) -> int:
    from makeusrich.track.shards import replica_shard

    tracker = make_tracker(settings, replica_shard(replica, settings.replicas))
    try:
        if replay_span:
            from makeusrich.track.replay import replay

            results = await replay(tracker, moment(replay_span[0]), moment(replay_span[1]))
            for r in results:
                print(
                    f"{r.key}: {r.error}"
                    if r.error
                    else f"{r.key}: {r.recorded} replayed forecast(s), {r.scored} scored"
                )
            return 1 if any(r.error for r in results) else 0
        if settings.once:
            report = await tracker.round()
            for line in report.lines() or [f"{len(report.pairs)} pair(s): nothing due"]:
                print(line)
            return 1 if any(r.error for r in report.pairs) else 0
        from makeusrich.net import check_free

        check_free(settings.host, settings.port)
        return await serve_rounds(
            settings, tracker, tracker.source.describe() + replica_note(replica, settings.replicas)
        )
    finally:
        await tracker.aclose()


async def serve_rounds(settings: TrackSettings, rounds: RoundLoop, what: str) -> int:
    """Rounds until SIGINT or SIGTERM, with /metrics and /healthz served from what they found."""
    from makeusrich.track.metrics import serve_http

    server = serve_http(rounds, settings.host, settings.port)
    log.info("tracking %s; metrics on http://%s:%d/metrics", what, settings.host, server.server_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await rounds.run(stop)
    finally:
        server.shutdown()
        server.server_close()
    return 0


def add_track_command(add: Add) -> None:
    from makeusrich.settings import KUBERNETES, S3, add_flags, epilog, variables
    from makeusrich.track.settings import TrackSettings

    p = add(
        "track",
        "record every served forecast after each candle close and score it once its candle has closed",
        cmd_track,
    )
    add_flags(p, TrackSettings)
    p.add_argument(
        "--replay",
        nargs=2,
        metavar=("FROM", "TO"),
        help="fill FROM..TO (dates or times, UTC) before the live record began by running each pair's promoted "
        "version on stored candles; rows marked replayed, never counted as live; then exit (stop the tracker first)",
    )
    p.epilog = epilog(
        [*variables(TrackSettings), *KUBERNETES, *S3],
        note="Rows go to <namespace>/<pair>/track/<YYYY-MM>.parquet and a summary to <namespace>/<pair>/track.json "
        "in the store. With the bundled sample (offline) nothing is recorded. Times name the moment a candle closes.",
    )
