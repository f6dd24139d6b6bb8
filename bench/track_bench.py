"""How one tracker copes with many pairs: seconds per round (every pair asked and recorded after one candle
close), peak memory, and requests per pair per round.

Everything runs on loopback: the Binance stand-in of the tests (tests/fixtures/fake_binance.py, one synthetic
1h series per pair, served from a thread of this process, so its work counts against the tracker's time), the
real model server (`makeusrich serve`, a subprocess, serving one model of the default shape, a 120-candle window
and two LSTM layers of 64, under every pair's name), and a local store. Each pair's record starts with 30 days of
scored hourly forecasts, as after a month of running: a round's cost grows with the rows the tracker holds,
summarises and rewrites. The tracker is the real one (makeusrich.track.tracker), over pair files, as
`makeusrich up` runs it. Round 1 also reads each pair's stored rows and model metadata; the rounds after it are
the steady state.

    python bench/track_bench.py [--pairs 1000] [--rounds 4] [--write]

`--write` records the table, the command and the date in bench/results/track.md.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import platform
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script: make `tests.fixtures` importable

from makeusrich.market.feed import CandleFeed  # noqa: E402
from makeusrich.market.source import Source  # noqa: E402
from makeusrich.pairs import EmbeddedSource, pair_yaml  # noqa: E402
from makeusrich.store import pair_store  # noqa: E402
from makeusrich.store.track import forecast_rows, month_of, month_rows, score_rows  # noqa: E402
from makeusrich.track.summary import summarize  # noqa: E402
from makeusrich.track.tracker import Tracker, TrackOptions  # noqa: E402
from makeusrich.v2client import V2Client  # noqa: E402
from tests.fixtures.fake_binance import FakeBinance, synthetic_klines  # noqa: E402
from tests.fixtures.model_server import launch  # noqa: E402
from tests.fixtures.models import small_pair  # noqa: E402

RESULTS = REPO / "bench" / "results" / "track.md"
HOUR_MS = 3_600_000
HISTORY = 150  # candles each pair's series starts with (the model's window is 120)
SEEDED_DAYS = 30  # of scored forecasts in each pair's record before round 1
MODEL = {"window": 120, "hiddenSize": 64, "layers": 2}  # the default shape (makeusrich.pair.ModelSpec)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fresh_tracker_mb() -> float:
    """Peak RSS of a fresh process that imports what `makeusrich track` runs (the interpreter, pandas, pyarrow,
    the HTTP and Kubernetes clients, prometheus-client): a tracker's memory before its first pair."""
    code = (  # VmHWM, not ru_maxrss: that one keeps the forking parent's peak across exec
        "import re, makeusrich.track.cli, makeusrich.track.tracker, makeusrich.track.metrics, makeusrich.pairs, "
        "pyarrow.parquet; print(int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1]) / 1024)"
    )
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=REPO)
    return float(done.stdout.strip())


def cpu_seconds(pid: int | None = None) -> float:
    """User and system CPU seconds of this process (the tracker and the Binance stand-in) or of `pid`."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def make_store(root: Path, names: list[str]) -> str:
    """One small model trained on the bundled candles (by `makeusrich train` in a child process: this one never
    imports torch, so its memory is the tracker's), published under every pair's name."""
    url = f"file://{root}"
    template = root.parent / "template.yaml"
    template.write_text(pair_yaml(small_pair("template", model={**MODEL, "maxEpochs": 1})))
    command = [sys.executable, "-m", "makeusrich.cli", "train", "-f", str(template), "--source", "sample"]
    subprocess.run([*command, "--store", url], check=True, capture_output=True, timeout=600)
    source = pair_store(url, "default", "template")
    version = source.versions()[-1]
    meta = source.metadata(version)
    files = {path: source.read_file(version, path) for path in meta["files"]}
    metadata = {k: v for k, v in meta.items() if k not in ("files", "storageUri")}
    for name in names:
        renamed = {
            path.replace("template", name, 1): data.replace(b'"template"', f'"{name}"'.encode())
            if path.endswith("config.pbtxt")
            else data
            for path, data in files.items()
        }
        pair_store(url, "default", name).publish(version, renamed, {**metadata, "pair": name}, True)
    shutil.rmtree(root / "default" / "template")
    return url


def seed_track(store_url: str, names: list[str], version: str, levels: tuple[float, ...], newest_ms: int) -> None:
    """SEEDED_DAYS of scored hourly forecasts in every pair's record, the last at the close before `newest_ms`,
    and the track.json they give: the tracker then holds, scores and rewrites what a month of running leaves."""
    step = pd.Timedelta(hours=1)
    origins = pd.date_range(end=pd.Timestamp(newest_ms, unit="ms", tz="UTC") - step, periods=SEEDED_DAYS * 24, freq="h")
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
            store.write_track(month, part)
        store.write_track_summary(summarize(rows, name, "default", "1h", now))


def wait_all_ready(url: str, names: list[str], timeout: float = 300.0) -> float:
    started = time.monotonic()
    with httpx.Client(base_url=url, timeout=10) as client:
        for name in names:
            while client.get(f"/v2/models/{name}/ready").status_code != 200:
                if time.monotonic() - started > timeout:
                    raise RuntimeError(f"{name} was not ready within {timeout:g} s")
                time.sleep(0.2)
    return time.monotonic() - started


async def measure(args: argparse.Namespace, work: Path) -> list[dict[str, float]]:
    names = [f"c{i:04d}-usdt" for i in range(args.pairs)]
    pairs_dir = work / "pairs"
    pairs_dir.mkdir()
    print(f"training one model and publishing it as {args.pairs} pairs ...", flush=True)
    store_url = make_store(work / "store", names)
    for name in names:
        pair = small_pair(name, currency=name.split("-")[0], model=MODEL)
        (pairs_dir / f"{name}.yaml").write_text(pair_yaml(pair))
    server = launch(["--store", store_url, "--poll-seconds", "3600"], work / "serve.log")
    try:
        print(f"model server loaded {args.pairs} models in {wait_all_ready(server.url, names):.0f} s", flush=True)
        end_ms = (int(time.time() * 1000) // HOUR_MS) * HOUR_MS
        series = {n: synthetic_klines("1h", HISTORY + args.rounds, now_ms=end_ms, seed=i) for i, n in enumerate(names)}
        async with V2Client(server.url) as client:
            model = await client.model_metadata(names[0])
        assert model.levels, "the bench's model has no quantile levels"
        print(f"seeding {SEEDED_DAYS} days of scored forecasts per pair ...", flush=True)
        seed_track(store_url, names, model.version or "", model.levels, int(series[names[0]][HISTORY - 1][0]) + HOUR_MS)
        symbols = {n: n.split("-")[0].upper() + "USDT" for n in names}
        clock = {"now": 0.0}
        with FakeBinance(bundled=False) as fake:

            def serve_candles(count: int) -> None:
                for name in names:
                    fake.add_rows(symbols[name], "1h", series[name][:count])
                rows = series[names[0]][:count]
                clock["now"] = (int(rows[-1][0]) + HOUR_MS) / 1000 + 5.0  # five seconds after the newest close

            source = EmbeddedSource(pairs_dir, store_url, server.url)
            feed = CandleFeed(Source("binance"), api_url=fake.url, clock=lambda: clock["now"], max_retries=0)
            tracker = Tracker(source, feed, store_url, TrackOptions(concurrency=args.concurrency), lambda: clock["now"])
            before = rss_mb()
            results = []
            for r in range(args.rounds):
                serve_candles(HISTORY + r)
                fake.requests.clear()
                profile = cProfile.Profile() if args.profile and r == args.rounds - 1 else None
                cpu_before = cpu_seconds(), cpu_seconds(server.process.pid)
                started = time.perf_counter()
                if profile is not None:
                    profile.enable()
                report = await tracker.round()
                seconds = time.perf_counter() - started
                cpu_tracker = cpu_seconds() - cpu_before[0]
                cpu_server = cpu_seconds(server.process.pid) - cpu_before[1]
                if profile is not None:
                    profile.disable()
                    pstats.Stats(profile).sort_stats("cumulative").print_stats(25)
                recorded = sum(p.recorded for p in report.pairs)
                errors = [p.error for p in report.pairs if p.error]
                if errors:
                    print(f"round {r + 1}: {len(errors)} pair(s) failed, first: {errors[0]}", flush=True)
                model_requests = sum(p.requests for p in report.pairs)
                row = {
                    "round": r + 1,
                    "seconds": seconds,
                    "recorded": recorded,
                    "scored": sum(p.scored for p in report.pairs),
                    "binance_per_pair": len(fake.requests_to("klines")) / args.pairs,
                    "model_per_pair": model_requests / args.pairs,
                    "peak_rss_mb": rss_mb(),
                    "growth_mb": rss_mb() - before,
                    "cpu_tracker": cpu_tracker,
                    "cpu_server": cpu_server,
                }
                results.append(row)
                print(
                    f"round {r + 1}: {seconds:.1f} s, {recorded} recorded, {row['scored']} scored, "
                    f"{row['binance_per_pair']:.2f} Binance + {row['model_per_pair']:.2f} model requests per pair, "
                    f"peak RSS {row['peak_rss_mb']:.0f} MB (before the tracker: {before:.0f} MB), CPU s: "
                    f"{cpu_tracker:.1f} tracker and stand-in, {cpu_server:.1f} model server",
                    flush=True,
                )
            await tracker.aclose()
    finally:
        server.stop()
    fresh = fresh_tracker_mb()
    for row in results:
        row["tracker_mb"] = fresh + row["growth_mb"]
    print(f"a fresh tracker process: {fresh:.0f} MB; with the growth measured here: {results[-1]['tracker_mb']:.0f} MB")
    return results


def write(results: list[dict[str, float]], args: argparse.Namespace) -> None:
    lines = [
        "# Track record: one tracker, many pairs",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.machine()}, Python {platform.python_version()}, "
        f"{args.pairs} pairs, concurrency {args.concurrency}:",
        "",
        "```",
        f"python bench/track_bench.py --pairs {args.pairs} --rounds {args.rounds} --concurrency {args.concurrency}"
        " --write",
        "```",
        "",
        "| round | seconds | recorded | scored | Binance requests per pair | model requests per pair "
        "| CPU s, tracker and stand-in | CPU s, model server | bench process peak RSS MB | tracker growth MB "
        "| tracker process MB (fresh + growth) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results:
        lines.append(
            f"| {row['round']:.0f} | {row['seconds']:.1f} | {row['recorded']:.0f} | {row['scored']:.0f} | "
            f"{row['binance_per_pair']:.2f} | {row['model_per_pair']:.2f} | {row['cpu_tracker']:.1f} | "
            f"{row['cpu_server']:.1f} | {row['peak_rss_mb']:.0f} | {row['growth_mb']:.0f} | {row['tracker_mb']:.0f} |"
        )
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--profile", action="store_true", help="print where the last round spent its time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        results = asyncio.run(measure(args, Path(folder)))
    if args.write:
        write(results, args)


if __name__ == "__main__":
    main()
