"""Forecast quality of the default settings on the bundled data's last 10%, beside persistence and the rules.

Run: .venv/bin/python bench/quality_bench.py [--lookback-days 1800]  (results kept in bench/results/quality.md)
Trains the example pair with its default model settings on the whole bundled history (2017-08 to 2022-06) via
the same pipeline as `makeusrich train`, then prints the test and validation metrics that metadata.json records.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from makeusrich.market import Source
from makeusrich.pair import load_pair
from makeusrich.trainer.pipeline import run_training

PAIR = Path(__file__).resolve().parents[1] / "manifests" / "examples" / "btc-usdt.yaml"
NAMES = {
    "model": "LSTM (default settings)",
    "persistence": "persistence",
    "ar": "AR(24) on log returns",
    "alwaysUp": "always up (training drift)",
    "againstLastMove": "bet against the last move",
}


def row(name: str, score: dict[str, Any] | None) -> str:
    if score is None:
        return f"| {name} | n/a |||||| "
    d = score["directional"]
    direction = f"{d['accuracy']:.1%} [{d['wilsonLow']:.1%}, {d['wilsonHigh']:.1%}]" if d else "n/a"
    dm = "" if name == "persistence" or score["dmPvalue"] is None else f"{score['dmPvalue']:.3f}"
    return (
        f"| {name} | {score['mae']:.2f} | {score['rmse']:.2f} | {score['relMae']:.4f} | {score['relRmse']:.4f} "
        f"| {dm} | {direction} |"
    )


def table(split: dict[str, Any]) -> str:
    lines = [
        "| forecast | MAE | RMSE | MAE / persistence | RMSE / persistence | DM p vs persistence | direction [95% CI] |",
        "|---|---|---|---|---|---|---|",
        row(NAMES["model"], split["model"]),
    ]
    lines += [row(NAMES[rule], split["rules"][rule]) for rule in ("persistence", "ar", "alwaysUp", "againstLastMove")]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lookback-days", type=int, default=1800, help="1800 covers the whole bundled history")
    args = parser.parse_args()
    pair = load_pair(PAIR)
    pair = pair.model_copy(update={"spec": pair.spec.model_copy(update={"lookback_days": args.lookback_days})})
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as store:
        outcome = run_training(pair, Source("sample"), f"file://{store}", progress=None)
    meta = outcome.metadata.to_json()
    print(
        f"data {meta['data']['from']} .. {meta['data']['to']}, {meta['data']['rows']} candles; windows "
        f"{meta['data']['windows']}; test from {meta['data']['testFrom']}"
    )
    print(
        f"training: {meta['training']['epochs']} epochs (best {meta['training']['bestEpoch']}), "
        f"{meta['training']['seconds']:.0f} s; whole run {time.perf_counter() - started:.0f} s"
    )
    print(f"promotion: {meta['promotion']['reason']}\n")
    for split in ("test", "validation"):
        print(f"### {split} ({meta['metrics'][split]['n']} hourly forecasts, USD)\n")
        print(table(meta["metrics"][split]) + "\n")


if __name__ == "__main__":
    main()
