"""How long a full fetch of one year of hourly candles takes, and how many requests it makes.

Serves the candles from tests/fixtures/fake_binance (real HTTP on loopback, so network latency to Binance is
not in the numbers: on the real API, add one round trip per request) and fetches them through
`makeusrich.market.binance.fetch_klines`. For comparison it also times python-binance's own
`get_historical_klines`, which this project does not use.

    python bench/fetch_bench.py [--repeats 5] [--write]

`--write` records the table, the command, the commit and the date in bench/results/fetch.md. Scenarios: a
full fetch, then runs through the store's candle cache (first, up to date, one hour later).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import _harness
from binance.client import Client

from makeusrich.market import Source, load_candles
from makeusrich.market.binance import fetch_klines
from makeusrich.pair import CurrencyPairSpec
from makeusrich.store import LocalStore, PairStore
from tests.fixtures.fake_binance import FakeBinance

YEAR_HOURS = 8_760
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    scenario: str
    candles: int
    requests: int
    median_s: float
    best_s: float
    repeats: int


def _time(run: Callable[[], tuple[int, int]], repeats: int) -> tuple[int, int, list[float]]:
    """Run `repeats` times; returns (candles, requests) of the last run and the wall times."""
    times, (candles, requests) = _harness.timings(run, repeats)
    return candles, requests, times


def _row(scenario: str, candles: int, requests: int, times: list[float]) -> Row:
    return Row(scenario, candles, requests, statistics.median(times), min(times), len(times))


def serve_year(server: FakeBinance) -> tuple[str, str, int]:
    """Serve one year of synthetic hourly candles ending now: 8,760 closed ones plus the one still open."""
    server.add_synthetic("BTCUSDT", "1h", YEAR_HOURS + 1, seed=1)
    first = server.rows("BTCUSDT", "1h")[0][0]
    return "BTCUSDT", "1h", first


def bench_full_fetch(server: FakeBinance, repeats: int = 5) -> list[Row]:
    """A first fetch with no cache: one year of hourly candles, up to now, through fetch_klines."""
    symbol, interval, start = serve_year(server)

    def run() -> tuple[int, int]:
        server.clear()
        result = fetch_klines(symbol, interval, start, api_url=server.url)
        # The server's own count guards against a miscounting client.
        assert result.requests == len(server.requests), (result.requests, len(server.requests))
        return len(result.frame), result.requests

    candles, requests, times = _time(run, repeats)
    # 8,760, or one less within CLOCK_SKEW_MS after the hour (the newest candle waits for the next fetch).
    if candles not in (YEAR_HOURS, YEAR_HOURS - 1):
        raise SystemExit(f"full fetch returned {candles} candles, expected {YEAR_HOURS}")
    return [_row("full fetch, 1 year of 1h candles (fetch_klines)", candles, requests, times)]


def bench_python_binance_historical(server: FakeBinance, repeats: int = 1) -> list[Row]:
    """The same year through python-binance's get_historical_klines (sleeps 1 s after every third page)."""
    symbol, interval, start = serve_year(server)

    def run() -> tuple[int, int]:
        server.clear()
        client = Client(ping=False, requests_params={"timeout": 10})
        client.API_URL = server.url
        rows = client.get_historical_klines(symbol, interval, start)
        client.close_connection()
        return len(rows), len(server.requests)

    candles, requests, times = _time(run, repeats)
    return [_row("same, python-binance get_historical_klines (not used)", candles, requests, times)]


def bench_cached_runs(server: FakeBinance, repeats: int = 5) -> list[Row]:
    """What a scheduled training run does: load_candles through the store's candle cache. The first run fills
    the cache; a run in the same hour is up to date; a run an hour later fetches the one new candle."""
    now = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
    server.add_synthetic("BTCUSDT", "1h", YEAR_HOURS + 3, now_ms=int(now.timestamp() * 1000) + 2 * HOUR_MS, seed=1)
    spec = CurrencyPairSpec(currency="btc", compare="usdt", lookback_days=365)
    rows: list[Row] = []
    for label, offset_h in (
        ("first run, empty cache", 0),
        ("second run, same hour (up to date)", 0),
        ("run one hour later (one new candle)", 1),
    ):
        times, candles, requests = [], 0, 0
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as folder:
                store = PairStore(LocalStore(folder), "default", "btc-usdt")
                if label != "first run, empty cache":
                    load_candles(spec, Source("binance"), store, now=now, api_url=server.url)
                server.clear()
                began = time.perf_counter()
                when = datetime.fromtimestamp(now.timestamp() + offset_h * 3600, UTC)
                result = load_candles(spec, Source("binance"), store, now=when, api_url=server.url)
                times.append(time.perf_counter() - began)
                candles, requests = len(result.frame), len(server.requests)
                assert result.requests == requests, (result.requests, requests)
        rows.append(_row(f"load_candles with the store's cache: {label}", candles, requests, times))
    return rows


SCENARIOS: list[Callable[[FakeBinance, int], list[Row]]] = [bench_full_fetch, bench_cached_runs]


def table(rows: list[Row]) -> str:
    return _harness.table(
        ["scenario", "candles", "requests", "median wall time", "best", "runs"],
        (
            [
                row.scenario,
                f"{row.candles:,}",
                row.requests,
                f"{row.median_s * 1000:.0f} ms",
                f"{row.best_s * 1000:.0f} ms",
                row.repeats,
            ]
            for row in rows
        ),
        "lrrrrr",
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-baseline", action="store_true", help="skip python-binance's own pager")
    run = _harness.Run.start(parser, __file__, argv)
    rows: list[Row] = []
    with FakeBinance(bundled=False) as server:
        for scenario in SCENARIOS:
            rows.extend(scenario(server, run.args.repeats))
        if not run.args.no_baseline:
            rows.extend(bench_python_binance_historical(server, 1))
    run.finish(
        table(rows)
        + "\n\nRequests: 9 = ceil(8,761 / 1000) klines pages and nothing else (no ping, no exchangeInfo, no\n"
        "earliest-timestamp lookup). python-binance's get_historical_klines makes one more request (the\n"
        "earliest-timestamp lookup) and sleeps 1 s after every third page, which is why this project pages\n"
        "itself. With the store's candle cache (a local folder here), an up-to-date run makes no request and\n"
        "a run one hour later makes one (target: 1 or 0). Wall times of cached runs include reading and\n"
        "writing the parquet cache and validating the year of candles.\n",
        title="Candle fetch benchmark",
        settings={"candles": YEAR_HOURS, "interval": "1h", "lookbackDays": 365, "baselineRepeats": 1},
        versions=("python-binance",),
        notes=[
            "Server: tests/fixtures/fake_binance.py on 127.0.0.1 (real HTTP, keep-alive, no network latency); "
            "against api.binance.com add one round trip per request. Candles: 8,760 closed synthetic hourly "
            "candles ending at the last closed hour, plus the open one (served, dropped by the fetch).",
        ],
    )


if __name__ == "__main__":
    main()
