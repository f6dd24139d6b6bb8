"""What serving a model over v2 REST costs: `makeusrich serve` on loopback against onnxruntime's own time.

Trains a model of the default size (window 120, LSTM 64 units, 2 layers; 1 epoch on the bundled real candles:
weights do not change the cost) with the real trainer into a temporary store, starts the real server in a
subprocess (tests/fixtures/model_server.py, the helper the tests use), and measures, in one run:

1. onnxruntime alone: `session.run` on one window, same options as the server (1 intra-op thread).
2. Latency of one-window requests, one after another over one keep-alive connection, with a minimal
   HTTP/1.1 client (http.client) and with this project's V2Client (httpx); p50 and p99, and the ratio of the
   p50 to onnxruntime's p50.
3. The same with `--inline-batch 0` (every request hops to a worker thread), to show what the hop costs.
4. Throughput with 8 concurrent clients (asyncio, raw keep-alive HTTP/1.1 in this process) for batch 1 and
   batch 64 windows per request: requests/s, windows/s, latency under load, failed requests.

    python bench/serve_bench.py [--requests 3000] [--seconds 10] [--write]

`--write` records the tables, the command, the date and the machine's load in bench/results/serve.md. The
client shares the machine with the server: on 2 cores the numbers include the client's own CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script: make `tests.fixtures` importable

from makeusrich.market import Source  # noqa: E402
from makeusrich.trainer.export import onnx_session  # noqa: E402
from makeusrich.trainer.pipeline import run_training  # noqa: E402
from makeusrich.v2client import V2Client  # noqa: E402
from tests.fixtures.model_server import RunningServer, launch  # noqa: E402
from tests.fixtures.models import small_pair  # noqa: E402
from tests.serving.helpers import real_windows  # noqa: E402

RESULTS = REPO / "bench" / "results" / "serve.md"
PAIR = "btc-usdt"
CLIENTS = 8
WARMUP = 200


@dataclass(frozen=True)
class Latency:
    label: str
    times: list[float]

    def pct(self, q: float) -> float:
        ordered = sorted(self.times)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    @property
    def p50(self) -> float:
        return statistics.median(self.times) * 1000


@dataclass(frozen=True)
class Throughput:
    batch: int
    requests: int
    failed: int
    seconds: float
    latency: Latency

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def infer_body(candles: np.ndarray) -> bytes:
    tensor = {"name": "candles", "shape": list(candles.shape), "datatype": "FP32", "data": candles.ravel().tolist()}
    return json.dumps({"inputs": [tensor]}).encode()


def time_calls(call: Callable[[], object], count: int) -> list[float]:
    for _ in range(min(WARMUP, count)):
        call()
    times = []
    for _ in range(count):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return times


def onnxruntime_alone(model: bytes, candles: np.ndarray, count: int) -> Latency:
    session = onnx_session(model, threads=1)
    label = f"onnxruntime session.run alone, {len(candles)} window{'s' if len(candles) > 1 else ''}"
    return Latency(label, time_calls(lambda: session.run(["forecast"], {"candles": candles}), count))


def http_client_latency(server: RunningServer, body: bytes, count: int, label: str) -> Latency:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    headers = {"content-type": "application/json"}

    def call() -> None:
        connection.request("POST", f"/v2/models/{PAIR}/infer", body, headers)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"the server answered {response.status}")

    try:
        return Latency(label, time_calls(call, count))
    finally:
        connection.close()


async def v2client_latency(server: RunningServer, window: np.ndarray, count: int) -> Latency:
    async with V2Client(server.url, timeout=10) as client:
        for _ in range(min(WARMUP, count)):
            await client.infer(PAIR, window)
        times = []
        for _ in range(count):
            began = time.perf_counter()
            await client.infer(PAIR, window)
            times.append(time.perf_counter() - began)
    return Latency("V2Client.infer (httpx), keep-alive", times)


async def raw_client(
    server: RunningServer, body: bytes, stop_at: float, times: list[float], failures: list[int]
) -> None:
    """One keep-alive connection sending requests back to back: the least client work per request."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    request = (
        f"POST /v2/models/{PAIR}/infer HTTP/1.1\r\nHost: {server.host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    try:
        while time.perf_counter() < stop_at:
            began = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            times.append(time.perf_counter() - began)
            if status != 200:
                failures.append(status)
    finally:
        writer.close()


async def throughput(server: RunningServer, windows: np.ndarray, batch: int, seconds: float) -> Throughput:
    body = infer_body(windows[:batch])
    warm: list[float] = []
    await raw_client(server, body, time.perf_counter() + 1.0, warm, [])
    times: list[float] = []
    failures: list[int] = []
    began = time.perf_counter()
    stop_at = began + seconds
    await asyncio.gather(*(raw_client(server, body, stop_at, times, failures) for _ in range(CLIENTS)))
    elapsed = time.perf_counter() - began
    return Throughput(batch, len(times), len(failures), elapsed, Latency(f"batch {batch}", times))


def train(root: Path) -> tuple[str, bytes]:
    pair = small_pair(model={"window": 120, "hiddenSize": 64, "layers": 2, "maxEpochs": 1, "batchSize": 256})
    outcome = run_training(pair, Source("sample"), f"file://{root}", progress=None)
    store = pair.name
    model = (root / "default" / store / "versions" / outcome.version / store / "1" / "model.onnx").read_bytes()
    return outcome.version, model


def latency_table(rows: list[Latency], reference: Latency) -> str:
    lines = ["| measured | p50 | p99 | p50 / onnxruntime p50 | requests |", "|---|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(
            f"| {row.label} | {row.p50:.3f} ms | {row.pct(0.99):.3f} ms | {row.p50 / reference.p50:.1f}x "
            f"| {len(row.times)} |"
        )
    return "\n".join(lines)


def throughput_table(rows: list[Throughput]) -> str:
    lines = [
        "| windows per request | clients | requests/s | windows/s | p50 | p99 | failed | requests |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.batch} | {CLIENTS} | {row.rps:,.0f} | {row.rps * row.batch:,.0f} | {row.latency.p50:.2f} ms "
            f"| {row.latency.pct(0.99):.2f} ms | {row.failed} | {row.requests} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=3000, help="one-window requests per latency measurement")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each throughput measurement")
    parser.add_argument("--write", action="store_true", help=f"record the results in {RESULTS}")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="makeusrich-serve-bench-") as tmp:
        root = Path(tmp)
        version, model = train(root / "store")
        windows = real_windows(120, 64, seed=1)
        one = windows[:1]
        ort = onnxruntime_alone(model, one, args.requests)
        ort_batch = onnxruntime_alone(model, windows, max(20, args.requests // 20))
        server = launch(["--store", f"file://{root / 'store'}"], root / "serve.log")
        try:
            body = infer_body(one)
            latencies = [
                http_client_latency(server, body, args.requests, "v2 infer, http.client, keep-alive"),
                asyncio.run(v2client_latency(server, one, args.requests)),
            ]
            rates = [asyncio.run(throughput(server, windows, batch, args.seconds)) for batch in (1, 64)]
        finally:
            server.stop()
        hop = launch(["--store", f"file://{root / 'store'}", "--inline-batch", "0"], root / "serve-hop.log")
        try:
            latencies.append(
                http_client_latency(hop, body, args.requests, "same, --inline-batch 0 (thread hop per request)")
            )
        finally:
            hop.stop()
    load_after = os.getloadavg()
    markdown = (
        f"### One window per request, one request at a time\n\n{latency_table([ort, *latencies], ort)}\n\n"
        f"### {CLIENTS} concurrent clients\n\n{throughput_table(rates)}\n\n"
        f"onnxruntime alone on one thread: {ort.p50:.3f} ms for 1 window, {ort_batch.p50:.2f} ms for "
        f"{len(windows)} windows ({len(windows) / ort_batch.p50 * 1000:,.0f} windows/s per core).\n"
    )
    print(markdown)
    if args.write:
        command = "python bench/serve_bench.py " + " ".join(argv if argv is not None else sys.argv[1:])
        record(markdown, command.strip(), version, load_before, load_after)
        print(f"recorded in {RESULTS.relative_to(REPO)}")


def record(markdown: str, command: str, version: str, before: tuple[float, ...], after: tuple[float, ...]) -> None:
    versions = ", ".join(
        f"{name} {package_version(name)}" for name in ("kserve", "onnxruntime", "uvicorn", "uvloop", "httptools")
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        "# Serving benchmark\n\n"
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n"
        f"- Command: `{command}`\n"
        f"- Machine: {platform.machine()}, {os.cpu_count()} CPUs shared with other work, Python "
        f"{platform.python_version()}, {platform.system()}; load average (1, 5, 15 min) "
        f"{' '.join(f'{x:.2f}' for x in before)} before, {' '.join(f'{x:.2f}' for x in after)} after\n"
        f"- Software: {versions}\n"
        f"- Model: version {version}, trained by `run_training` for 1 epoch on the bundled BTC/USDT 1h candles "
        "(window 120, LSTM 64 units, 2 layers, horizon 1); inputs are real 120-candle windows.\n"
        "- Server: `makeusrich serve --store file://... --host 127.0.0.1` in a subprocess (1 onnxruntime "
        "thread, batches up to 16 windows run on the event loop), uvicorn with uvloop and httptools, no access "
        "log. Clients run in the benchmark's own process on the same 2 cores.\n\n"
        f"{markdown}\n"
        "p50 / onnxruntime p50: how many times onnxruntime's own time for the same window a whole request takes "
        "(HTTP, JSON, request checks, kserve's data plane, response).\n"
    )


if __name__ == "__main__":
    main()
