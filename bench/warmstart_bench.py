"""Warm-started retraining against training from the seed: the same walk-forward folds both ways, and whole runs.

Why: a scheduled run starts from the previous model's weights (makeusrich.trainer.warm) to save most of its
training time; that is worth it only if the forecasts stay as good. Two measurements:

1. Walk-forward (`--lookback-days`, `--folds` monthly folds of the bundled sample): every fold trained from the
   seed, then every fold after the first started from the previous fold's weights (the first is cold in both).
   Both forecast the same out-of-sample hours, so a pooled Diebold-Mariano test compares them point by point
   (absolute error of the median forecast, and pinball loss of the quantiles); training seconds and epochs
   per fold beside.
2. Whole runs (`makeusrich train`, a fresh store, the same sample candles): the first run (cold: the pair has no
   LSTM; it publishes the baseline first), then a second run warm-started from the first, then a third with
   `warmStart: false`: wall time of each process, as a scheduled Job spends it.

    python bench/warmstart_bench.py [--lookback-days 1095] [--folds 12] [--step 30d] [--skip-runs] [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import _harness
import numpy as np
import yaml

from makeusrich.market import Source, close_moments, load_candles
from makeusrich.scoring import ranges
from makeusrich.scoring.evaluate import diebold_mariano, diebold_mariano_losses
from makeusrich.trainer.backtest import Forecasts, cutoffs, fold_outcomes
from makeusrich.trainer.evaluation import log_returns


def walk_forward(
    lookback_days: int, max_epochs: int | None, folds: int, step: timedelta, warm: bool
) -> list[tuple[Forecasts, dict[str, Any]]]:
    pair = _harness.example_pair(lookback_days, max_epochs)
    spec = pair.spec.model_copy(update={"model": pair.spec.model.model_copy(update={"warm_start": warm})})
    history_days = lookback_days + -(-step * folds // timedelta(days=1)) + 1
    candles = load_candles(spec.model_copy(update={"lookback_days": history_days}), Source("sample"))
    frame = candles.frame.reset_index(drop=True)
    cuts = cutoffs(close_moments(frame["open_time"], spec.interval).iloc[-1], folds, step)
    return fold_outcomes(spec, frame, cuts, step)


def compare(cold: list[tuple[Forecasts, dict[str, Any]]], warm: list[tuple[Forecasts, dict[str, Any]]]) -> str:
    levels = _harness.example_pair().spec.model.quantiles
    rows = []
    for k, ((c, cf), (w, wf)) in enumerate(zip(cold, warm, strict=True)):
        assert np.array_equal(c.target_at, w.target_at), "the two runs forecast different hours"
        rows.append(fold_row(str(k + 1), c, w, cf, wf, levels))
    later = slice(1, None)  # fold 1 is cold in both
    pooled_c, pooled_w = Forecasts.pool([c for c, _ in cold[later]]), Forecasts.pool([w for w, _ in warm[later]])
    seconds = [sum(f["train_seconds"] for _, f in runs[later]) for runs in (cold, warm)]
    epochs = [sum(f["epochs"] for _, f in runs[later]) for runs in (cold, warm)]
    rows.append(fold_row(f"pooled 2-{len(cold)}", pooled_c, pooled_w, None, None, levels, seconds, epochs))
    header = ["fold", "hours", "MAE warm / cold", "DM p (abs. error)", "pinball warm / cold", "DM p (pinball)"]
    header += ["90% covers: cold, warm", "epochs cold, warm", "training s cold, warm", "time warm / cold"]
    return _harness.table(header, rows, "lrrrrrrrrr")


def fold_row(
    name: str,
    cold: Forecasts,
    warm: Forecasts,
    cold_facts: dict[str, Any] | None,
    warm_facts: dict[str, Any] | None,
    levels: list[float],
    seconds: list[float] | None = None,
    epochs: list[int] | None = None,
) -> list[object]:
    errors = [np.abs(part.forecast - part.actual).mean(axis=1) for part in (cold, warm)]
    actual = log_returns(cold.actual, cold.last_close)
    pinball = [ranges.pinball_by_origin(actual, part.quantiles, levels) for part in (cold, warm)]
    widest = [
        np.mean((actual >= part.quantiles[..., 0]) & (actual <= part.quantiles[..., -1])) for part in (cold, warm)
    ]
    dm_abs = diebold_mariano(cold.forecast - cold.actual, warm.forecast - warm.actual, loss="absolute")
    dm_pin = diebold_mariano_losses(pinball[0], pinball[1])
    if cold_facts is not None and warm_facts is not None:
        seconds = [cold_facts["train_seconds"], warm_facts["train_seconds"]]
        epochs = [cold_facts["epochs"], warm_facts["epochs"]]
    assert seconds is not None and epochs is not None
    return [
        name,
        len(errors[0]),
        f"{errors[1].mean() / errors[0].mean():.4f}",
        "n/a" if dm_abs is None else f"{dm_abs:.3f}",
        f"{pinball[1].mean() / pinball[0].mean():.4f}",
        "n/a" if dm_pin is None else f"{dm_pin:.3f}",
        f"{widest[0]:.3f}, {widest[1]:.3f}",
        f"{epochs[0]}, {epochs[1]}",
        f"{seconds[0]:.1f}, {seconds[1]:.1f}",
        f"{seconds[1] / seconds[0]:.2f}",
    ]


def whole_runs(lookback_days: int, max_epochs: int | None) -> str:
    """Three `makeusrich train` processes into one fresh store: cold (first), warm, and cold by the spec."""
    pair = yaml.safe_load(_harness.EXAMPLE_PAIR.read_text())
    pair["spec"]["lookbackDays"] = lookback_days
    if max_epochs is not None:
        pair["spec"]["model"]["maxEpochs"] = max_epochs
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        store = f"file://{folder}/store"
        for name, warm_start in (
            ("first (no LSTM yet)", True),
            ("second, warm", True),
            ("third, warmStart false", False),
        ):
            pair["spec"]["model"]["warmStart"] = warm_start
            path = Path(folder) / "pair.yaml"
            path.write_text(yaml.safe_dump(pair))
            began = time.perf_counter()
            done = subprocess.run(
                _harness.cli("train", "-f", str(path), "--source", "sample", "--store", store, "--json"),
                env=_harness.child_env(os.environ),
                capture_output=True,
                text=True,
                check=True,
            )
            wall = time.perf_counter() - began
            meta = json.loads(done.stdout)
            training = meta["training"]
            rows.append(
                [
                    name,
                    f"{wall:.1f}",
                    f"{training['seconds']:.1f}",
                    f"{training['epochs']} ({training['bestEpoch']})",
                    f"{meta['metrics']['test']['model']['relMae']:.4f}",
                    "promoted" if meta["promotion"]["promoted"] else "refused",
                    training["start"],
                ]
            )
            print(rows[-1], flush=True)
    header = ["run", "wall s", "training s", "epochs (best)", "test MAE / persistence", "gates", "started"]
    return _harness.table(header, rows, "lrrrrll")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    _harness.training_arguments(parser, 1095, "the example pair's lookbackDays")
    parser.add_argument("--folds", type=int, default=12)
    parser.add_argument("--step", type=int, default=30, help="days between cutoffs")
    parser.add_argument("--skip-runs", action="store_true", help="only the walk-forward")
    run = _harness.Run.start(parser, __file__, argv)
    args = run.args
    step = timedelta(days=args.step)
    started = time.perf_counter()
    cold = walk_forward(args.lookback_days, args.max_epochs, args.folds, step, warm=False)
    print(f"cold folds done ({time.perf_counter() - started:.0f} s)", flush=True)
    warm = walk_forward(args.lookback_days, args.max_epochs, args.folds, step, warm=True)
    body = (
        f"Walk-forward, {args.folds} folds of {args.step} days, lookbackDays {args.lookback_days}: each fold from "
        "the seed (cold) and from the previous fold's weights (warm; fold 1 is cold in both). Ratios below 1 and "
        "a small p-value favour warm; a p-value above 0.05 means no significant difference.\n\n" + compare(cold, warm)
    )
    if not args.skip_runs:
        body += (
            f"\n\nWhole `makeusrich train` runs into one fresh store (sample candles, lookbackDays "
            f"{args.lookback_days}): wall time of the process, as a scheduled Job spends it.\n\n"
            + whole_runs(args.lookback_days, args.max_epochs)
        )
    run.finish(
        body,
        title="Warm-started retraining against training from the seed",
        part=f"lookbackDays {args.lookback_days}, {args.folds} folds of {args.step}d",
        settings=_harness.model_settings(_harness.example_pair(args.lookback_days, args.max_epochs)),
        versions=("torch",),
        notes=[f"{time.perf_counter() - started:.0f} s from start to record"],
    )


if __name__ == "__main__":
    main()
