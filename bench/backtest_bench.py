"""Walk-forward backtests of the example pair on the bundled sample: `makeusrich backtest`, its files kept.

Why: the README's walk-forward table (one year of history against three against the whole history, scored on
the same 8,394 hours) is made of these runs, and each takes from half an hour to hours, so the files are kept.
It runs `makeusrich backtest -f manifests/examples/btc-usdt.yaml --source sample` with the lookback, folds, step
and jobs given here (always explicit: the pair's own lookbackDays may change) in a child process, and with
`--write` copies its backtest.json, folds.csv and skill.png to bench/results/backtest/<L>d-<F>x<S>.{json,csv,png}
and writes the per-fold table in bench/results/backtest.md, in that configuration's section (the notes around
the sections stay).

    python bench/backtest_bench.py [--lookback-days 1095] [--folds 12] [--step 30d] [--jobs 1] [--hold-out 3]
        [--max-epochs N] [--write]
"""

from __future__ import annotations

import argparse
import csv
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import _harness

FILES = {"backtest.json": "json", "folds.csv": "csv", "skill.png": "png"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    _harness.training_arguments(parser, 1095, "each fold's history: the pair's default")
    parser.add_argument("--folds", type=int, default=12, help="retrainings replayed, newest last")
    parser.add_argument("--step", default="30d", help="time between cutoffs, and each fold's forecast period")
    parser.add_argument("--jobs", type=int, default=1, help="folds trained at once, each in its own process")
    parser.add_argument(
        "--hold-out", type=int, default=3, help="newest folds pooled apart (bench/lookback_bench.py reports on them)"
    )
    run = _harness.Run.start(parser, __file__, argv)
    args = run.args
    name = f"{args.lookback_days}d-{args.folds}x{args.step}"
    backtest = ["backtest", "-f", str(_harness.EXAMPLE_PAIR.relative_to(_harness.REPO)), "--source", "sample"]
    backtest += ["--lookback-days", str(args.lookback_days), "--folds", str(args.folds), "--step", args.step]
    backtest += ["--jobs", str(args.jobs), "--hold-out", str(args.hold_out)]
    if args.max_epochs is not None:
        backtest += ["--max-epochs", str(args.max_epochs)]
    with tempfile.TemporaryDirectory(prefix="makeusrich-backtest-bench-") as tmp:
        out = Path(tmp)
        command = _harness.cli(*backtest, "--store", str(out / "store"), "--out", str(out / "backtest"))
        log = out / "backtest.log"
        with log.open("wb") as sink:
            done = subprocess.run(
                command, stdout=sink, stderr=subprocess.STDOUT, env=_harness.child_env(), cwd=_harness.REPO
            )
        if done.returncode != 0:
            raise SystemExit(f"makeusrich backtest exited with {done.returncode}:\n{log.read_text()[-3000:]}")
        with (out / "backtest" / "folds.csv").open(newline="") as table:
            header, *rows = list(csv.reader(table))
        if args.write:
            folder = run.path.parent / "backtest"
            folder.mkdir(parents=True, exist_ok=True)
            for source, suffix in FILES.items():
                shutil.copyfile(out / "backtest" / source, folder / f"{name}.{suffix}")
    run.finish(
        f"Files: `backtest/{name}.json` (everything, per fold and pooled), `.csv` (the table), `.png` (per-fold "
        "skill).\n\n" + _harness.table(header, rows),
        title="Walk-forward backtests of the default settings",
        part=f"lookbackDays {args.lookback_days}, {args.folds} folds of {args.step}",
        level=3,
        settings=_harness.model_settings(_harness.example_pair(args.lookback_days, args.max_epochs)),
        versions=("torch",),
        notes=[f"Runs: `makeusrich {shlex.join(backtest)}` (a store and an output folder of its own)"],
    )


if __name__ == "__main__":
    main()
