"""The hostile-input battery of the hardening issue, run against the real parts, with what held recorded.

It trains a small model with the real trainer, starts a real `makeusrich serve` in a subprocess, and throws at
it what a hostile or unlucky client sends, while a background client keeps sending valid requests (every one
must be answered). It also feeds hostile pair files and schedules to the real parsers and a burst of logins to
the dashboard's throttle. Each row counts what was tried and what came back; the tests named in the results
file hold each property as a pass/fail check.

    python bench/probes/hardening_probe.py [--repeat 20] [--write]

`--write` records the results, the command, the commit and the date in bench/results/probes/hardening.md (in its
"Latest run" section, below the battery's fixed description, which says what earlier probes found and which test
covers each defect). A probe, not a benchmark: its rows are what held, not how fast.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import _harness
import httpx

from makeusrich.errors import PairError
from makeusrich.pair import load_pair, valid_cron
from makeusrich.ui.auth import Throttle
from tests.fixtures.model_server import RunningServer, launch
from tests.fixtures.models import small_pair, train_into
from tests.serving.helpers import real_windows

PAIR = "btc-usdt"


def infer_body(data: list[float], shape: list[object]) -> bytes:
    return json.dumps({"inputs": [{"name": "candles", "shape": shape, "datatype": "FP32", "data": data}]}).encode()


def raw(server: RunningServer, payload: bytes, timeout: float = 10.0) -> tuple[bytes, float]:
    """Send bytes as they are; the first bytes of the answer and how long they took."""
    began = time.perf_counter()
    with socket.create_connection((server.host, server.port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(payload)
        answer = b""
        with contextlib.suppress(OSError):
            answer = sock.recv(4096)
    return answer, time.perf_counter() - began


def upload(server: RunningServer, megabytes: int) -> bytes:
    """Really send a body of `megabytes` (as fast as the server takes it); the status line it answers."""
    head = (
        f"POST /v2/models/{PAIR}/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {megabytes * 1024 * 1024}\r\n\r\n"
    ).encode()
    chunk = b" " * (1024 * 1024)
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        sock.sendall(head)
        with contextlib.suppress(OSError):
            for _ in range(megabytes):
                sock.sendall(chunk)
        with contextlib.suppress(OSError):
            return sock.recv(200).split(b"\r\n", 1)[0]
    return b""


class Background:
    """Valid requests one after another for the whole battery: every one must get a 200."""

    def __init__(self, url: str) -> None:
        self.url, self.sent = url, 0
        self.failed: Counter[str] = Counter()
        self.stop = threading.Event()
        body = infer_body(real_windows(24, 1).ravel().tolist(), [1, 24, 5])
        self.thread = threading.Thread(target=self.run, args=(body,), daemon=True)

    def run(self, body: bytes) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.stop.is_set():
                try:
                    status = client.post(f"{self.url}/v2/models/{PAIR}/infer", content=body).status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                self.sent += 1
                if status != 200:
                    self.failed[str(status)] += 1


def serving_battery(server: RunningServer, repeat: int) -> list[tuple[str, str, int, str]]:
    rows: list[tuple[str, str, int, str]] = []
    url = server.url
    statuses: Counter[int] = Counter()
    routes = (
        ("POST", f"/v2/repository/models/{PAIR}/unload"),
        ("POST", f"/v2/repository/models/{PAIR}/load"),
        ("POST", "/v2/repository/index"),
        ("GET", f"/v2/models/{PAIR}/versions/1"),
        ("GET", "/v1/models"),
    )
    for _ in range(repeat):
        for method, path in routes:
            statuses[httpx.request(method, f"{url}{path}").status_code] += 1
    ready = httpx.get(f"{url}/v2/models/{PAIR}/ready").status_code == 200
    outcome = f"{dict(statuses)}; model ready afterwards: {ready}"
    rows.append(("1", "repository, /versions/ and v1 routes", sum(statuses.values()), outcome))

    answers: Counter[bytes] = Counter()
    waits: list[float] = []
    head = f"POST /v2/models/{PAIR}/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 186000000\r\n\r\n{{".encode()
    for _ in range(repeat):
        answer, took = raw(server, head)
        answers[answer.split(b"\r\n", 1)[0]] += 1
        waits.append(took)
    seen = {k.decode(): v for k, v in answers.items()}
    rows.append(("2", "186 MB declared, 1 byte sent", repeat, f"{seen}; slowest answer {max(waits) * 1000:.0f} ms"))
    before = _harness.peak_rss_mib(server.process.pid)
    results: list[bytes] = []
    workers = [threading.Thread(target=lambda: results.append(upload(server, 93))) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    after = _harness.peak_rss_mib(server.process.pid)
    answered = dict(Counter(r.decode() for r in results))
    outcome = f"{answered}; server peak RSS {before:.0f} -> {after:.0f} MiB"
    rows.append(("2", "four 93 MB bodies sent at once", 4, outcome))
    many = {f"x-h{i}": "1" for i in range(150)}
    header_statuses = Counter(httpx.get(f"{url}/v2/health/live", headers=many).status_code for _ in range(repeat))
    rows.append(("2", "150 headers", repeat, str(dict(header_statuses))))

    deep = b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    deep_statuses = Counter(
        httpx.post(f"{url}/v2/models/{PAIR}/infer", content=deep).status_code for _ in range(repeat)
    )
    rows.append(("3", "JSON nested 5,000 deep", repeat, str(dict(deep_statuses))))
    half = f"POST /v2/models/{PAIR}/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n".encode() + b"{" * 100
    for _ in range(repeat * 5):
        with socket.create_connection((server.host, server.port), timeout=5) as sock:
            sock.sendall(half)
    httpx.get(f"{url}/v2/health/live")  # the server has seen every drop by the time it answers this
    log = server.log()
    errors, tracebacks = log.count('"level": "error"'), log.count("Traceback")
    outcome = f"ERROR lines in the whole log so far: {errors}, tracebacks: {tracebacks}"
    rows.append(("3", "clients dropping a half-sent body", repeat * 5, outcome))

    data = real_windows(24, 1).ravel().tolist()
    lenient: Counter[int] = Counter()
    for shape in (["1", "24", "5"], [1.0, 24.0, 5.0], [True, 24, 5]):
        for _ in range(repeat):
            lenient[httpx.post(f"{url}/v2/models/{PAIR}/infer", content=infer_body(data, shape)).status_code] += 1
    windows = real_windows(24, 1)
    tensor = {"name": "candles", "shape": [1, 24, 5], "datatype": "FP32"}
    header = json.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": windows.nbytes}}]}).encode()
    headers = {"inference-header-content-length": str(len(header))}
    for _ in range(repeat):
        body = header + windows.tobytes() + b"trailing"
        lenient[httpx.post(f"{url}/v2/models/{PAIR}/infer", content=body, headers=headers).status_code] += 1
    what = "string, float and bool shapes; trailing bytes after a binary payload"
    rows.append(("6", what, repeat * 4, str(dict(lenient))))
    return rows


def pair_battery(folder: Path) -> list[tuple[str, str, int, str]]:
    cases: list[tuple[str, Path | str]] = []
    (folder / "latin1.yaml").write_bytes("metadata: {name: caf\xe9}\n".encode("latin-1"))
    (folder / "deep.yaml").write_text("[" * 100_000 + "]" * 100_000)
    (folder / "list.yaml").write_text("spec:\n  x: [" + "1, " * 16_000_000 + "1]\n")  # about 50 MB
    cases += [("not UTF-8", folder / "latin1.yaml"), ("YAML nested 100,000 deep", folder / "deep.yaml")]
    cases += [("a 50 MB list", folder / "list.yaml"), ("/dev/zero", "/dev/zero")]
    outcomes = []
    for label, path in cases:
        began = time.perf_counter()
        try:
            load_pair(path)
            outcome = "accepted"
        except PairError as exc:
            outcome = f"PairError, {len(str(exc))} characters"
        except BaseException as exc:  # what the battery looks for
            outcome = f"{type(exc).__name__} (not one sentence)"
        outcomes.append(f"{label}: {outcome} in {(time.perf_counter() - began) * 1000:.0f} ms")
    rows = [("13", "hostile pair files", len(cases), "; ".join(outcomes))]
    refused = 0
    schedules = ("1-0 * * * *", "0 0 L * *", "0 0 * * 7#5", "0 0 1W * *", "0 0 * * 7", "*/0 * * * *", "@every 5m")
    for schedule in schedules:
        try:
            valid_cron(schedule)
        except ValueError:
            refused += 1
    rows.append(("14", "schedules a CronJob refuses", len(schedules), f"refused {refused}"))
    throttle = Throttle()
    admitted = sum(1 for _ in range(14) if throttle.begin("198.51.100.7") == 0)
    other = throttle.begin("203.0.113.9") == 0
    outcome = f"checked {admitted} of 14; the other client admitted: {other}"
    rows.append(("7", "14 concurrent logins from one client, then one from another", 15, outcome))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=20)
    run = _harness.Run.start(parser, __file__, argv)
    with tempfile.TemporaryDirectory(prefix="makeusrich-hardening-") as tmp:
        folder = Path(tmp)
        trained = train_into(folder / "store", small_pair())
        server = launch(["--store", trained.url], folder / "serve.log", store=trained)
        background = Background(server.url)
        background.thread.start()
        try:
            rows = serving_battery(server, run.args.repeat)
        finally:
            background.stop.set()
            background.thread.join()
            server.stop()
        sent, failed = background.sent, dict(background.failed) or 0
        rows.append(("-", "valid requests sent meanwhile", sent, f"failed: {failed}"))
        rows += pair_battery(folder)
    run.finish(
        _harness.table(["item", "what was tried", "how many", "what came back"], rows, "llrl"),
        title="Hardening: the battery, what it found, and what holds now",
        part="Latest run",
        settings={"model": "small_pair (window 24, LSTM 1x8)"},
        versions=("kserve", "uvicorn", "pyyaml"),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
