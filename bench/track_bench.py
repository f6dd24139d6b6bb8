"""How one tracker copes with many pairs: seconds per round (every pair asked and recorded after one candle
close), memory, and requests per pair per round.

Everything runs on loopback, each part in a process of its own: the Binance stand-in of the tests
(tests/fixtures/fake_binance.py, one synthetic 1h series per pair), the real model server (`makeusrich serve`,
serving one model of the default shape, a 120-candle window and two LSTM layers of 64, under every pair's name),
and the tracker, the real one (makeusrich.track), over pair files and a local store, in this process
(`--workers 1`) or in this process and N worker processes (`--workers N`, as `makeusrich track --workers N`
runs them). Each pair's record starts with 30 days of scored hourly forecasts, as after a month of running: a
round's cost grows with the rows the tracker reads, summarises and rewrites. Round 1 also reads each pair's
track.json and model metadata; the rounds after it are the steady state.

Memory is the tracker's processes' proportional set size (PSS), after each round and at its highest during it
(sampled every 0.2 s): pages the workers share with this process (forked, copy on write) count once, as a
container's memory limit counts them.

    python bench/track_bench.py [--pairs 1000] [--rounds 4] [--workers 1] [--concurrency 16] [--write]

`--write` records the table, the command, the commit and the date in bench/results/track.md, in the section of
its pair and worker counts (the other sections and the notes above them stay).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import multiprocessing
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import _harness
import httpx
import numpy as np
import pandas as pd

from makeusrich.market import CandleFeed, Source, interval_ms
from makeusrich.pair_sources import EmbeddedSource, PairSource, pair_yaml
from makeusrich.store import TrackFiles, pair_store
from makeusrich.store.track_schema import month_of, month_rows
from makeusrich.track.rows import forecast_rows, score_rows
from makeusrich.track.shards import TrackerPool
from makeusrich.track.summary import summarize
from makeusrich.track.tracker import RoundLoop, Tracker, TrackOptions
from tests.fixtures.fake_binance import FakeBinance, synthetic_klines
from tests.fixtures.model_server import launch
from tests.serving.helpers import publish_as

HISTORY = 150  # candles each pair's series starts with (the model's window is 120)
SEEDED_DAYS = 30  # of scored forecasts in each pair's record before round 1


def pair_names(count: int) -> list[str]:
    return [f"c{i:04d}-usdt" for i in range(count)]


def symbol_of(name: str) -> str:
    return name.split("-")[0].upper() + "USDT"


def series_of(names: list[str], count: int, end_ms: int, interval: str) -> dict[str, list[list[Any]]]:
    return {n: synthetic_klines(interval, count, now_ms=end_ms, seed=i) for i, n in enumerate(names)}


def stand_in(pairs: int, count: int, end_ms: int, interval: str) -> None:
    """The Binance stand-in's own process (`--stand-in`): prints its URL, then answers each line on stdin: `K`
    serves the first K candles of every pair (answering the newest open time), `requests` answers the klines
    requests received since the last `requests`."""
    names = pair_names(pairs)
    series = series_of(names, count, end_ms, interval)
    with FakeBinance(bundled=False) as fake:
        print(fake.url, flush=True)
        for line in sys.stdin:
            if line.strip() == "requests":
                print(len(fake.requests_to("klines")), flush=True)
                fake.requests.clear()
                continue
            served = int(line)
            for name in names:
                fake.add_rows(symbol_of(name), interval, series[name][:served])
            print(int(series[names[0]][served - 1][0]), flush=True)


class StandIn:
    """Drives the stand-in process."""

    def __init__(self, pairs: int, count: int, end_ms: int, interval: str) -> None:
        command = [sys.executable, __file__, "--stand-in", str(pairs), str(count), str(end_ms), interval]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=_harness.REPO
        )
        self.url = self._ask(None)

    def _ask(self, line: str | None) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        if line is not None:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
        return self.process.stdout.readline().strip()

    def serve(self, count: int) -> int:
        """Serve `count` candles per pair; the newest one's open time (epoch ms)."""
        return int(self._ask(str(count)))

    def klines_requests(self) -> int:
        """Klines requests received since the last call."""
        return int(self._ask("requests"))

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)


def make_store(root: Path, names: list[str]) -> str:
    """One model of the default shape trained on the bundled candles (by `makeusrich train` in a child process:
    this one never imports torch, so its memory is the tracker's), published under every pair's name as three
    versions, each promoted over the one before: the baseline, the LSTM, and the LSTM again, served. So every pair
    has both shadows (the version the served one replaced, and the baseline), as after a few days of running."""
    url = f"file://{root}"
    template = root.parent / "template.yaml"
    template.write_text(pair_yaml(_harness.default_shape_pair("template")))
    command = _harness.cli("train", "-f", str(template), "--source", "sample", "--store", url)
    subprocess.run(command, check=True, capture_output=True, timeout=600, env=_harness.child_env(), cwd=_harness.REPO)
    baseline, lstm = pair_store(url, "default", "template").versions()
    publish_as(url, "template", names, version=baseline)
    publish_as(url, "template", names, version=lstm)
    later = (datetime.strptime(lstm, "%Y%m%dT%H%M%SZ") + timedelta(seconds=1)).strftime("%Y%m%dT%H%M%SZ")
    publish_as(url, "template", names, version=lstm, as_version=later)
    shutil.rmtree(root / "default" / "template")
    return url


def seed_track(
    store_url: str, names: list[str], version: str, levels: tuple[float, ...], newest_ms: int, interval: str
) -> None:
    """SEEDED_DAYS of scored forecasts in every pair's record, the last at the close before `newest_ms`, and the
    track.json they give: the tracker then reads, scores and rewrites what a month of running leaves."""
    step = pd.Timedelta(milliseconds=interval_ms(interval))
    origins = pd.date_range(
        end=pd.Timestamp(newest_ms, unit="ms", tz="UTC") - step,
        periods=SEEDED_DAYS * (pd.Timedelta(days=1) // step),
        freq=step,
    )
    rng = np.random.default_rng(0)
    price = 100 * np.exp(np.cumsum(rng.normal(0, 0.005, len(origins) + 1)))
    spread = np.asarray(levels) - 0.5
    parts = [
        forecast_rows(
            origin,
            step,
            version,
            price[i],
            [price[i] * 1.0005],
            (price[i] * (1 + 0.02 * spread))[None, :],
            levels,
            (origin + pd.Timedelta(seconds=5)).to_pydatetime(),
        )
        for i, origin in enumerate(origins)
    ]
    now = (origins[-1] + step).to_pydatetime()
    rows, _ = score_rows(pd.concat(parts, ignore_index=True), pd.Series(price[1:], index=origins + step), now)
    months = set(rows["origin"].map(month_of))
    for name in names:
        store = pair_store(store_url, "default", name)
        for month, part in month_rows(rows, months):
            TrackFiles(store).write(month, part)
        TrackFiles(store).write_summary(summarize(rows, name, "default", interval, now))


def wait_all_ready(url: str, names: list[str], timeout: float = 300.0) -> float:
    started = time.monotonic()
    with httpx.Client(base_url=url, timeout=10) as client:
        for name in names:
            while client.get(f"/v2/models/{name}/ready").status_code != 200:
                if time.monotonic() - started > timeout:
                    raise RuntimeError(f"{name} was not ready within {timeout:g} s")
                time.sleep(0.2)
    return time.monotonic() - started


def measure(args: argparse.Namespace, work: Path) -> list[dict[str, float]]:
    names = pair_names(args.pairs)
    pairs_dir = work / "pairs"
    pairs_dir.mkdir()
    print(f"training one model and publishing it as {args.pairs} pairs ...", flush=True)
    store_url = make_store(work / "store", names)
    for name in names:
        pair = _harness.default_shape_pair(name, currency=name.split("-")[0], interval=args.interval)
        (pairs_dir / f"{name}.yaml").write_text(pair_yaml(pair))
    # each of the pairs' versions is checked in a process of its own before it serves: minutes for a thousand
    server = launch(["--store", store_url, "--poll-seconds", "3600"], work / "serve.log", timeout=900)
    step_ms = interval_ms(args.interval)
    end_ms = (int(time.time() * 1000) // step_ms) * step_ms
    candles = StandIn(args.pairs, HISTORY + args.rounds, end_ms, args.interval)
    try:
        print(f"model server loaded {args.pairs} models in {wait_all_ready(server.url, names):.0f} s", flush=True)
        meta = httpx.get(f"{server.url}/v2/models/{names[0]}", timeout=10).json()["parameters"]
        levels = tuple(float(v) for v in meta["quantile_levels"])
        newest_ms = candles.serve(HISTORY) + step_ms
        print(f"seeding {SEEDED_DAYS} days of scored forecasts per pair ...", flush=True)
        fork = multiprocessing.get_context("fork")
        seeding = fork.Process(
            target=seed_track, args=(store_url, names, meta["served_version"], levels, newest_ms, args.interval)
        )
        seeding.start()  # in a child, so that this process holds nothing but the tracker
        seeding.join()
        assert seeding.exitcode == 0, "seeding the track records failed"
        clock = {"now": 0.0}
        options = TrackOptions(concurrency=args.concurrency)

        def make(shard: Any = lambda source: source, clock_of: Any = lambda: clock["now"]) -> Tracker:
            source: PairSource = shard(EmbeddedSource(pairs_dir, store_url, server.url))
            feed = CandleFeed(Source("binance"), api_url=candles.url, clock=clock_of, max_retries=0)
            return Tracker(source, feed, store_url, options, clock_of)

        # Workers fork here, before this process starts an event loop or a thread, as `makeusrich track` does.
        now = lambda: clock["now"]  # noqa: E731
        rounds: RoundLoop = make() if args.workers == 1 else TrackerPool(make, args.workers, options, now)
        return asyncio.run(run_rounds(args, rounds, candles, server.process.pid, clock))
    finally:
        candles.stop()
        server.stop()


async def run_rounds(
    args: argparse.Namespace, rounds: RoundLoop, candles: StandIn, server_pid: int, clock: dict[str, float]
) -> list[dict[str, float]]:
    tracker_pids = [os.getpid(), *(rounds.worker_pids if isinstance(rounds, TrackerPool) else [])]
    pids = {"tracker": tracker_pids, "server": [server_pid], "stand-in": [candles.process.pid]}
    results = []
    for r in range(args.rounds):
        newest_open_ms = candles.serve(HISTORY + r)
        candles.klines_requests()  # from zero for this round
        clock["now"] = (newest_open_ms + interval_ms(args.interval)) / 1000 + 5.0  # five seconds after the close
        before = {part: sum(_harness.cpu_seconds(p) for p in ps) for part, ps in pids.items()}
        profile = cProfile.Profile() if args.profile and r == args.rounds - 1 else None
        started = time.perf_counter()
        if profile is not None:
            profile.enable()
        with _harness.Sampler(lambda: _harness.pss_mib(tracker_pids), 0.2) as pss:
            report = await rounds.round()
        seconds = time.perf_counter() - started
        if profile is not None:
            profile.disable()
            pstats.Stats(profile).sort_stats("cumulative").print_stats(25)
        cpu = {part: sum(_harness.cpu_seconds(p) for p in ps) - before[part] for part, ps in pids.items()}
        errors = [p.error for p in report.pairs if p.error]
        if errors:
            print(f"round {r + 1}: {len(errors)} pair(s) failed, first: {errors[0]}", flush=True)
        klines = candles.klines_requests()
        row = {
            "round": r + 1,
            "seconds": seconds,
            "recorded": sum(p.recorded for p in report.pairs),
            "waiting": sum(p.waiting for p in report.pairs),
            "gaps": sum(p.gaps for p in report.pairs),
            "scored": sum(p.scored for p in report.pairs),
            "binance_per_pair": klines / args.pairs,
            "model_per_pair": sum(p.requests for p in report.pairs) / args.pairs,
            "cpu_tracker": cpu["tracker"],
            "cpu_ms_per_pair": 1000 * cpu["tracker"] / args.pairs,
            "cpu_server": cpu["server"],
            "cpu_stand_in": cpu["stand-in"],
            "pss_mb": _harness.pss_mib(tracker_pids),
            "peak_pss_mb": pss.peak(),
            "peak_rss_mb": sum(_harness.peak_rss_mib(p) for p in tracker_pids),
        }
        results.append(row)
        print(
            f"round {r + 1}: {seconds:.1f} s, {row['recorded']:.0f} recorded, {row['waiting']:.0f} waiting, "
            f"{row['gaps']:.0f} gaps, {row['scored']:.0f} scored, "
            f"{row['binance_per_pair']:.2f} Binance + {row['model_per_pair']:.2f} model requests per pair; CPU s: "
            f"tracker {cpu['tracker']:.1f}, model server {cpu['server']:.1f}, stand-in {cpu['stand-in']:.1f}; "
            f"tracker memory {row['pss_mb']:.0f} MB PSS after the round, {row['peak_pss_mb']:.0f} MB at its highest "
            f"({row['peak_rss_mb']:.0f} MB peak RSS summed)",
            flush=True,
        )
    await rounds.aclose()
    return results


def table(results: list[dict[str, float]]) -> str:
    header = ["round", "seconds", "recorded", "waiting", "gaps", "scored"]
    header += ["Binance requests per pair", "model requests per pair"]
    header += ["CPU s, tracker", "tracker CPU ms per pair", "CPU s, model server", "CPU s, stand-in"]
    header += ["tracker PSS MB, after"]
    header += ["tracker PSS MB, highest", "tracker peak RSS MB, summed"]
    return _harness.table(
        header,
        (
            [
                f"{row['round']:.0f}",
                f"{row['seconds']:.1f}",
                f"{row['recorded']:.0f}",
                f"{row['waiting']:.0f}",
                f"{row['gaps']:.0f}",
                f"{row['scored']:.0f}",
                f"{row['binance_per_pair']:.2f}",
                f"{row['model_per_pair']:.2f}",
                f"{row['cpu_tracker']:.1f}",
                f"{row['cpu_ms_per_pair']:.1f}",
                f"{row['cpu_server']:.1f}",
                f"{row['cpu_stand_in']:.1f}",
                f"{row['pss_mb']:.0f}",
                f"{row['peak_pss_mb']:.0f}",
                f"{row['peak_rss_mb']:.0f}",
            ]
            for row in results
        ),
    )


def main(argv: list[str] | None = None) -> None:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--stand-in":
        stand_in(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--profile", action="store_true", help="print where the last round spent its time")
    parser.add_argument("--interval", default="1h", help="the pairs' candle interval (1h, or 1m: a round a minute)")
    run = _harness.Run.start(parser, __file__, argv)
    args = run.args
    with tempfile.TemporaryDirectory() as folder:
        results = measure(args, Path(folder))
    run.finish(
        table(results),
        title="Track record: one tracker, many pairs",
        part=f"{args.pairs} pairs, {args.workers} worker process(es)"
        + ("" if args.interval == "1h" else f", {args.interval}"),
        settings={
            **_harness.DEFAULT_SHAPE,
            "historyCandles": HISTORY,
            "seededDays": SEEDED_DAYS,
            "interval": args.interval,
        },
        versions=("pandas", "pyarrow", "httpx", "onnxruntime", "kserve"),
    )


if __name__ == "__main__":
    main()
