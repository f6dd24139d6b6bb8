"""A default training run on one year of hourly candles: wall time to a published model and peak memory.

Run: .venv/bin/python bench/train_bench.py [--runs N]   (results kept in bench/results/train.md)
It runs `makeusrich train` exactly as the CronJob does, on the bundled sample's last 365 days with the example
pair's default settings, into a fresh local store, and reads the child's peak RSS from the kernel.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PAIR = ROOT / "manifests" / "examples" / "btc-usdt.yaml"


def one_run() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as store:
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        start = time.perf_counter()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "makeusrich.cli",
                "--log-json",
                "train",
                "-f",
                str(PAIR),
                "--source",
                "sample",
                "--store",
                f"file://{store}",
                "--json",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        wall = time.perf_counter() - start
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        meta = json.loads(result.stdout)
    return {
        "wall_s": wall,
        "train_s": meta["training"]["seconds"],
        "epochs": meta["training"]["epochs"],
        "best_epoch": meta["training"]["bestEpoch"],
        "peak_rss_mib": max(peak_kib, before) / 1024,
        "rows": meta["data"]["rows"],
        "val_rel_mae": meta["metrics"]["validation"]["model"]["relMae"],
        "test_rel_mae": meta["metrics"]["test"]["model"]["relMae"],
        "device": meta["training"]["device"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    print(
        f"machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"cuda {torch.cuda.is_available()}"
    )
    print(
        "| run | candles | device | epochs (best) | training s | wall s to published model | peak RSS MiB "
        "| val MAE/persistence | test MAE/persistence |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for i in range(args.runs):
        r = one_run()
        print(
            f"| {i + 1} | {r['rows']} | {r['device']} | {r['epochs']} ({r['best_epoch']}) | {r['train_s']:.1f} | "
            f"{r['wall_s']:.1f} | {r['peak_rss_mib']:.0f} | {r['val_rel_mae']:.4f} | {r['test_rel_mae']:.4f} |"
        )


if __name__ == "__main__":
    main()
