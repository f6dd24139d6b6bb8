"""The hostile-input batteries of the hardening issues, run against the real parts, with what held recorded.

First round: it trains a small model with the real trainer, starts a real `makeusrich serve` in a subprocess, and
throws at it what a hostile or unlucky client sends, while a background client keeps sending valid requests
(every one must be answered). It also feeds hostile pair files and schedules to the real parsers and a burst of
logins to the dashboard's throttle.

Second round (issue 26), rows 2.1 to 2.15, one per fall of the issue, each against the processes a user meets:
`makeusrich up` in its own process group (tests/local/up.py), `makeusrich serve` in a subprocess
(tests/fixtures/model_server.py), the dashboard `makeusrich ui` driven over its own socket, `makeusrich train`,
`predict` and the real Tracker against a loopback Binance stand-in (tests/fixtures/fake_binance.py). Where a
process is what reads the hostile thing, its answers, exit status, output, log and memory are what is counted.

Each row counts what was tried and what came back; the tests named in the results file hold each property as a
pass/fail check.

    python bench/probes/hardening_probe.py [--repeat 20] [--only first,2.7,2.9] [--write]

`--only` runs a subset: `first` for the first round's battery, `2.N` for rows of the second. `--write` records the
results, the command, the commit and the date in bench/results/probes/hardening.md (in its "Latest run" section,
below the battery's fixed description, which says what earlier probes found and which test covers each defect).
A probe, not a benchmark: its rows are what held, not how fast (but for 2.7, where the time is the property).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import html
import json
import logging
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import _harness
import httpx
import pandas as pd
import socketio

from makeusrich.contract import model_name
from makeusrich.errors import PairError
from makeusrich.market import CandleFeed, Source
from makeusrich.pair import load_pair, valid_cron
from makeusrich.pair_sources import EmbeddedSource, pair_yaml
from makeusrich.store import LocalStore, PairStore, TrackFiles, pair_store, read_run_state
from makeusrich.store.track_schema import GAP, LIVE, checked_rows
from makeusrich.track.tracker import PairRound, Tracker, TrackOptions
from makeusrich.ui.auth import Throttle
from tests.fixtures.fake_binance import FakeBinance, Fault
from tests.fixtures.model_server import RunningServer, free_port, launch
from tests.fixtures.models import TrainedStore, small_pair, train_into
from tests.fixtures.shell import clean_env, makeusrich
from tests.fixtures.shell import command as makeusrich_command
from tests.fixtures.standins import IMPOSSIBLE, Loopback, QuietHandler, Tampering
from tests.fixtures.waiting import ProcessExited, WaitTimeout, eventually_sync, still_running
from tests.local.up import Up, wait_group_gone
from tests.serving.helpers import (
    endless_model,
    point_latest_at,
    publish_as,
    publish_model,
    real_windows,
    scaled_model,
    slow_model,
)
from tests.track.test_tracker import World
from tests.ui.browser import start_ui, stop

PAIR = "btc-usdt"
Row = tuple[str, str, int, str]


def infer_body(data: list[float], shape: Sequence[object]) -> bytes:
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
                status: int | str
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


def first_round(folder: Path, trained: TrainedStore, repeat: int) -> list[Row]:
    """The first hardening round's battery: one server under hostile requests, then the parsers and the throttle."""
    server = launch(["--store", trained.url], folder / "serve.log", store=trained)
    background = Background(server.url)
    background.thread.start()
    try:
        rows = serving_battery(server, repeat)
    finally:
        background.stop.set()
        background.thread.join()
        server.stop()
    sent, failed = background.sent, dict(background.failed) or 0
    rows.append(("-", "valid requests sent meanwhile", sent, f"failed: {failed}"))
    return rows + pair_battery(folder)


# === The second round (issue 26) ===================================================================================

SECOND_ROUND = tuple(f"2.{n}" for n in range(1, 16))
WHAT = {
    "2.1": "pairs default/btc-x, team-a/btc-x and team-b/solo under `makeusrich up` (1m candles from a Binance "
    "stand-in): what its v2 endpoint serves, its tracker records and its dashboard shows",
    "2.2": "impossible answers (NaN, inf, -5, 0, 1e30, 24 steps from a 1-step model, crossing quantiles) written by a "
    "proxy before the real server, to the real Tracker",
    "2.3": "a version whose check never ends, promoted on one pair while another pair gets a good new version",
    "2.4": "latest.json naming 20261399T256161Z (the pattern, no time) under a running `makeusrich up`; then "
    "`makeusrich train` on that store",
    "2.5": "a Binance stand-in answering 500 with a 200 kB body to a training under `makeusrich up`: a trainer log "
    "line over 64 KiB",
    "2.6": "a FIFO named evil.yaml in up's pairs folder, a valid pair file after it; then Ctrl-C",
    "2.7": "a slow but sound model (matrix products added to the trained graph) beside a good pair on one `makeusrich "
    "serve`; 4 clients keep the slow one busy",
    "2.8": "8 wrong passwords at once through the real dashboard (`makeusrich ui` with a password, over its socket), "
    "each page loaded with its own X-Forwarded-For, all from loopback",
    "2.9": "1,100 connections to `makeusrich serve` under a 1,024 descriptor limit (soft and hard), idle, then "
    "half a header each; a good client meanwhile",
    "2.10": "a track record holding an origin a day ahead (a tracker whose clock ran a day ahead), then rounds of a "
    "Tracker on the true clock",
    "2.11": "a candle that opens an hour ahead but claims to have closed, from the Binance stand-in, to the real "
    "Tracker; then the true candles",
    "2.12": "a training killed under `makeusrich up`: the trainer alone, then up and its trainer together (a crash); "
    "then up started again",
    "2.13": "a model server answering 200 MB to `makeusrich predict` (the v2 client the tracker and the dashboard "
    "use): with its length, streamed without one, gzip that inflates",
    "2.14": "40 valid 1 MiB pair files rewritten each round and read again (read_pair_files, what up, the dashboard "
    "and the tracker call, in a process of its own whose RSS is read)",
    "2.15": "S3_ENDPOINT=http://user:password@host for `makeusrich serve` and `makeusrich train`",
}


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def short(text: str, limit: int = 160) -> str:
    """One line of at most `limit` characters, safe in a markdown table cell."""
    line = " ".join(str(text).split()).replace("|", "\\|")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


@dataclass
class Probe:
    """What the second round's rows share: a scratch folder, --repeat, one trained store to copy, and a model server
    over a copy of it for the rows that only read from it (started on first use)."""

    folder: Path
    repeat: int
    template: TrainedStore
    shared: RunningServer | None = None

    def store_copy(self, name: str) -> TrainedStore:
        root = self.folder / name / "store"
        shutil.copytree(self.template.root, root)
        return replace(self.template, root=root)

    def server(self) -> RunningServer:
        if self.shared is None:
            store = self.store_copy("shared")
            self.shared = launch(["--store", store.url], self.folder / "shared" / "serve.log", store=store)
        return self.shared

    def close(self) -> None:
        if self.shared is not None:
            self.shared.stop()


# --- processes -----------------------------------------------------------------------------------------------------


def start_serve(
    store: TrainedStore, log_path: Path, *args: str, files: int | None = None, timeout: float = 60.0
) -> tuple[RunningServer, float | None]:
    """`makeusrich serve` on a free port as `launch` starts it, with what `launch` does not offer: a descriptor limit
    (soft and hard) set before it starts, and a bound on the wait, whose length is measured. Returns the server and
    the seconds until /v2/health/live answered, None when it did not within `timeout` (still running then)."""
    port = free_port()
    command = makeusrich_command("--log-json", "serve", "--host", "127.0.0.1", "--port", str(port))

    def limit() -> None:
        if files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))

    log_path.parent.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, "--store", store.url, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=_harness.REPO,
            env=_harness.child_env(),
            preexec_fn=limit,
        )
    server = RunningServer(f"http://127.0.0.1:{port}", "127.0.0.1", port, process, log_path, store)

    def live() -> bool:
        still_running(process, "makeusrich serve", server.log)
        return httpx.get(f"{server.url}/v2/health/live", timeout=1.0).status_code == 200

    try:
        eventually_sync(live, what="/v2/health/live", timeout=timeout, ignoring=(httpx.TransportError,))
    except WaitTimeout:
        return server, None
    return server, time.monotonic() - began


def started_at(pid: int) -> str | None:
    """When a process started (clock ticks after boot, /proc/<pid>/stat field 22): with its id, who it is (an id
    alone may have been given to another process since)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def descendants(pid: int) -> list[tuple[int, str]]:
    """Every process below `pid` (children, theirs, ...), with its start time, from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    found: list[int] = []
    frontier = [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        found += frontier
    return [(child, start) for child in found if (start := started_at(child)) is not None]


def stop_tree(server: RunningServer) -> None:
    """Stop a server (RunningServer.stop), then whatever it started that outlived it (a check process stuck in a
    graph that never ends would take a core from every row after): those same processes only."""
    below = descendants(server.process.pid)
    server.stop()
    for pid, start in below:
        if started_at(pid) == start:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def group_pids(pgid: int, word: bytes) -> list[int]:
    """The processes of a process group whose command line holds `word` (a trainer under up)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(cmdline.parent.name)
            if os.getpgid(pid) == pgid and word in cmdline.read_bytes().split(b"\0"):
                found.append(pid)
    return found


def trainer_pid(up: Up, pair_file: str) -> int:
    for pid in group_pids(up.process.pid, b"train"):
        with contextlib.suppress(OSError):
            if pair_file.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
    raise LookupError(f"no `makeusrich train -f .../{pair_file}` runs under up")


def shown_within(up: Up, needle: str, timeout: float) -> float | None:
    """Seconds from now until up's terminal shows `needle`; None if it does not within `timeout` or up exits."""
    began = time.monotonic()
    try:
        up.wait_for(needle, timeout=timeout)
    except (WaitTimeout, ProcessExited):
        return None
    return time.monotonic() - began


def stop_up(up: Up) -> str:
    """Ctrl-C to up's process group, as a terminal sends it: how long until every process ended."""
    try:
        code, took = up.interrupt()
    except (subprocess.TimeoutExpired, WaitTimeout):
        return "Ctrl-C: up still running after 30 s"
    return f"Ctrl-C ended up and its children in {took:.1f} s (exit {code})"


def up_store(folder: Path, namespace: str, name: str) -> PairStore:
    return PairStore(LocalStore(folder / ".makeusrich" / "store"), namespace, name)


def run_state_said(folder: Path, name: str, namespace: str = "default") -> str:
    state = read_run_state(up_store(folder, namespace, name))
    if state is None:
        return "none"
    if state.state == "training":
        return f"'training', epoch {state.epoch} of {state.max_epochs}"
    return f"'{state.state}': {short(state.message or '', 110)}"


def status_of(url: str) -> str:
    try:
        return str(httpx.get(url, timeout=5).status_code)
    except httpx.HTTPError as exc:
        return type(exc).__name__


def served_versions(url: str, name: str) -> list[str]:
    try:
        answer = httpx.get(f"{url}/v2/models/{name}", timeout=2)
    except httpx.HTTPError:
        return []
    return list(answer.json().get("versions") or []) if answer.status_code == 200 else []


def refused_reason(url: str, name: str) -> str | None:
    answer = httpx.get(f"{url}/v2/models/{name}", timeout=2)
    if answer.status_code != 200:
        return None
    reason = (answer.json().get("parameters") or {}).get("refused_reason")
    return str(reason) if reason else None


BADGE = re.compile(r'<span class="mur-badge mur-\w+" title="([^"]*)">([^<]*)</span>')


def dashboard_cards(page: str) -> dict[str, list[tuple[str, str]]]:
    """The overview page's cards as NiceGUI sends them (HTML in the page's element data): each pair's badges, as
    (tooltip, label), by namespace/name."""
    text = html.unescape(page).replace('\\"', '"')
    parts = re.split(r'data-pair="([^"]+)"', text)
    cards = {}
    for key, segment in zip(parts[1::2], parts[2::2], strict=True):
        card = segment[: segment.find("</a>")]
        cards[key] = [(html.unescape(title), html.unescape(label)) for title, label in BADGE.findall(card)]
    return cards


def badges_said(badges: list[tuple[str, str]]) -> str:
    return ", ".join(f"{label} ({short(title, 70)})" if title else label for title, label in badges) or "no badge"


# --- 2.1 namespaces under up ---------------------------------------------------------------------------------------

NAMESPACED = (("default", "btc-x"), ("team-a", "btc-x"), ("team-b", "solo"))
TRACK_WAIT_S = 90.0  # a minute's close and its quarter-interval deadline, with room


def version_owners(stores: dict[str, PairStore]) -> dict[str, set[str]]:
    """Which pairs hold each version name (two pairs' runs may start in the same second and share one)."""
    owners: dict[str, set[str]] = {}
    for key, store in stores.items():
        for version in store.versions():
            owners.setdefault(version, set()).add(key)
    return owners


def whose(version: object, key: str, owners: dict[str, set[str]]) -> str:
    found = owners.get(str(version), set())
    if key in found:
        return "its own version"
    return f"{', '.join(sorted(found))}'s version" if found else f"version {version}, no pair's"


def track_rows(store: PairStore) -> pd.DataFrame:
    files = TrackFiles(store)
    frames = [checked_rows(frame, month) for month in files.months() if (frame := files.read(month)) is not None]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["origin"])


def runs_ended(up: Up, stores: dict[str, PairStore], ended: dict[str, pd.Timestamp]) -> bool:
    """Whether every pair's first training has ended; notes when each was first seen ended."""
    still_running(up.process, "makeusrich up", up.output)
    for key, store in stores.items():
        state = read_run_state(store) if key not in ended else None
        if state is not None and state.state in ("succeeded", "failed"):
            ended[key] = pd.Timestamp.now(tz="UTC")
    return len(ended) == len(stores)


def serving_claims(url: str, stores: dict[str, PairStore]) -> str:
    owners = version_owners(stores)
    answer = httpx.get(f"{url}/v2/models", timeout=5)
    listed = answer.json().get("models") if answer.status_code == 200 else f"answered {answer.status_code}"
    said = []
    for key, store in stores.items():
        name = model_name(store.namespace, store.pair)
        reply = httpx.get(f"{url}/v2/models/{name}", timeout=5)
        versions = reply.json().get("versions") if reply.status_code == 200 else None
        mine = f", {whose(versions[-1], key, owners)}" if versions else ""
        said.append(f"{key} as {name}: {reply.status_code}{mine}")
    return f"GET /v2/models lists {listed}; " + "; ".join(said)


def tracker_claims(stores: dict[str, PairStore], ended: dict[str, pd.Timestamp], final: bool = False) -> str | None:
    """Each pair's first track row at an origin after its training ended, as the tracker wrote it; None until each
    has one (unless `final`: then a pair without one says so)."""
    owners = version_owners(stores)
    said = []
    for key, store in stores.items():
        rows = track_rows(store)
        later = rows[rows["origin"] > ended[key]]
        if later.empty and final:
            said.append(f"{key} no row within {TRACK_WAIT_S:.0f} s")
            continue
        if later.empty:
            return None
        row = later.iloc[0]
        if row["kind"] == LIVE:
            said.append(f"{key} live, {whose(row['version'], key, owners)}")
        else:
            said.append(f"{key} {row['kind']} ({short(row['reason'], 90)})")
    return "; ".join(said)


def dashboard_claims(url: str, stores: dict[str, PairStore]) -> str:
    owners = version_owners(stores)

    def cards() -> dict[str, list[tuple[str, str]]] | None:
        found = dashboard_cards(httpx.get(f"{url}/", timeout=10).text)
        return found if all(found.get(key) for key in stores) else None

    found = eventually_sync(cards, what="a card with badges for every pair", timeout=30, ignoring=(httpx.HTTPError,))
    said = []
    for key in stores:
        serving = [title.removeprefix("serving version ") for title, _ in found[key] if "serving version " in title]
        labels = ", ".join(label for _, label in found[key])
        said.append(f"{key} {whose(serving[0], key, owners)} ({labels})" if serving else f"{key} {labels}")
    return "; ".join(said)


def namespaces_under_up(probe: Probe, meanwhile: Callable[[], None]) -> Row:
    """Row 2.1; `meanwhile()` is called once the trainings have ended, as the wait on the tracker's clock begins."""
    folder = probe.folder / "up-namespaces"
    pairs = folder / "pairs"
    pairs.mkdir(parents=True)
    for namespace, name in NAMESPACED:  # a minute's candles: the tracker records within a minute of serving
        pair = small_pair(name, namespace, interval="1m", lookbackDays=1)
        (pairs / f"{namespace}-{name}.yaml").write_text(pair_yaml(pair))
    stores = {f"{ns}/{name}": up_store(folder, ns, name) for ns, name in NAMESPACED}
    with FakeBinance(bundled=False) as fake:
        fake.add_synthetic("BTCUSDT", "1m", count=2400, now_ms=int(time.time() * 1000) + 30 * 60_000)
        up = Up.start(folder, "--source", "binance", "--max-trainings", "3", env={"BINANCE_API_URL": fake.url})
        ended: dict[str, pd.Timestamp] = {}
        try:
            eventually_sync(
                lambda: runs_ended(up, stores, ended),
                what="every pair's first training to end",
                timeout=300,
                interval=0.5,
                context=lambda: up.output()[-3000:],
            )
            meanwhile()
            served = serving_claims(up.serving, stores)
            try:
                tracked = eventually_sync(
                    lambda: tracker_claims(stores, ended),
                    what="a track row of every pair at an origin after its training ended",
                    timeout=TRACK_WAIT_S,
                    interval=1.0,
                )
            except WaitTimeout:  # a pair that is never served has no record at all: its record starts with a forecast
                tracked = tracker_claims(stores, ended, final=True) or ""
            shown = dashboard_claims(up.dashboard, stores)
            stop_up(up)
        finally:
            up.kill()
    outcome = f"{served}. Tracker, each pair's first row after its training: {tracked}. Dashboard cards: {shown}"
    return ("2.1", WHAT["2.1"], len(NAMESPACED), outcome)


# --- 2.2, 2.10, 2.11 the tracker -----------------------------------------------------------------------------------

BAD_ANSWERS = tuple(IMPOSSIBLE)
DAY_S = 86_400.0


def tracker(world: World, server_url: str, clock: Callable[[], float]) -> Tracker:
    source = EmbeddedSource(world.pairs_dir, world.store_url, server_url)
    feed = CandleFeed(Source("binance"), api_url=world.fake.url, clock=clock, max_retries=0)
    return Tracker(source, feed, world.store_url, TrackOptions(serving_timeout=5.0), clock=clock)


def rounds_said(reports: list[PairRound]) -> str:
    errors = [short(r.error, 80) for r in reports if r.error]
    return f"recorded {[r.recorded for r in reports]}, gaps {[r.gaps for r in reports]}, errors {errors or 'none'}"


async def tampered_rounds(world: World, proxy: Tampering, first: int) -> list[PairRound]:
    """One honest round, then each impossible answer (asked, then past its deadline), then three honest rounds
    once the targets of all of them have closed."""
    tracked = tracker(world, proxy.url, lambda: world.now_s)
    await tracked.round()
    for k, change in enumerate(BAD_ANSWERS):
        world.advance(first + 1 + k)
        proxy.tamper.append(change)
        await tracked.round()
        world.now_s += 16 * 60
        await tracked.round()
    later = []
    for k in range(3):
        world.advance(first + 1 + len(BAD_ANSWERS) + k)
        later.append((await tracked.round()).pairs[0])
    await tracked.aclose()
    return later


def impossible_answers(world: World, server: RunningServer) -> tuple[int, str]:
    first = len(world.all_rows) - len(BAD_ANSWERS) - 6
    world.advance(first)
    proxy = Tampering(server.url)
    try:
        later = asyncio.run(tampered_rounds(world, proxy, first))
    finally:
        proxy.close()
    rows = world.stored_rows()
    bad = rows[rows["origin"].isin([world.close_of(first + k) for k in range(len(BAD_ANSWERS))])]
    live = bad[bad["kind"] == LIVE]
    gaps = int((bad["kind"] == GAP).sum())
    odd = int((~rows.loc[rows["kind"] == LIVE, "forecast"].apply(lambda v: 0 < v < 1e9)).sum())
    outcome = (
        f"recorded as live forecasts: {len(live)} of {len(BAD_ANSWERS)} (gaps with a reason: {gaps}); live rows "
        f"holding a price that is no price: {odd}; three later rounds, once their targets closed: {rounds_said(later)}"
    )
    return len(BAD_ANSWERS), outcome


async def ahead_then_true(world: World, server: RunningServer, first: int) -> list[PairRound]:
    """The record begins on the true clock; a tracker whose clock runs a day ahead then writes the origins it thinks
    have passed (gaps: their candles never came); a tracker on the true clock again (restarted once the clock was
    set right) has three closes to record."""
    begun = tracker(world, server.url, lambda: world.now_s)
    await begun.round()
    await begun.aclose()
    shift = [DAY_S]

    def ahead() -> float:
        return world.now_s + shift[0]

    early = tracker(world, server.url, ahead)
    await early.round()  # every origin of the day ahead is past its deadline but the newest, which waits
    shift[0] = DAY_S + 16 * 60
    await early.round()  # and now that one too
    await early.aclose()
    again = tracker(world, server.url, lambda: world.now_s)
    reports = []
    for k in (1, 2, 3):
        world.advance(first + k)
        reports.append((await again.round()).pairs[0])
    await again.aclose()
    return reports


class Warnings(logging.Handler):
    """What a logger warned of while attached (then not printed elsewhere)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def warnings_of(name: str) -> Iterator[Warnings]:
    caught, logger = Warnings(), logging.getLogger(name)
    logger.addHandler(caught)
    try:
        yield caught
    finally:
        logger.removeHandler(caught)


def origin_ahead(world: World, server: RunningServer) -> tuple[int, str]:
    first = len(world.all_rows) - 8
    world.advance(first)
    with warnings_of("makeusrich") as warned:
        reports = asyncio.run(ahead_then_true(world, server, first))
    rows = world.stored_rows()
    now = pd.Timestamp(world.now_s, unit="s", tz="UTC")
    ahead = rows[rows["origin"] > now]
    passed = rows[rows["origin"].isin([world.close_of(first + k) for k in range(3)])]
    reason = short(passed["reason"].iloc[0], 70) if len(passed) else "none"
    outcome = (
        f"the clock a day ahead wrote {len(rows) - 1} rows {dict(Counter(rows['kind'].iloc[1:]))}, "
        f"{len(ahead)} of them still ahead of the true clock at the end; then three rounds on the true clock: "
        f"{rounds_said(reports)}; the three closes they passed hold the rows the clock ahead wrote: "
        f"{dict(Counter(passed['kind']))} ('{reason}'); the tracker warned {len(warned.messages)} times "
        f"('{short(warned.messages[-1], 90) if warned.messages else ''}')"
    )
    return 3, outcome


async def lying_rounds(world: World, server: RunningServer, first: int) -> list[PairRound]:
    tracked = tracker(world, server.url, lambda: world.now_s)
    await tracked.round()  # the record has begun
    world.advance(first + 1)
    liar = list(world.all_rows[first + 2])  # a candle that opens in an hour...
    liar[6] = int(world.now_s * 1000) - 60_000  # ...says it closed a minute ago
    world.fake.add_rows("BTCUSDT", "1h", [*world.all_rows[: first + 1], liar])
    reports = [(await tracked.round()).pairs[0]]
    for served in (first + 2, first + 3):  # the exchange serves the true candles as each closes
        world.advance(served)
        reports.append((await tracked.round()).pairs[0])
    await tracked.aclose()
    return reports


def lying_close(world: World, server: RunningServer) -> tuple[int, str]:
    first = len(world.all_rows) - 8
    world.advance(first)
    reports = asyncio.run(lying_rounds(world, server, first))
    kinds = world.stored_rows()["kind"].tolist()
    outcome = f"the round with the liar and two after it: {rounds_said(reports)}; stored rows {dict(Counter(kinds))}"
    return 3, outcome


TRACKER_ROWS: tuple[tuple[str, Callable[[World, RunningServer], tuple[int, str]]], ...] = (
    ("2.2", impossible_answers),
    ("2.10", origin_ahead),
    ("2.11", lying_close),
)


def tracker_rows(probe: Probe, wanted: set[str]) -> list[Row]:
    server = probe.server()
    assert server.store is not None
    rows: list[Row] = []
    with FakeBinance() as fake:
        for item, measure in TRACKER_ROWS:
            if item not in wanted:
                continue
            folder = probe.folder / f"track-{item}"
            (folder / "pairs").mkdir(parents=True)
            (folder / "pairs" / "btc-usdt.yaml").write_text(pair_yaml(server.store.pair))
            world = World(fake, server.store, f"file://{folder / 'records'}", folder / "pairs", fake.rows())
            count, outcome = measure(world, server)
            rows.append((item, WHAT[item], count, outcome))
    return rows


# --- 2.3 a check that never ends -----------------------------------------------------------------------------------

OTHER = "pair-b"
CHECK_SECONDS = 5  # --check-seconds, where serve has it: the bound meant for one version's checks
CHECK_WAIT_S = 25.0  # how long the probe looks for the other pair's new version and the refusal
RESTART_WAIT_S = 20.0


def promote_fifo(store: PairStore, root: Path, model: bytes, base: str) -> Path:
    """A complete new version whose model.onnx is then replaced by a FIFO, named by latest.json (with the sha256 the
    model had): opening it for reading blocks until someone writes. Returns the FIFO."""
    version = publish_model(store, model, base, promote=False)
    fifo = root / (store.version_prefix(version) + store.model_path())
    fifo.unlink()
    os.mkfifo(fifo)
    point_latest_at(store, version, hashlib.sha256(model).hexdigest())
    return fifo


def release(fifo: Path) -> None:
    """Open the FIFO for writing and close it, as often as a reader waits on it: each blocked reader then reads an
    empty file and goes on, so that nothing stays stuck after the row."""
    for _ in range(20):
        try:
            descriptor = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: no reader waits
            return
        os.close(descriptor)


def offered(command: str, flag: str) -> bool:
    helped = makeusrich(command, "--help", env=clean_env(), timeout=60)
    return flag in helped.stdout


def watch_check(url: str, bad_pair: str, fresh: str) -> dict[str, tuple[float, str]]:
    """When the other pair's new version was served and when the bad one was refused (with the reason), within
    CHECK_WAIT_S; what did not happen is missing."""
    began = time.monotonic()
    seen: dict[str, tuple[float, str]] = {}

    def look() -> bool:
        if "other" not in seen and fresh in served_versions(url, OTHER):
            seen["other"] = (time.monotonic() - began, "")
        if "refused" not in seen and (reason := refused_reason(url, bad_pair)):
            seen["refused"] = (time.monotonic() - began, reason)
        return len(seen) == 2

    with contextlib.suppress(WaitTimeout):
        eventually_sync(look, what="both", timeout=CHECK_WAIT_S, interval=0.2, ignoring=(httpx.HTTPError,))
    return seen


def check_variant(probe: Probe, variant: str, extra: list[str]) -> Row:
    store = probe.store_copy(f"check-{variant}")
    folder = store.root.parent
    bad_store, base = store.store(), store.version
    publish_as(store.url, bad_store.pair, [OTHER])
    other = pair_store(store.url, "default", OTHER)
    good = bad_store.read_model(base)
    fifo: Path | None = None
    server, _ = start_serve(store, folder / "serve.log", "--poll-seconds", "1", *extra)
    try:
        if variant == "fifo":
            fifo = promote_fifo(bad_store, store.root, good, base)
        else:
            publish_model(bad_store, endless_model(good), base, record=False)
        fresh = publish_model(other, scaled_model(good, 1.001), base)
        seen = watch_check(server.url, bad_store.pair, fresh)
        still = served_versions(server.url, bad_store.pair)
        restarted, took = start_serve(store, folder / "serve-restart.log", *extra, timeout=RESTART_WAIT_S)
        if fifo is not None:
            release(fifo)
        stop_tree(restarted)
    finally:
        if fifo is not None:
            release(fifo)
        stop_tree(server)
    reason = short(seen["refused"][1].replace(str(store.root), "<store>"), 150) if "refused" in seen else ""
    said = [
        f"{OTHER}'s new version served after {seen['other'][0]:.1f} s"
        if "other" in seen
        else f"{OTHER}'s new version not served within {CHECK_WAIT_S:.0f} s",
        f"refused after {seen['refused'][0]:.1f} s: '{reason}'"
        if "refused" in seen
        else f"not refused within {CHECK_WAIT_S:.0f} s",
        f"{bad_store.pair} then served {still or 'nothing'} (the old one: {base})",
        f"a restarted serve answered /v2/health/live after {took:.1f} s"
        if took is not None
        else f"a restarted serve did not answer /v2/health/live within {RESTART_WAIT_S:.0f} s",
    ]
    what = {
        "fifo": "model.onnx a FIFO in a version latest.json names",
        "loop": "an ONNX graph with a Loop of 9e18 iterations (valid inputs and outputs), promoted",
    }[variant]
    flags = " ".join(extra) or "no --check-seconds flag"
    return ("2.3", f"{what}; serve with --poll-seconds 1, {flags}", 1, "; ".join(said))


def endless_checks(probe: Probe, wanted: set[str]) -> list[Row]:
    extra = ["--check-seconds", str(CHECK_SECONDS)] if offered("serve", "--check-seconds") else []
    return [check_variant(probe, variant, extra) for variant in ("fifo", "loop")]


# --- 2.4 and 2.12 up started again after a crash, and a version that is no time --------------------------------------

SLOW_TRAINING: dict[str, Any] = {"model": {"hiddenSize": 32, "window": 48, "maxEpochs": 300, "patience": 100}}
BOGUS = "20261399T256161Z"
WATCH_S = 10.0  # how long up is watched after latest.json names the bogus version: the window is the measure


def crash_mid_training(up: Up, folder: Path) -> str:
    """Under a running up: SIGKILL the trainer of one pair (up goes on), then up's whole process group while another
    pair trains (a crash: nothing can say how it ended)."""
    pairs = folder / "pairs"
    (pairs / "killed.yaml").write_text(pair_yaml(small_pair("killed", **SLOW_TRAINING)))
    up.wait_for("killed: epoch 1/")
    os.kill(trainer_pid(up, "killed.yaml"), signal.SIGKILL)
    up.wait_for("killed: training failed")
    killed = run_state_said(folder, "killed")
    (pairs / "crashed.yaml").write_text(pair_yaml(small_pair("crashed", **SLOW_TRAINING)))
    up.wait_for("crashed: epoch 1/")
    os.killpg(up.process.pid, signal.SIGKILL)
    up.process.wait(timeout=10)
    wait_group_gone(up.process.pid, 10)
    left = run_state_said(folder, "crashed")
    # A pair file added meanwhile, due at the next start: it takes the one training slot, so that the crashed pair's
    # state is what the next start made of it, not a new run's.
    (pairs / "added.yaml").write_text(pair_yaml(small_pair("added", **SLOW_TRAINING)))
    return (
        f"trainer alone killed (SIGKILL) while up runs: run state {killed}; up and its trainer killed together: {left}"
    )


def after_restart(up: Up, folder: Path) -> str:
    up.wait_for("added: training (")  # the first scan has planned every pair; 'added' holds the one slot

    def crashed_card() -> str | None:
        cards = dashboard_cards(httpx.get(f"{up.dashboard}/", timeout=10).text)
        if not any(label == "Training" for _, label in cards.get("default/added", [])):
            return None  # the dashboard has not refreshed since that scan
        return badges_said(cards.get("default/crashed", []))

    badges = eventually_sync(
        crashed_card, what="the dashboard to show the restart's first scan", timeout=30, ignoring=(httpx.HTTPError,)
    )
    said = run_state_said(folder, "crashed")
    return f"at the next start of up (another pair holding the training slot): run state {said}; card: {badges}"


def bogus_latest(store: PairStore) -> None:
    """A copy of the served version under the bogus name, and latest.json naming it (written by hand: the store's
    own calls refuse the name)."""
    latest = store.latest()
    assert latest is not None
    source, target = store.version_prefix(latest.version), f"{store.prefix}versions/{BOGUS}/"
    for key in store.objects.list(source):
        data = store.objects.get(key)
        if key.endswith("metadata.json"):
            data = data.replace(latest.version.encode(), BOGUS.encode())
        store.objects.put(target + key.removeprefix(source), data)
    document = {
        "version": BOGUS,
        "storageUri": store.objects.uri(target),
        "modelSha256": latest.model_sha256,
        "promotedAt": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    store.objects.put(store.prefix + "latest.json", json.dumps(document).encode())


def message_of(line: str) -> str:
    """A JSON log line's message (the line itself when it is no JSON: a traceback's)."""
    try:
        return str(json.loads(line).get("message", line))
    except (ValueError, AttributeError):
        return line


def bogus_version(up: Up, folder: Path) -> str:
    store = up_store(folder, "default", PAIR)
    before = served_versions(up.serving, PAIR)
    bogus_latest(store)
    began = time.monotonic()
    with contextlib.suppress(WaitTimeout):
        eventually_sync(lambda: up.process.poll() is not None, what="up to exit", timeout=WATCH_S, interval=0.2)
    alive = up.process.poll() is None
    running = (
        "up still running" if alive else f"up exited ({up.process.returncode}) after {time.monotonic() - began:.0f} s"
    )
    serve_log = (folder / ".makeusrich" / "logs" / "serve.log").read_text(errors="replace")
    said = [message_of(line) for line in serve_log.splitlines() if BOGUS in line]
    served = served_versions(up.serving, PAIR)
    pair_file, root = folder / "pairs" / "btc-usdt.yaml", folder / ".makeusrich" / "store"
    train = ("train", "-f", str(pair_file), "--store", str(root), "--source", "sample", "--max-epochs", "1")
    trained = makeusrich(*train, cwd=folder, env=clean_env())
    lines = [line for line in (trained.stderr + trained.stdout).splitlines() if line.strip()]
    train_said = message_of(next((line for line in lines if BOGUS in line), lines[-1] if lines else "nothing"))
    said = [line.replace(str(folder), "<up>") for line in said]
    return (
        f"{running} {WATCH_S:.0f} s after; serve /v2/health/live {status_of(up.serving + '/v2/health/live')}, "
        f"{PAIR} served {served or 'nothing'} (before: {before}); dashboard /healthz "
        f"{status_of(up.dashboard + '/healthz')}; serve's log on it: '{short(said[-1], 150) if said else 'nothing'}'. "
        f"`makeusrich train` on that store: exit {trained.returncode}, '{short(train_said, 170)}'"
    )


def crash_and_bogus(probe: Probe, wanted: set[str]) -> list[Row]:
    folder = probe.folder / "up-crash"
    (folder / "pairs").mkdir(parents=True)
    shutil.copytree(probe.template.root, folder / ".makeusrich" / "store")  # btc-usdt served from the start
    (folder / "pairs" / "btc-usdt.yaml").write_text(pair_yaml(probe.template.pair))
    rows: list[Row] = []
    crashed = None
    up = Up.start(folder)
    try:
        up.wait_ready(PAIR)
        if "2.4" in wanted:  # first, while up trains nothing: the window and the training have the machine
            rows.append(("2.4", WHAT["2.4"], 2, bogus_version(up, folder)))
        if "2.12" in wanted:
            if up.process.poll() is not None:  # 2.4 ended it: the crash needs one running
                up = Up.start(folder, name="up-2")
            crashed = crash_mid_training(up, folder)
        else:
            stop_up(up)
    finally:
        up.kill()
    if crashed is not None:
        again = Up.start(folder, name="again")
        try:
            rows.append(("2.12", WHAT["2.12"], 2, f"{crashed}; {after_restart(again, folder)}"))
            stop_up(again)
        finally:
            again.kill()
    return rows


# --- 2.5 and 2.6 the pairs folder and the trainer's log under up ---------------------------------------------------


def cut_lines(store: PairStore) -> int:
    """Lines up read in pieces and cut (marked "[line cut]") in the pair's run logs: a line over its buffer."""
    logs = [key for key in store.objects.list(store.prefix + "runs/") if key.endswith(".log")]
    return sum(store.objects.get(key).count(b"[line cut]") for key in logs)


def pairs_folder_under_up(probe: Probe, wanted: set[str]) -> list[Row]:
    folder = probe.folder / "up-pairs-folder"
    pairs = folder / "pairs"
    pairs.mkdir(parents=True)
    os.mkfifo(pairs / "evil.yaml")
    (pairs / "zz-late.yaml").write_text(pair_yaml(small_pair("zz-late")))
    page = "<html><body>" + "A" * 200_000 + "</body></html>"
    with FakeBinance() as fake:
        fake.faults.extend(Fault.server_error(500, body=page) for _ in range(2000))
        env = {"BINANCE_API_URL": fake.url, "MAKEUSRICH_BINANCE_RETRIES": "0"}
        up = Up.start(folder, "--source", "binance", env=env)
        try:
            seen = shown_within(up, "zz-late: training (", 60)
            failed = shown_within(up, "zz-late: training failed", 40) if seen is not None else None
            text = up.output()
            state = run_state_said(folder, "zz-late")
            cut = cut_lines(up_store(folder, "default", "zz-late"))
            trainers = len(group_pids(up.process.pid, b"train"))
            stopped = stop_up(up)
        finally:
            up.kill()
    evil = next((line for line in text.splitlines() if line.startswith("evil.yaml")), "nothing")
    evil = evil.replace(str(pairs), "<pairs>")
    later = f"seen: its training began {seen:.0f} s after start" if seen is not None else "never seen within 60 s"
    rows: list[Row] = []
    if "2.6" in wanted:
        rows.append(
            ("2.6", WHAT["2.6"], 1, f"up said '{short(evil, 120)}'; the pair file after it was {later}; {stopped}")
        )
    if "2.5" in wanted:
        ended = f"said 'training failed' {failed:.0f} s later" if failed is not None else "said no failure within 40 s"
        broke = "; up said 'Separator is not found'" if "Separator is not found" in text else ""
        outcome = (
            f"trainer lines cut in the run log up kept: {cut}; up {ended}; run state {state}; longest terminal line "
            f"{max(map(len, text.splitlines()), default=0):,} characters; trainers left: {trainers}{broke}; {stopped}"
        )
        rows.append(("2.5", WHAT["2.5"], 1, outcome if seen is not None else f"not reached: the pair file was {later}"))
    return rows


# --- 2.7 a slow but sound model ------------------------------------------------------------------------------------

HAMMERS = 4
LOAD_WINDOW_S = 30.0  # the most the good client is measured under load (a starved one takes seconds a request)


def infer_once(client: httpx.Client, url: str, name: str, body: bytes) -> float:
    began = time.perf_counter()
    client.post(f"{url}/v2/models/{name}/infer", content=body).raise_for_status()
    return time.perf_counter() - began


def under_load(url: str, body: bytes, good: Callable[[], float], count: int) -> tuple[list[float], int]:
    """The good client's request times while HAMMERS clients keep sending to the slow pair: at least `count`, and
    until the slow pair has answered HAMMERS requests meanwhile (so that the window holds several slow runs, not
    a part of one), within LOAD_WINDOW_S; and how many slow requests were answered meanwhile."""
    stop_event = threading.Event()
    started: list[int] = []
    sent: list[int] = []

    def hammer() -> None:
        with httpx.Client(timeout=120) as client:
            started.append(1)
            while not stop_event.is_set():
                infer_once(client, url, "slow", body)
                sent.append(1)

    threads = [threading.Thread(target=hammer, daemon=True) for _ in range(HAMMERS)]
    for thread in threads:
        thread.start()
    eventually_sync(lambda: len(started) == HAMMERS, what="every slow client started")
    try:
        before, began = len(sent), time.monotonic()
        times: list[float] = []
        while (len(times) < count or len(sent) < before + HAMMERS) and time.monotonic() - began < LOAD_WINDOW_S:
            times.append(good())
        return times, len(sent) - before
    finally:
        stop_event.set()
        for thread in threads:
            thread.join(timeout=120)


def slow_model_row(probe: Probe, wanted: set[str]) -> list[Row]:
    store = probe.store_copy("slow-model")
    model = store.store().read_model(store.version)
    publish_as(store.url, store.pair.name, ["slow"], model=slow_model(model, 1024, 32))
    server = launch(["--store", store.url], store.root.parent / "serve.log", store=store)
    body = infer_body(real_windows(24, 1).ravel().tolist(), [1, 24, 5])
    count = 5 * probe.repeat
    try:
        eventually_sync(
            lambda: httpx.get(f"{server.url}/v2/models/slow/ready", timeout=5).status_code == 200,
            what="the slow pair served",
            timeout=120,
            ignoring=(httpx.HTTPError,),
        )
        with httpx.Client(timeout=120) as client:
            alone = statistics.median(infer_once(client, server.url, "slow", body) for _ in range(4))
            for _ in range(5):  # warm-up
                infer_once(client, server.url, PAIR, body)
            idle = [infer_once(client, server.url, PAIR, body) for _ in range(count)]
            loaded, answered = under_load(server.url, body, lambda: infer_once(client, server.url, PAIR, body), count)
    finally:
        server.stop()
    calm, busy = statistics.median(idle), statistics.median(loaded)
    outcome = (
        f"the slow pair's model: {ms(alone)} a request alone (median of 4); the good pair's p50: {ms(calm)} idle "
        f"({len(idle)} requests), {ms(busy)} while {HAMMERS} clients keep the slow pair busy ({len(loaded)} "
        f"requests, during which the slow pair answered {answered}; slowest good one {ms(max(loaded))}): "
        f"{busy / calm:.1f}x idle (target: within 2x)"
    )
    return [("2.7", WHAT["2.7"], len(idle) + len(loaded), outcome)]


# --- 2.8 the login throttle through the dashboard --------------------------------------------------------------------

LOGINS = 8
ANSWERS = ("Wrong password", "Too many failed logins", "Logged in")


def page_elements(page: str) -> tuple[str, dict[str, Any]]:
    """NiceGUI's client id and elements (id: tag, props, events) from a page as the server sent it."""
    elements = re.search(r"parseElements\(String\.raw`(.*?)`\)", page, re.S)
    client = re.search(r"'client_id': '([^']+)'", page)
    if elements is None or client is None:
        raise ValueError("the login page holds no NiceGUI elements")
    return client[1], json.loads(elements[1])


def listener(element: dict[str, Any], kind: str) -> str:
    return str(next(event["listener_id"] for event in element.get("events", []) if event["type"] == kind))


async def attempt_login(url: str, forwarded_for: str, password: str) -> str:
    """What a browser does: load /login (here with an X-Forwarded-For header), connect NiceGUI's socket as that
    page, type the password, click Log in; what the page then says."""
    async with httpx.AsyncClient(timeout=30) as http:
        page = await http.get(f"{url}/login", headers={"X-Forwarded-For": forwarded_for})
    client_id, elements = page_elements(page.text)
    field = next(k for k, e in elements.items() if e.get("props", {}).get("type") == "password")
    button = next(k for k, e in elements.items() if e["tag"] == "q-btn" and "w-full" in e.get("class", []))
    said: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    sio = socketio.AsyncClient()

    @sio.on("update")  # type: ignore[untyped-decorator]
    async def update(data: Any) -> None:
        blob = json.dumps(data)
        answer = next((needle for needle in ANSWERS if needle in blob), None)
        if answer is not None and not said.done():
            said.set_result(answer)

    query = f"client_id={client_id}&next_message_id=0&implicit_handshake=true&tab_id={uuid.uuid4()}"
    headers = {"X-Forwarded-For": forwarded_for, "Cookie": "; ".join(f"{k}={v}" for k, v in page.cookies.items())}
    await sio.connect(
        f"{url}?{query}&document_id={uuid.uuid4()}",
        socketio_path="/_nicegui_ws/socket.io",
        transports=["websocket"],
        headers=headers,
    )
    try:
        typed = [json.dumps(password)]
        await sio.emit(
            "event",
            {
                "id": int(field),
                "client_id": client_id,
                "listener_id": listener(elements[field], "update:value"),
                "args": typed,
            },
        )
        clicked = listener(elements[button], "click")
        await sio.emit("event", {"id": int(button), "client_id": client_id, "listener_id": clicked, "args": []})
        return await asyncio.wait_for(said, 30)
    finally:
        await sio.disconnect()


async def login_burst(url: str) -> list[str]:
    tries = (attempt_login(url, f"198.51.100.{k + 1}", f"wrong password {k}") for k in range(LOGINS))
    return list(await asyncio.gather(*tries))


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def login_throttle(probe: Probe, wanted: set[str]) -> list[Row]:
    said: list[str] = []
    for label, extra in (
        ("by default", []),
        ("control, --trusted-proxies 127.0.0.1", ["--trusted-proxies", "127.0.0.1"]),
    ):
        folder = probe.folder / f"login-{len(said)}"
        folder.mkdir()
        with environment(MAKEUSRICH_UI_PASSWORD="the right password"):
            ui = start_ui(["--source", "sample", "--pair-files", str(folder), *extra], folder)
        try:
            answers = asyncio.run(login_burst(ui.url))
        finally:
            stop(ui.process)
        said.append(f"{label}: checked {answers.count('Wrong password')} of {LOGINS} {dict(Counter(answers))}")
    return [("2.8", WHAT["2.8"], 2 * LOGINS, "; ".join(said))]


# --- 2.9 idle and half-sent connections ------------------------------------------------------------------------------

CROWD = 1100
GOOD_REQUESTS = 5
LOG_WINDOW_S = 15.0  # the window in which the log's growth is counted: a duration that is the measure
HALF_HEADER = f"POST /v2/models/{PAIR}/infer HTTP/1.1\r\nHost: x\r\nContent-Le".encode()
INFER = infer_body(real_windows(24, 1).ravel().tolist(), [1, 24, 5])


def good_request(server: RunningServer, timeout: float = 2.0) -> bool:
    try:
        return httpx.post(f"{server.url}/v2/models/{PAIR}/infer", content=INFER, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the server has answered (a 408, say) or closed the connection: either way it let it go."""
    sock.setblocking(False)
    try:
        sock.recv(1024)
    except BlockingIOError:
        return False
    except OSError:
        return True
    return True


def crowd(server: RunningServer, payload: bytes) -> str:
    sockets: list[socket.socket] = []
    refused = 0
    for _ in range(CROWD):
        try:
            sock = socket.create_connection((server.host, server.port), timeout=2)
            if payload:
                sock.sendall(payload)
            sockets.append(sock)
        except OSError:
            refused += 1
    tracebacks, size = server.log().count("Traceback"), server.log_path.stat().st_size
    began = time.monotonic()
    failed = sum(not good_request(server) for _ in range(GOOD_REQUESTS))
    time.sleep(max(0.0, LOG_WINDOW_S - (time.monotonic() - began)))
    tracebacks = server.log().count("Traceback") - tracebacks
    grown = (server.log_path.stat().st_size - size) / 1e6
    let_go = sum(closed_by_peer(sock) for sock in sockets)
    for sock in sockets:
        sock.close()
    return (
        f"{len(sockets)} connected ({refused} not), {let_go} of them closed by the server within "
        f"{LOG_WINDOW_S:.0f} s; good requests failed: {failed} of {GOOD_REQUESTS}; the log gained {tracebacks} "
        f"tracebacks ({grown:.1f} MB)"
    )


def idle_connections(probe: Probe, wanted: set[str]) -> list[Row]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * CROWD:  # the probe holds the crowd's sockets itself
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * CROWD), hard))
    store = probe.store_copy("crowd")
    server, took = start_serve(store, store.root.parent / "serve.log", files=1024)
    if took is None:
        stop_tree(server)
        raise RuntimeError("serve did not answer /v2/health/live under a 1,024 descriptor limit")
    said = []
    try:
        for label, payload in (("idle", b""), ("half a header", HALF_HEADER)):
            eventually_sync(lambda: good_request(server), what="a good request answered before the crowd", timeout=60)
            said.append(f"{label}: {crowd(server, payload)}")
    finally:
        stop_tree(server)
    return [("2.9", WHAT["2.9"], 2 * CROWD, "; ".join(said))]


# --- 2.13 a 200 MB answer ------------------------------------------------------------------------------------------

HUGE = 200 * 1024 * 1024


class HugeAnswers(Loopback):
    """A model server stand-in: health and metadata from the real server, and an inference answer of about 200 MB,
    sent with its Content-Length ("declared"), in chunks without one ("streamed"), or as gzip that inflates to it."""

    def __init__(self, upstream: str) -> None:
        self.mode = "declared"
        head = b'{"model_name": "btc-usdt", "outputs": [{"name": "forecast", "datatype": "FP32", "shape": [1, 1], '
        self.head, self.piece, self.tail = head + b'"data": [', b"1.0, " * 209_715, b"1.0]}]}"
        self.pieces = HUGE // len(self.piece)
        packer = zlib.compressobj(wbits=31)
        packed = [packer.compress(self.head)] + [packer.compress(self.piece) for _ in range(self.pieces)]
        self.gzipped = b"".join([*packed, packer.compress(self.tail), packer.flush()])
        owner = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                answer = httpx.get(upstream + self.path, timeout=10)
                self.send_body(answer.status_code, answer.content)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with contextlib.suppress(OSError):  # the client hung up once it had enough: what it should do
                    owner.answer(self)

        super().__init__(Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        return None  # a client that hangs up on a 200 MB answer is what the row looks for, not an error

    def body(self) -> Iterator[bytes]:
        yield self.head
        for _ in range(self.pieces):
            yield self.piece
        yield self.tail

    def answer(self, handler: QuietHandler) -> None:
        if self.mode == "gzip":
            handler.send(200, [self.gzipped], {"Content-Encoding": "gzip", "Content-Length": str(len(self.gzipped))})
        elif self.mode == "declared":
            size = len(self.head) + self.pieces * len(self.piece) + len(self.tail)
            handler.send(200, self.body(), {"Content-Length": str(size)})
        else:
            chunked = (f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" for chunk in self.body())
            handler.send(200, [*chunked, b"0\r\n\r\n"], {"Transfer-Encoding": "chunked"})


# Started from a small interpreter, not from the probe: a child's peak RSS (ru_maxrss) counts the pages it shared
# with the process that forked it, before its exec, so a child of this large probe would show the probe's size.
PEAK_OF = (
    "import os, subprocess, sys; p = subprocess.Popen(sys.argv[2:]); _, s, u = os.wait4(p.pid, 0); "
    "open(sys.argv[1], 'w').write(str(u.ru_maxrss)); sys.exit(os.waitstatus_to_exitcode(s))"
)


def predict_peak(pair_file: Path, url: str) -> tuple[int, float, str]:
    """`makeusrich predict` against `url`: its exit status, its peak RSS (the kernel's, by wait4 in a small parent
    process), its last line."""
    output, peak = pair_file.with_suffix(".out"), pair_file.with_suffix(".peak")
    command = makeusrich_command("predict", "-f", str(pair_file), "--source", "sample", "--url", url, "--timeout", "60")
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-c", PEAK_OF, str(peak), *command],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=_harness.REPO,
            env=clean_env(),
        )
    try:
        code = process.wait(timeout=180)  # a bound for a hung client, not a measure
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait()
    lines = [line for line in output.read_text(errors="replace").splitlines() if line.strip()]
    return code, int(peak.read_text() or 0) / 1024, lines[-1] if lines else ""


def huge_answer(probe: Probe, wanted: set[str]) -> list[Row]:
    server = probe.server()
    assert server.store is not None
    folder = probe.folder / "huge"
    folder.mkdir()
    pair_file = folder / "btc-usdt.yaml"
    pair_file.write_text(pair_yaml(server.store.pair))
    code, peak, _ = predict_peak(pair_file, server.url)
    said = [f"against the real server: exit {code}, peak RSS {peak:.0f} MiB"]
    stand_in = HugeAnswers(server.url)
    try:
        for mode in ("declared", "streamed", "gzip"):
            stand_in.mode = mode
            code, peak, line = predict_peak(pair_file, stand_in.url)
            said.append(f"200 MB {mode}: exit {code}, peak RSS {peak:.0f} MiB, '{short(line, 110)}'")
    finally:
        stand_in.close()
    return [("2.13", WHAT["2.13"], 4, "; ".join(said))]


# --- 2.14 the parse cache ------------------------------------------------------------------------------------------

PAIR_FILES, PARSE_ROUNDS = 40, 3
PLACEHOLDER = "pair-name-placeholder"
# The reading process of 2.14, small on purpose (it imports what `up` imports to read pair files, nothing else):
# each round rewrites every file with new content (a pair and a comment that brings it to 1 MiB, the most a pair
# file may hold), reads the folder as up, the dashboard and the tracker do, and notes its resident memory.
PARSE_CHILD = f"""
import json, sys
from pathlib import Path
from makeusrich.pair import read_pair_files
folder, rounds, files = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
template = (folder / "pair.txt").read_text()
seen = []
for round_ in range(rounds):
    for k in range(files):
        text = template.replace("{PLACEHOLDER}", f"big-{{k}}") + f"# round {{round_}}: "
        (folder / f"big-{{k}}.yaml").write_text(text + "x" * (1024 * 1024 - len(text) - 1) + "\\n")
    problems = [found.problem for found in read_pair_files(folder) if found.pair is None]
    if problems:
        sys.exit(f"a pair file did not validate: {{problems[0]}}")
    status = Path("/proc/self/status").read_text()
    seen.append(int(status.split("VmRSS:")[1].split()[0]) / 1024)
print(json.dumps(seen))
"""


def start_parse_cache(probe: Probe) -> subprocess.Popen[str]:
    folder = probe.folder / "parse-cache"
    folder.mkdir()
    (folder / "pair.txt").write_text(pair_yaml(small_pair(PLACEHOLDER)))
    command = [sys.executable, "-c", PARSE_CHILD, str(folder), str(PARSE_ROUNDS), str(PAIR_FILES)]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_harness.child_env(),
        cwd=_harness.REPO,
    )


def parse_cache_row(reading: subprocess.Popen[str]) -> Row:
    out, err = reading.communicate(timeout=600)
    if reading.returncode != 0:
        raise RuntimeError(f"the reading process failed: {err.strip()[-300:]}")
    rss = json.loads(out.strip().splitlines()[-1])
    growth = (rss[-1] - rss[0]) / (len(rss) - 1)
    outcome = (
        f"RSS of the reading process after each round: {', '.join(f'{v:.0f}' for v in rss)} MiB: "
        f"{growth:+.1f} MiB a round after the first ({PAIR_FILES} MiB of files read each round)"
    )
    return ("2.14", WHAT["2.14"], PAIR_FILES * PARSE_ROUNDS, outcome)


def namespaces_and_parse_cache(probe: Probe, wanted: set[str]) -> list[Row]:
    """2.1 and 2.14, together when both are wanted: 2.14's reading process (a core's work for half a minute) runs
    while 2.1 waits on the clock for the tracker's next minute, and the group ends once both have."""
    reading: list[subprocess.Popen[str]] = []

    def meanwhile() -> None:
        if "2.14" in wanted:
            reading.append(start_parse_cache(probe))

    rows: list[Row] = []
    if "2.1" in wanted:
        try:
            rows.append(namespaces_under_up(probe, meanwhile))
        except Exception as exc:  # its failure is its own row: 2.14 goes on
            rows.append(not_measured("2.1", exc))
    if "2.14" in wanted:
        rows.append(parse_cache_row(reading[0] if reading else start_parse_cache(probe)))
    return rows


# --- 2.15 a password in S3_ENDPOINT --------------------------------------------------------------------------------

SECRET = "hunter2-probe-secret"


def endpoint_password(probe: Probe, wanted: set[str]) -> list[Row]:
    folder = probe.folder / "s3-endpoint"
    folder.mkdir()
    pair_file = folder / "btc-usdt.yaml"
    pair_file.write_text(pair_yaml(probe.template.pair))
    env = clean_env(S3_ENDPOINT=f"http://probe-user:{SECRET}@127.0.0.1:9")
    train = ("train", "-f", str(pair_file), "--store", "s3://probe-bucket", "--source", "sample", "--max-epochs", "1")
    said = []
    for args in (("serve", "--store", "s3://probe-bucket", "--port", str(free_port())), train):
        try:
            done = makeusrich(*args, cwd=folder, env=env, timeout=60)
        except subprocess.TimeoutExpired:
            said.append(f"`makeusrich {args[0]}`: still running after 60 s")
            continue
        text = done.stdout + done.stderr
        last = next((line for line in reversed(done.stderr.splitlines()) if line.strip()), "nothing")
        said.append(
            f"`makeusrich {args[0]}`: exit {done.returncode}, password repeated: {SECRET in text}, "
            f"'{short(last.replace(SECRET, '<password>'), 160)}'"
        )
    return [("2.15", WHAT["2.15"], 2, "; ".join(said))]


# --- the round -----------------------------------------------------------------------------------------------------

GROUPS: tuple[tuple[tuple[str, ...], Callable[[Probe, set[str]], list[Row]]], ...] = (
    (("2.1", "2.14"), namespaces_and_parse_cache),
    (("2.2", "2.10", "2.11"), tracker_rows),
    (("2.3",), endless_checks),
    (("2.4", "2.12"), crash_and_bogus),
    (("2.5", "2.6"), pairs_folder_under_up),
    (("2.7",), slow_model_row),
    (("2.8",), login_throttle),
    (("2.9",), idle_connections),
    (("2.13",), huge_answer),
    (("2.15",), endpoint_password),
)


def not_measured(item: str, exc: Exception) -> Row:
    return (item, WHAT[item], 0, f"not measured: {type(exc).__name__}: {short(str(exc), 300)}")


def second_round(probe: Probe, wanted: set[str] | None) -> list[Row]:
    """Every group of rows whose items are wanted (all by default); a group whose machinery fails says so in its
    rows and the next one runs."""
    chosen = set(SECOND_ROUND) if wanted is None else wanted & set(SECOND_ROUND)
    rows: list[Row] = []
    try:
        for items, group in GROUPS:
            mine = chosen & set(items)
            if not mine:
                continue
            began = time.monotonic()
            try:
                rows += group(probe, mine)
            except Exception as exc:  # a probe reports what broke and goes on
                rows += [not_measured(item, exc) for item in sorted(mine)]
            progress(f"{', '.join(sorted(mine))}: {time.monotonic() - began:.0f} s")
    finally:
        probe.close()
    return sorted(rows, key=lambda row: int(row[0].split(".")[1]))


def selection(text: str) -> set[str]:
    chosen = {part.strip() for part in text.split(",") if part.strip()}
    unknown = chosen - {"first", *SECOND_ROUND}
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown rows {sorted(unknown)}: use first and 2.1 to 2.15")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument(
        "--only", type=selection, default=None, metavar="ROWS", help="comma-separated: first, 2.1 ... 2.15"
    )
    run = _harness.Run.start(parser, __file__, argv)
    wanted: set[str] | None = run.args.only
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="makeusrich-hardening-") as tmp:
        folder = Path(tmp)
        trained = train_into(folder / "store", small_pair())
        progress(f"a small model trained: {time.monotonic() - began:.0f} s")
        rows = []
        if wanted is None or "first" in wanted:
            rows = first_round(folder, trained, run.args.repeat)
            progress(f"first round: {time.monotonic() - began:.0f} s")
        rows += second_round(Probe(folder, run.args.repeat, trained), wanted)
    progress(f"whole probe: {time.monotonic() - began:.0f} s")
    run.finish(
        _harness.table(["item", "what was tried", "how many", "what came back"], rows, "llrl"),
        title="Hardening: the battery, what it found, and what holds now",
        part="Latest run",
        settings={"model": "small_pair (window 24, LSTM 1x8)", "rows": ",".join(sorted(wanted or [])) or "all"},
        versions=("kserve", "uvicorn", "pyyaml", "onnxruntime", "nicegui"),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
