"""`makeusrich track`: record every served forecast after each candle close, score it when its candle closes.
Registered by makeusrich.cli through `add_track_command`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from makeusrich.track.settings import TrackSettings

log = logging.getLogger("makeusrich")

Add = Callable[[str, str, Callable[[argparse.Namespace], int]], argparse.ArgumentParser]


def cmd_track(args: argparse.Namespace) -> int:
    from makeusrich.settings import from_args
    from makeusrich.track.settings import TrackSettings

    settings = from_args(TrackSettings, args)
    return asyncio.run(run_track(settings))


async def run_track(settings: TrackSettings) -> int:
    from makeusrich.market.feed import CandleFeed
    from makeusrich.market.source import Source
    from makeusrich.net import check_free
    from makeusrich.store import store_location
    from makeusrich.track.metrics import serve_http
    from makeusrich.track.tracker import Tracker, TrackOptions

    kind, where = store_location(settings.store)
    store = where if kind == "file" else settings.store
    source = settings.pair_source(store, agent="makeusrich-track")
    feed = CandleFeed(Source.parse(settings.source), api_url=settings.api_url, max_retries=settings.binance_retries)
    options = TrackOptions(
        serving_timeout=settings.serving_timeout, concurrency=settings.concurrency, retry_seconds=settings.retry_seconds
    )
    tracker = Tracker(source, feed, store, options)
    try:
        if settings.once:
            report = await tracker.round()
            for line in report.lines() or [f"{len(report.pairs)} pair(s): nothing due"]:
                print(line)
            return 1 if any(r.error for r in report.pairs) else 0
        check_free(settings.host, settings.port)
        server = serve_http(tracker, settings.host, settings.port)
        log.info("tracking %s; metrics on http://%s:%d/metrics", source.describe(), settings.host, server.server_port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            await tracker.run(stop)
        finally:
            server.shutdown()
            server.server_close()
        return 0
    finally:
        await tracker.aclose()
        await source.aclose()


def add_track_command(add: Add) -> None:
    from makeusrich.environment import KUBERNETES, S3, epilog
    from makeusrich.settings import add_flags, variables
    from makeusrich.track.settings import TrackSettings

    p = add(
        "track",
        "record every served forecast after each candle close and score it once its candle has closed",
        cmd_track,
    )
    add_flags(p, TrackSettings)
    p.epilog = epilog(
        [*variables(TrackSettings), *KUBERNETES, *S3],
        note="Rows go to <namespace>/<pair>/track/<YYYY-MM>.parquet and a summary to <namespace>/<pair>/track.json "
        "in the store. With the bundled sample (offline) nothing is recorded. Times name the moment a candle closes.",
    )
