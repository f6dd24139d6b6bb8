"""What serving a model over v2 REST and gRPC costs: `makeusrich serve` on loopback against onnxruntime's own time.

Trains a model of the default size (window 120, LSTM 64 units, 2 layers; 1 epoch on the bundled real candles:
weights do not change the cost) with the real trainer into a temporary store, starts the real server in a
subprocess (tests/fixtures/model_server.py, the helper the tests use), and measures, in one run:

1. onnxruntime alone: `session.run` on one window, same options as the server (1 intra-op thread).
2. Latency of one-window requests, one after another over one keep-alive connection, with a minimal
   HTTP/1.1 client (http.client), a minimal gRPC client (grpcio, raw FP32 contents) and this project's
   V2Client over both (httpx; grpcio); p50 and p99, and the ratio of the p50 to onnxruntime's p50.
3. Fairness: the same one-window latency on one pair, idle and while four clients keep another pair's slow but
   sound model busy (its graph made to take about 500 ms a request: tests/serving/helpers.slow_model), in one
   server; the ratio of the two p50s (the goal: within 2x).
4. Throughput with 8 concurrent clients (asyncio in this process: raw keep-alive HTTP/1.1, or one grpc.aio
   channel each) for batch 1 and batch 64 windows per request: requests/s, windows/s, latency under load,
   failed requests.

`--runs N` repeats 2 to 4 against fresh servers (the same model) and adds a table of each run's headline
numbers: on a shared machine they move from run to run, and a range is only honest with its runs.

    python bench/serve_bench.py [--requests 3000] [--seconds 10] [--runs 1] [--write]

`--write` records the tables, the command, the commit and the machine's load in bench/results/serve.md. The
client shares the machine with the server: on 2 cores the numbers include the client's own CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import _harness
import grpc
import numpy as np

from makeusrich.market import Source
from makeusrich.store import pair_store
from makeusrich.trainer.export import onnx_session
from makeusrich.trainer.pipeline import run_training
from makeusrich.v2client import V2Client
from makeusrich.v2client.grpc_wire import SERVICE, M
from tests.fixtures.model_server import RunningServer, launch
from tests.serving.helpers import publish_as, real_windows, slow_model

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
    transport: str
    batch: int
    requests: int
    failed: int
    seconds: float
    latency: Latency

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


@dataclass(frozen=True)
class Measured:
    """One run against fresh servers: the latencies (http.client, grpcio, V2Client over REST and gRPC), the
    throughputs (REST, then gRPC), and one pair's latency idle and beside a slow model."""

    latencies: list[Latency]
    rates: list[Throughput]
    fairness: list[Latency]


def infer_body(candles: np.ndarray) -> bytes:
    tensor = {"name": "candles", "shape": list(candles.shape), "datatype": "FP32", "data": candles.ravel().tolist()}
    return json.dumps({"inputs": [tensor]}).encode()


def time_calls(call: Callable[[], object], count: int) -> list[float]:
    return _harness.timings(call, count, warmup=min(WARMUP, count))[0]


def onnxruntime_alone(model: bytes, candles: np.ndarray, count: int) -> Latency:
    session = onnx_session(model, threads=1)
    label = f"onnxruntime session.run alone, {len(candles)} window{'s' if len(candles) > 1 else ''}"
    return Latency(label, time_calls(lambda: session.run(["forecast"], {"candles": candles}), count))


def http_client_latency(
    server: RunningServer, body: bytes, count: int, label: str, pair: str = PAIR, timeout: float = 10
) -> Latency:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
    headers = {"content-type": "application/json"}

    def call() -> None:
        connection.request("POST", f"/v2/models/{pair}/infer", body, headers)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"the server answered {response.status}")

    try:
        return Latency(label, time_calls(call, count))
    finally:
        connection.close()


async def v2client_latency(url: str, window: np.ndarray, count: int, label: str) -> Latency:
    async with V2Client(url, timeout=10) as client:
        for _ in range(min(WARMUP, count)):
            await client.infer(PAIR, window)
        times = []
        for _ in range(count):
            began = time.perf_counter()
            await client.infer(PAIR, window)
            times.append(time.perf_counter() - began)
    return Latency(label, times)


def grpc_request(candles: np.ndarray) -> bytes:
    """A serialized ModelInferRequest with the candles as raw FP32, as Triton's clients send them."""
    request = M["InferRequest"](model_name=PAIR, raw_input_contents=[candles.astype("<f4").tobytes()])
    request.inputs.add(name="candles", datatype="FP32", shape=list(candles.shape))
    return bytes(request.SerializeToString())


def model_infer(channel: grpc.Channel | grpc.aio.Channel) -> Callable[..., object]:
    """ModelInfer on a channel, sending bytes already serialized and reading the answer's bytes."""
    return channel.unary_unary(f"/{SERVICE}/ModelInfer")


def grpc_latency(server: RunningServer, candles: np.ndarray, count: int) -> Latency:
    request = grpc_request(candles)
    with grpc.insecure_channel(f"{server.host}:{server.grpc_port}") as channel:
        call = model_infer(channel)
        return Latency("v2 ModelInfer, grpcio, raw FP32", time_calls(lambda: call(request, timeout=10), count))


async def grpc_client(
    server: RunningServer, request: bytes, stop_at: float, times: list[float], failures: list[int]
) -> None:
    """One channel sending requests back to back."""
    async with grpc.aio.insecure_channel(f"{server.host}:{server.grpc_port}") as channel:
        call = model_infer(channel)
        while time.perf_counter() < stop_at:
            began = time.perf_counter()
            try:
                await call(request, timeout=10)
            except grpc.aio.AioRpcError as exc:
                failures.append(exc.code().value[0])
            times.append(time.perf_counter() - began)


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


async def throughput(
    server: RunningServer, windows: np.ndarray, batch: int, seconds: float, transport: str
) -> Throughput:
    if transport == "gRPC":
        request, client = grpc_request(windows[:batch]), grpc_client
    else:
        request, client = infer_body(windows[:batch]), raw_client
    await client(server, request, time.perf_counter() + 1.0, [], [])
    times: list[float] = []
    failures: list[int] = []
    began = time.perf_counter()
    stop_at = began + seconds
    await asyncio.gather(*(client(server, request, stop_at, times, failures) for _ in range(CLIENTS)))
    elapsed = time.perf_counter() - began
    return Throughput(transport, batch, len(times), len(failures), elapsed, Latency(f"batch {batch}", times))


def train(root: Path) -> tuple[str, bytes]:
    pair = _harness.default_shape_pair()
    outcome = run_training(pair, Source("sample"), f"file://{root}", progress=None)
    store = pair_store(f"file://{root}", pair.namespace, pair.name)
    if not outcome.promoted:  # the baseline kept its place: serve the LSTM, whose cost is measured
        store.promote(outcome.version)
    return outcome.version, store.read_model(outcome.version)


def slow_version(root: Path, model: bytes, window: np.ndarray, target_s: float = 0.5) -> float:
    """Publish pair `slow`: the model made to take about `target_s` a request; returns its onnxruntime time."""
    step = 16
    probe = onnx_session(slow_model(model, 1024, step), threads=1)
    per_product = min(time_calls(lambda: probe.run(["forecast"], {"candles": window}), 5)) / step
    products = max(1, round(target_s / per_product))
    slow = slow_model(model, 1024, products)
    session = onnx_session(slow, threads=1)
    took = statistics.median(time_calls(lambda: session.run(["forecast"], {"candles": window}), 5))
    publish_as(f"file://{root}", PAIR, ["slow"], model=slow)
    return took


def fairness(server: RunningServer, body: bytes, count: int, slow_s: float) -> list[Latency]:
    """The pair's latency idle, then while four clients keep the slow pair busy (each request in turn)."""
    idle = http_client_latency(server, body, count, "idle")
    stop = threading.Event()
    answered: list[int] = []

    def hammer() -> None:
        while not stop.is_set():
            http_client_latency(server, body, 1, "slow", pair="slow", timeout=120)
            answered.append(1)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        busy = http_client_latency(
            server, body, count, f"while 4 clients ask pair `slow` ({slow_s * 1000:.0f} ms a request)"
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    if not answered:
        raise SystemExit("the slow pair answered nothing while the other was measured")
    return [idle, busy]


def measure(root: Path, windows: np.ndarray, args: argparse.Namespace, run: int, slow_s: float) -> Measured:
    """Latencies and throughputs against a fresh server, then one pair beside the slow one in another."""
    store = ["--store", f"file://{root / 'store'}", "--pairs", PAIR]
    body = infer_body(windows[:1])
    server = launch(store, root / f"serve-{run}.log", grpc=True)
    try:
        latencies = [
            http_client_latency(server, body, args.requests, "v2 infer, http.client, keep-alive"),
            grpc_latency(server, windows[:1], args.requests),
            asyncio.run(v2client_latency(server.url, windows[:1], args.requests, "V2Client.infer, REST (httpx)")),
            asyncio.run(v2client_latency(server.grpc_url, windows[:1], args.requests, "V2Client.infer, gRPC (grpcio)")),
        ]
        rates = [
            asyncio.run(throughput(server, windows, batch, args.seconds, transport))
            for transport in ("REST", "gRPC")
            for batch in (1, 64)
        ]
    finally:
        server.stop()
    both = launch(["--store", f"file://{root / 'store'}"], root / f"serve-fair-{run}.log")
    try:
        fair = fairness(both, body, min(args.requests, 1000), slow_s)
    finally:
        both.stop()
    return Measured(latencies, rates, fair)


def fairness_table(rows: list[Latency]) -> str:
    idle = rows[0].p50
    return _harness.table(
        ["pair btc-usdt, one window per request", "p50", "p99", "p50 / idle p50", "requests"],
        (
            [row.label, f"{row.p50:.3f} ms", f"{row.pct(0.99):.3f} ms", f"{row.p50 / idle:.2f}x", len(row.times)]
            for row in rows
        ),
        "lrrrr",
    )


def latency_table(rows: list[Latency], reference: Latency) -> str:
    return _harness.table(
        ["measured", "p50", "p99", "p50 / onnxruntime p50", "requests"],
        (
            [
                row.label,
                f"{row.p50:.3f} ms",
                f"{row.pct(0.99):.3f} ms",
                f"{row.p50 / reference.p50:.1f}x",
                len(row.times),
            ]
            for row in rows
        ),
        "lrrrr",
    )


def throughput_table(rows: list[Throughput]) -> str:
    return _harness.table(
        ["transport", "windows per request", "clients", "requests/s", "windows/s", "p50", "p99", "failed", "requests"],
        (
            [
                row.transport,
                row.batch,
                CLIENTS,
                f"{row.rps:,.0f}",
                f"{row.rps * row.batch:,.0f}",
                f"{row.latency.p50:.2f} ms",
                f"{row.latency.pct(0.99):.2f} ms",
                row.failed,
                row.requests,
            ]
            for row in rows
        ),
        "lrrrrrrrr",
    )


def runs_table(runs: list[Measured], reference: Latency) -> str:
    """Each run's headline numbers, for the range they span."""
    return _harness.table(
        [
            "run",
            "p50, http.client",
            "p50 / onnxruntime p50",
            "p50, grpcio",
            "p50, V2Client REST",
            "p50, V2Client gRPC",
            "requests/s, batch 1, REST",
            "requests/s, batch 1, gRPC",
            "windows/s, batch 64, REST",
            "windows/s, batch 64, gRPC",
            "p50 beside the slow pair / idle",
        ],
        (
            [
                i,
                f"{m.latencies[0].p50:.3f} ms",
                f"{m.latencies[0].p50 / reference.p50:.1f}x",
                *(f"{latency.p50:.3f} ms" for latency in m.latencies[1:]),
                f"{m.rates[0].rps:,.0f}",
                f"{m.rates[2].rps:,.0f}",
                f"{m.rates[1].rps * m.rates[1].batch:,.0f}",
                f"{m.rates[3].rps * m.rates[3].batch:,.0f}",
                f"{m.fairness[1].p50 / m.fairness[0].p50:.2f}x",
            ]
            for i, m in enumerate(runs, 1)
        ),
        "rrrrrrrrrrr",
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=3000, help="one-window requests per latency measurement")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each throughput measurement")
    parser.add_argument("--runs", type=int, default=1, help="measure this many times against fresh servers")
    run = _harness.Run.start(parser, __file__, argv)
    args = run.args
    with tempfile.TemporaryDirectory(prefix="makeusrich-serve-bench-") as tmp:
        root = Path(tmp)
        version, model = train(root / "store")
        windows = real_windows(120, 64, seed=1)
        ort = onnxruntime_alone(model, windows[:1], args.requests)
        ort_batch = onnxruntime_alone(model, windows, max(20, args.requests // 20))
        slow_s = slow_version(root / "store", model, windows[:1])
        runs = [measure(root, windows, args, i, slow_s) for i in range(args.runs)]
    last = runs[-1]
    markdown = (
        f"### One window per request, one request at a time\n\n{latency_table([ort, *last.latencies], ort)}\n\n"
        f"### {CLIENTS} concurrent clients\n\n{throughput_table(last.rates)}\n\n"
        f"### One pair beside a slow one\n\n{fairness_table(last.fairness)}\n\n"
        f"onnxruntime alone on one thread: {ort.p50:.3f} ms for 1 window, {ort_batch.p50:.2f} ms for "
        f"{len(windows)} windows ({len(windows) / ort_batch.p50 * 1000:,.0f} windows/s per core).\n\n"
        "p50 / onnxruntime p50: how many times onnxruntime's own time for the same window a whole request takes "
        "(HTTP and JSON or HTTP/2 and protobuf, request checks, kserve's data plane, response).\n"
    )
    if len(runs) > 1:
        markdown += (
            f"\n### Every run\n\nThe tables above are of run {len(runs)}; each run starts fresh servers on the "
            f"same model (onnxruntime alone measured once).\n\n{runs_table(runs, ort)}\n"
        )
    run.finish(
        markdown,
        title="Serving benchmark",
        settings={**_harness.DEFAULT_SHAPE, "clients": CLIENTS, "warmupRequests": WARMUP},
        versions=("kserve", "onnxruntime", "uvicorn", "uvloop", "httptools", "grpcio"),
        notes=[
            f"Model: version {version}, trained by `run_training` for 1 epoch on the bundled BTC/USDT 1h candles "
            "(window 120, LSTM 64 units, 2 layers, horizon 1); inputs are real 120-candle windows.",
            "Server: `makeusrich serve --store file://... --host 127.0.0.1 --grpc-port N` in a subprocess (1 "
            "onnxruntime thread per model, every run in a worker thread, one run per model at a time), uvicorn "
            "with uvloop and httptools, grpcio's asyncio server on the same event loop, no access log. Clients "
            "run in the benchmark's own process on the same cores.",
        ],
    )


if __name__ == "__main__":
    main()
