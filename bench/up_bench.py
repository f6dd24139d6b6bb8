"""`makeusrich up` on one machine: how long from an empty folder to the first forecast served, where that time
goes, and how much memory the whole process tree holds while training and while idle.

Why: it is a new user's first wait. It runs `makeusrich up` with its defaults (the bundled pair, whose first
model reads 365 days, up to 50 epochs) in a temporary folder, offline on purpose (BINANCE_API_URL points at a
closed loopback port, so the bundled sample is used, as on a laptop without network), asks the v2 endpoint for
a forecast as soon as the baseline is published, waits for the LSTM's outcome (served, or refused by the
gates), then watches the idle tree for `--idle-s` seconds and stops it with SIGINT, as Ctrl-C does.

    python bench/up_bench.py [--idle-s 20] [--max-epochs N] [--write]

`--write` records the table, the command, the commit and the date in bench/results/up.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import _harness
import httpx

from tests.fixtures.model_server import free_port


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--idle-s", type=float, default=20.0, help="how long to watch the idle tree")
    parser.add_argument("--max-epochs", type=int, default=None, help="passed to makeusrich up (short checks)")
    parser.add_argument("--pair", type=Path, default=None, help="a btc-usdt pair file instead of the bundled one")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up when no forecast is served by then")
    run = _harness.Run.start(parser, __file__, argv)
    with tempfile.TemporaryDirectory(prefix="makeusrich-up-bench-") as tmp:
        measure(run, Path(tmp))


def measure(run: _harness.Run, folder: Path) -> None:
    """Start `makeusrich up` in `folder`, wait for its first forecast, watch it idle, stop it, record."""
    args = run.args
    ports = {flag: str(free_port()) for flag in ("--port", "--serving-port", "--track-port")}
    offline = {k: v for k, v in os.environ.items() if not k.startswith(("MAKEUSRICH_", "BINANCE_"))}
    env = _harness.child_env(offline, BINANCE_API_URL=f"http://127.0.0.1:{free_port()}/api")
    command = _harness.cli("up", *(x for flag, port in ports.items() for x in (flag, port)))
    if args.max_epochs is not None:
        command += ["--max-epochs", str(args.max_epochs)]
    if args.pair is not None:
        command += ["-f", str(args.pair.resolve())]
    log = folder / "up.log"
    began = time.monotonic()
    marks: dict[str, float] = {}
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    sampler = _harness.Sampler(lambda: _harness.group_rss_mib(process.pid), 0.25, "starting")
    url = f"http://127.0.0.1:{ports['--serving-port']}"
    phases = {"dashboard": "starting", "training": "training", "baseline": "training", "lstm": "loading"}
    try:
        with sampler:
            while "lstm served" not in marks:
                text = log.read_text()
                if process.poll() is not None or time.monotonic() - began > args.timeout:
                    raise SystemExit(f"the LSTM's outcome never came (exit status {process.poll()}); the log:\n{text}")
                for needle, mark in (
                    ("Dashboard:", "dashboard"),
                    ("training (", "training"),
                    ("btc-usdt: baseline version", "baseline"),
                    ("btc-usdt: LSTM version", "lstm"),
                ):
                    if needle in text and mark not in marks:
                        marks[mark] = time.monotonic() - began
                        sampler.phase = phases[mark]
                if "baseline" in marks and "first forecast" not in marks and served_kind(url):
                    marks["first forecast"] = time.monotonic() - began
                if "lstm" in marks:
                    promoted = "btc-usdt: LSTM version" in text and "promoted and served" in text
                    if not promoted or served_kind(url) == "lstm":
                        marks["lstm served"] = time.monotonic() - began
                time.sleep(0.1)
            sampler.phase = "idle"
            time.sleep(args.idle_s)  # a benchmark's observation window, not a wait for an event
        stop_began = time.monotonic()
        os.killpg(process.pid, signal.SIGINT)
        code = process.wait(timeout=30)
        stopped_s = time.monotonic() - stop_began
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    pair = folder / ".makeusrich" / "store" / "default" / "btc-usdt"
    version = json.loads((pair / "runs" / "state.json").read_text())["version"]
    metadata = json.loads((pair / "versions" / version / "metadata.json").read_text())
    training, data, skill = metadata["training"], metadata["data"], metadata["promotion"]
    outcome = next(line for line in log.read_text().splitlines() if line.startswith("btc-usdt: LSTM version"))
    rows = [
        ("dashboard and v2 endpoint answer", f"{marks['dashboard']:.1f} s"),
        ("training starts", f"{marks['training']:.1f} s"),
        ("baseline published", f"{marks['baseline']:.1f} s"),
        ("first forecast served (the baseline)", f"{marks['first forecast']:.1f} s"),
        ("LSTM trained, judged and published", f"{marks['lstm']:.1f} s"),
        (
            "LSTM served" if skill["promoted"] else "LSTM refused by the gates (the baseline stays)",
            f"{marks['lstm served']:.1f} s",
        ),
        ("  of which: LSTM training run (makeusrich train, total)", f"{training['totalSeconds']:.1f} s"),
        (
            "  of which: epochs",
            f"{training['seconds']:.1f} s ({training['epochs']} epochs, best {training['bestEpoch']}, "
            f"{training['seconds'] / max(1, training['epochs']):.1f} s each)",
        ),
        ("memory of the process tree, idle (median)", f"{sampler.median('idle'):.0f} MiB"),
        ("memory of the process tree, training (peak)", f"{sampler.peak('training'):.0f} MiB"),
        ("Ctrl-C to every process ended", f"{stopped_s:.1f} s, exit status {code}"),
    ]
    run.finish(
        _harness.table(["step (from `makeusrich up` on an empty folder)", "measured"], rows)
        + f"\n\nThe LSTM's outcome, as `up` printed it: {outcome.removeprefix('btc-usdt: ')}\n",
        title="`makeusrich up`: first forecast, memory, stop",
        settings={
            "candles": data["rows"],
            "from": data["from"],
            "to": data["to"],
            "window": metadata["window"],
            "epochs": training["epochs"],
        },
        versions=("torch", "nicegui", "kserve"),
        notes=[
            (
                "`makeusrich up` with its defaults in an empty folder: the bundled pair, whose first model reads the "
                "last 365 days (`--first-lookback-days`; window 120, up to 50 epochs, patience 3)"
                if args.pair is None and args.max_epochs is None
                else "`makeusrich up` in an empty folder with the pair file and epochs given above"
            )
            + ", offline (the bundled sample). Memory is the resident memory of every process of the tree, summed, "
            "sampled every 0.25 s.",
        ],
    )


def served_kind(url: str) -> str | None:
    """Which kind of model the v2 endpoint serves for the bundled pair, once it answers a forecast."""
    try:
        meta = httpx.get(f"{url}/v2/models/btc-usdt", timeout=2).json()
        window = int(meta["inputs"][0]["shape"][1])
        tensor = {"name": "candles", "datatype": "FP32", "shape": [1, window, 5], "data": [1.0] * window * 5}
        answered = httpx.post(f"{url}/v2/models/btc-usdt/infer", json={"inputs": [tensor]}, timeout=5)
        return str(meta["parameters"]["model_kind"]) if answered.status_code == 200 else None
    except (httpx.TransportError, KeyError, ValueError):
        return None


if __name__ == "__main__":
    main()
