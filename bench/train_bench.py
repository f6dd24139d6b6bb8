"""A default training run on one year of hourly candles: wall time to a published model and peak memory.

Why one year: it is what `make run` trains a pair's first model on (`makeusrich up --first-lookback-days`,
default 365), so this is the wait before a new user's first forecast; the schedule later trains on the pair's
lookbackDays (1095). It runs `makeusrich train` exactly as the CronJob does, on the bundled sample with the
example pair's settings (manifests/examples/btc-usdt.yaml) and `--lookback-days`, into a fresh local store, and
reads the child's peak RSS from the kernel (wait4's rusage of that child alone).

    python bench/train_bench.py [--lookback-days 365] [--max-epochs N] [--runs 1] [--write]

`--write` records the table, the command, the commit and the date in bench/results/train.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import _harness

PAIR = _harness.EXAMPLE_PAIR


def one_run(lookback_days: int, max_epochs: int | None) -> dict[str, Any]:
    """One `makeusrich train` in a child process: its metadata.json, wall time and peak RSS."""
    with tempfile.TemporaryDirectory(prefix="makeusrich-train-bench-") as folder:
        store, output = Path(folder) / "store", Path(folder) / "metadata.json"
        command = _harness.cli(
            "--log-json", "train", "-f", str(PAIR), "--source", "sample", "--store", f"file://{store}", "--json"
        )
        command += ["--lookback-days", str(lookback_days)]
        if max_epochs is not None:
            command += ["--max-epochs", str(max_epochs)]
        start = time.perf_counter()
        with output.open("wb") as out:
            child = subprocess.Popen(
                command, stdout=out, stderr=subprocess.DEVNULL, env=_harness.child_env(), cwd=_harness.REPO
            )
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise SystemExit(f"makeusrich train exited with {child.returncode}")
        meta = json.loads(output.read_text())
    return {
        "meta": meta,
        "wall_s": wall,
        "train_s": meta["training"]["seconds"],
        "epochs": meta["training"]["epochs"],
        "best_epoch": meta["training"]["bestEpoch"],
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "rows": meta["data"]["rows"],
        "val_rel_mae": meta["metrics"]["validation"]["model"]["relMae"],
        "test_rel_mae": meta["metrics"]["test"]["model"]["relMae"],
        "device": meta["training"]["device"],
    }


def skill(meta: dict[str, Any]) -> str:
    """The trained version's skill on validation and test hours: point, direction, its widest range, pinball."""

    rows = []
    for split in ("validation", "test"):
        metrics = meta["metrics"][split]
        point = metrics["model"]
        ranges = metrics["ranges"]
        model, baselines = ranges["model"], (ranges["climatology"], ranges["ewma"])
        widest = [max(r["ranges"], key=lambda c: c["nominal"]) for r in (model, *baselines)]
        dm = "n/a" if point["dmPvalue"] is None else f"{point['dmPvalue']:.3f}"
        rows.append(
            [
                split,
                metrics["n"],
                f"{point['relMae']:.4f} ({dm})",
                _harness.share(point["directional"]),
                f"{widest[0]['nominal']:.0%}: {_harness.share(widest[0], 'rate')}",
                " / ".join(f"{widest[0]['intervalScore'] / w['intervalScore']:.4f}" for w in widest[1:]),
                " / ".join(f"{model['pinball'] / b['pinball']:.4f}" for b in baselines),
            ]
        )
    header = ["split", "hours", "MAE / persistence (DM p)", "direction [95% CI]", "widest range covers [95% CI]"]
    header += ["its interval score / climatology's, EWMA's", "pinball / climatology's, EWMA's"]
    return _harness.table(header, rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    _harness.training_arguments(parser, 365, "what make run's first model reads")
    parser.add_argument("--runs", type=int, default=1)
    run = _harness.Run.start(parser, __file__, argv)
    args = run.args
    rows, r = [], {}
    for i in range(args.runs):
        r = one_run(args.lookback_days, args.max_epochs)
        rows.append(
            [
                i + 1,
                r["rows"],
                r["device"],
                f"{r['epochs']} ({r['best_epoch']})",
                f"{r['train_s']:.1f}",
                f"{r['wall_s']:.1f}",
                f"{r['peak_rss_mib']:.0f}",
                f"{r['val_rel_mae']:.4f}",
                f"{r['test_rel_mae']:.4f}",
            ]
        )
        print(rows[-1], flush=True)
    header = ["run", "candles", "device", "epochs (best)", "training s", "wall s to published model"]
    header += ["peak RSS MiB", "val MAE/persistence", "test MAE/persistence"]
    run.finish(
        _harness.table(header, rows)
        + f"\n\nSkill of run {args.runs}'s version (what the README says of `make run`'s first model):\n\n"
        + skill(r["meta"])
        + "\n\nIts promotion (the store served the baseline, which this run published first): "
        + ("promoted" if r["meta"]["promotion"]["promoted"] else "refused")
        + f"; {r['meta']['promotion']['reason']}\n",
        title="Training run benchmark: default settings, one year of hourly candles",
        settings={"pair": PAIR, **_harness.model_settings(_harness.example_pair(args.lookback_days, args.max_epochs))},
        versions=("torch",),
        notes=[
            "Runs `makeusrich train` on the example pair with its model settings, on the last `--lookback-days` "
            "of the bundled BTC/USDT hourly candles, into a fresh local store; wall time is to a published, "
            "checked model; peak RSS is the child process's, from the kernel.",
        ],
    )


if __name__ == "__main__":
    main()
