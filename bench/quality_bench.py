"""Forecast quality of the default settings on the bundled data's last 10%, beside persistence and the rules.

Why the whole history: one year's test split (756 hours) cannot tell a model from persistence; 4,109 hours can
say more. Trains the example pair with its default model settings on the whole bundled history (2017-08 to
2022-06) via the same pipeline as `makeusrich train`, then prints the test and validation metrics that
metadata.json records.

    python bench/quality_bench.py [--lookback-days 1800] [--max-epochs N] [--write]

`--write` records the tables, the command, the commit and the date in bench/results/quality.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

import _harness

from makeusrich.market import Source
from makeusrich.trainer.pipeline import run_training

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
    direction = _harness.share(score["directional"])
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    _harness.training_arguments(parser, 1800, "1800 covers the whole bundled history")
    run = _harness.Run.start(parser, __file__, argv)
    args = run.args
    pair = _harness.example_pair(args.lookback_days, args.max_epochs)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as store:
        outcome = run_training(pair, Source("sample"), f"file://{store}", progress=None)
    meta = outcome.metadata.to_json()
    lines = [
        f"data {meta['data']['from']} .. {meta['data']['to']}, {meta['data']['rows']} candles; windows "
        f"{meta['data']['windows']}; test from {meta['data']['testFrom']}",
        f"training: {meta['training']['epochs']} epochs (best {meta['training']['bestEpoch']}), "
        f"{meta['training']['seconds']:.0f} s; whole run {time.perf_counter() - started:.0f} s",
        f"promotion: {meta['promotion']['reason']}\n",
    ]
    for split in ("test", "validation"):
        lines.append(f"### {split} ({meta['metrics'][split]['n']} hourly forecasts, USD)\n")
        lines.append(table(meta["metrics"][split]) + "\n")
    run.finish(
        "\n".join(lines),
        title="Forecast quality of the default settings",
        settings={"pair": _harness.EXAMPLE_PAIR, **_harness.model_settings(pair)},
        versions=("torch",),
        notes=[
            "Default model settings of manifests/examples/btc-usdt.yaml on the bundled BTC/USDT hourly candles "
            "(lookbackDays 1800 uses the whole history); chronological split into the four data roles (train 75%, "
            "validation 7.5%, calibration 7.5%, test 10%) with no candle shared between them. The run publishes "
            "the baseline first, so its promotion line is the gates' verdict against it.",
        ],
    )


if __name__ == "__main__":
    main()
