"""`makeusrich up` on one machine: how long from an empty folder to the first forecast served, where that time
goes, and how much memory the whole process tree holds while training and while idle.

It runs `makeusrich up` with its defaults (the bundled pair, 365 days, up to 50 epochs) in a temporary folder,
offline on purpose (BINANCE_API_URL points at a closed loopback port, so the bundled sample is used, as on a
laptop without network), asks the v2 endpoint for a forecast as soon as it serves one, then watches the idle
tree for `--idle-s` seconds and stops it with SIGINT, as Ctrl-C does.

    python bench/up_bench.py [--idle-s 20] [--write]

`--write` records the table, the command and the date in bench/results/up.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "up.md"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tree_rss_mib(pgid: int) -> float:
    """Resident memory of every process in the group (the runner and all its children), MiB."""
    total = 0
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:
                continue
            rss = next(line for line in (status.parent / "status").read_text().splitlines() if line.startswith("VmRSS"))
        except (OSError, StopIteration):
            continue
        total += int(rss.split()[1])
    return total / 1024


class Sampler(threading.Thread):
    """Samples the tree's RSS every 0.25 s, labelled by the phase the main thread says it is in."""

    def __init__(self, pgid: int) -> None:
        super().__init__(daemon=True)
        self.pgid, self.phase, self.samples = pgid, "starting", []  # type: ignore[var-annotated]
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.25):
            self.samples.append((self.phase, tree_rss_mib(self.pgid)))

    def peak(self, phase: str) -> float:
        return max((rss for p, rss in self.samples if p == phase), default=float("nan"))

    def median(self, phase: str) -> float:
        values = [rss for p, rss in self.samples if p == phase]
        return float(np.median(values)) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-s", type=float, default=20.0, help="how long to watch the idle tree")
    parser.add_argument("--write", action="store_true", help="record the results in bench/results/up.md")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="makeusrich-up-bench-"))
    port, serving_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKEUSRICH_", "BINANCE_"))}
    env.update(PYTHONPATH=str(REPO), BINANCE_API_URL=f"http://127.0.0.1:{free_port()}/api")
    command = [sys.executable, "-m", "makeusrich.cli", "up", "--port", str(port), "--serving-port", str(serving_port)]
    log = folder / "up.log"
    began = time.monotonic()
    marks: dict[str, float] = {}
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    sampler = Sampler(process.pid)
    sampler.start()
    url = f"http://127.0.0.1:{serving_port}"
    try:
        while "first forecast" not in marks:
            assert process.poll() is None, log.read_text()
            text = log.read_text()
            for needle, mark in (
                ("Dashboard:", "dashboard"),
                ("training (", "training"),
                ("btc-usdt: version", "published"),
            ):
                if needle in text and mark not in marks:
                    marks[mark] = time.monotonic() - began
                    sampler.phase = {"dashboard": "starting", "training": "training", "published": "loading"}[mark]
            if "published" in marks:
                try:
                    meta = httpx.get(f"{url}/v2/models/btc-usdt", timeout=2).json()
                    window = int(meta["inputs"][0]["shape"][1])
                    body = {
                        "inputs": [
                            {"name": "candles", "datatype": "FP32", "shape": [1, window, 5], "data": [1.0] * window * 5}
                        ]
                    }
                    if httpx.post(f"{url}/v2/models/btc-usdt/infer", json=body, timeout=5).status_code == 200:
                        marks["first forecast"] = time.monotonic() - began
                except (httpx.TransportError, KeyError, ValueError):
                    pass
            time.sleep(0.1)
        sampler.phase = "idle"
        time.sleep(args.idle_s)  # a benchmark's observation window, not a wait for an event
        stop_began = time.monotonic()
        os.killpg(process.pid, signal.SIGINT)
        code = process.wait(timeout=30)
        stopped_s = time.monotonic() - stop_began
    finally:
        sampler.done.set()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    state = json.loads((folder / ".makeusrich" / "store" / "default" / "btc-usdt" / "runs" / "state.json").read_text())
    version = state["version"]
    metadata = json.loads(
        (folder / ".makeusrich" / "store" / "default" / "btc-usdt" / "versions" / version / "metadata.json").read_text()
    )
    training = metadata["training"]
    epochs = training["history"]
    rows = [
        ("dashboard and v2 endpoint answer", f"{marks['dashboard']:.1f} s"),
        ("training starts", f"{marks['training']:.1f} s"),
        ("model published (training done)", f"{marks['published']:.1f} s"),
        ("first forecast served", f"{marks['first forecast']:.1f} s"),
        ("  of which: training run (makeusrich train, total)", f"{training['totalSeconds']:.1f} s"),
        (
            "  of which: epochs",
            f"{training['seconds']:.1f} s ({training['epochs']} epochs, best {training['bestEpoch']}, "
            f"{training['seconds'] / max(1, training['epochs']):.1f} s each)",
        ),
        (
            "  of which: published to served (server poll, checks)",
            f"{marks['first forecast'] - marks['published']:.1f} s",
        ),
        ("memory of the process tree, idle (median)", f"{sampler.median('idle'):.0f} MiB"),
        ("memory of the process tree, training (peak)", f"{sampler.peak('training'):.0f} MiB"),
        ("Ctrl-C to every process ended", f"{stopped_s:.1f} s, exit status {code}"),
    ]
    skill = metadata["promotion"]
    table = "\n".join(
        ["| step (from `makeusrich up` on an empty folder) | measured |", "|---|---|"]
        + [f"| {a} | {b} |" for a, b in rows]
    )
    print(table)
    print(
        f"validation MAE ratio {skill['validationRelativeMAE']:.4f}; promoted: {skill['promoted']}; "
        f"epochs {len(epochs)}"
    )
    if args.write:
        RESULTS.write_text(
            "# `makeusrich up`: first forecast, memory, stop\n\n"
            f"Command: `python bench/up_bench.py --idle-s {args.idle_s:g} --write`, "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
            f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}. Defaults: the bundled "
            "pair (365 days, window 120, up to 50 epochs, patience 3), offline (the bundled sample).\n\n"
            f"{table}\n\nThe trained version: validation MAE ratio {skill['validationRelativeMAE']:.4f} of "
            "persistence's, "
            f"promoted: {skill['promoted']}.\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
