"""Walk-forward backtests of the example pair on the bundled sample: `makeusrich backtest`, its files kept.

Why: the README's walk-forward table (one year of history against three against the whole history, scored on
the same 8,394 hours) is made of these runs, and each takes from half an hour to hours, so the files are kept.
It runs `makeusrich backtest -f manifests/examples/btc-usdt.yaml --source sample` with the lookback, folds, step
and jobs given here (always explicit: the pair's own lookbackDays may change) in a child process, and with
`--write` copies its backtest.json, folds.csv and skill.png to bench/results/backtest/<L>d-<F>x<S>.{json,csv,png}
and writes the per-fold table in bench/results/backtest.md, in that configuration's section (the notes around
the sections stay). The same run answers whether following the model would have made money after fees: its
decision.csv and equity.png go beside (<name>.decision.csv, <name>.equity.png) and its table, the pooled headline
and the folds each rule lost, in bench/results/decision.md.

    python bench/backtest_bench.py [--lookback-days 1095] [--folds 12] [--step 30d] [--jobs 1] [--hold-out 3] [--cold]
        [--max-epochs N] [--write]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import _harness

from makeusrich.scoring import decision, decision_rows
from makeusrich.store import BacktestResult
from makeusrich.trainer.backtest import decision_markdown, ratios_markdown

FILES = {
    "backtest.json": "json",
    "folds.csv": "csv",
    "skill.png": "png",
    "decision.csv": "decision.csv",
    "equity.png": "equity.png",
}
COMPARISONS = {
    "signal_vs_holding": "the signal rule against holding",
    "risk_target_vs_holding": "the risk-target rule against holding",
    "signal_vs_drift": "the signal rule against its twin fed by the training drift",
    "risk_target_vs_ewma": "the risk-target rule against its twin fed by EWMA volatility (the ranges' economic value)",
}


def decision_body(result: BacktestResult, name: str) -> str:
    """The rules' table, the pooled headline, and for each comparison the folds won and lost, the lost ones first."""
    folds = [r for r in decision_rows(result) if str(r["fold"]).isdigit()]
    lines = [
        f"Files: `backtest/{name}.decision.csv` (the table, with each interval's ends), `backtest/{name}.equity.png` "
        f"(the pooled equity curves), `backtest/{name}.json` (everything).",
        "",
        decision_markdown(result).strip(),
        "",
    ]
    if result.pooled_decision is not None:
        lines += [decision.headline(result.pooled_decision, f"{len(folds)} folds pooled") + ".", ""]
    for column, said in COMPARISONS.items():
        lost = [str(r["fold"]) for r in folds if r[column] < 0]
        won = [str(r["fold"]) for r in folds if r[column] > 0]
        beyond = [str(r["fold"]) for r in folds if r[f"{column}_p"] < 0.05]
        lines.append(
            f"- {said}: behind in {len(lost)} of {len(folds)} folds ({', '.join(lost) or 'none'}), ahead in "
            f"{len(won)} ({', '.join(won) or 'none'}), level in the rest; a difference beyond luck (p < 0.05) in "
            f"{', '.join(beyond) or 'none'}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    _harness.training_arguments(parser, 1095, "each fold's history: the pair's default")
    parser.add_argument("--folds", type=int, default=12, help="retrainings replayed, newest last")
    parser.add_argument("--step", default="30d", help="time between cutoffs, and each fold's forecast period")
    parser.add_argument("--jobs", type=int, default=1, help="folds trained at once, each in its own process")
    parser.add_argument(
        "--hold-out", type=int, default=3, help="newest folds pooled apart (bench/lookback_bench.py reports on them)"
    )
    parser.add_argument(
        "--cold", action="store_true", help="every fold from the seed (needed with --jobs above 1; default: warm)"
    )
    run = _harness.Run.start(parser, __file__, argv)
    args = run.args
    name = f"{args.lookback_days}d-{args.folds}x{args.step}"
    backtest = ["backtest", "-f", str(_harness.EXAMPLE_PAIR.relative_to(_harness.REPO)), "--source", "sample"]
    backtest += ["--lookback-days", str(args.lookback_days), "--folds", str(args.folds), "--step", args.step]
    backtest += ["--jobs", str(args.jobs), "--hold-out", str(args.hold_out)]
    if args.max_epochs is not None:
        backtest += ["--max-epochs", str(args.max_epochs)]
    if args.cold:
        backtest.append("--cold")
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
        result = BacktestResult.model_validate_json((out / "backtest" / "backtest.json").read_bytes())
        if args.write:
            folder = run.path.parent / "backtest"
            folder.mkdir(parents=True, exist_ok=True)
            for source, suffix in FILES.items():
                shutil.copyfile(out / "backtest" / source, folder / f"{name}.{suffix}")
    section = {  # both results files record this run in a section of the same name
        "part": f"lookbackDays {args.lookback_days}, {args.folds} folds of {args.step}",
        "level": 3,
        "settings": _harness.model_settings(_harness.example_pair(args.lookback_days, args.max_epochs)),
        "versions": ("torch",),
    }
    run.finish(
        f"Files: `backtest/{name}.json` (everything, per fold and pooled), `.csv` (the table), `.png` (per-fold "
        "skill).\n\n"
        + _harness.table(header, rows)
        + "\n\nThe 90% range's interval score over each naive range's, with its 95% interval from a stationary block "
        "bootstrap of the hours (blocks of a day on average): an interval that holds 1 could be luck.\n\n"
        + ratios_markdown(result).strip(),
        title="Walk-forward backtests of the default settings",
        notes=[f"Runs: `makeusrich {shlex.join(backtest)}` (a store and an output folder of its own)"],
        **section,
    )
    dataclasses.replace(run, results="decision").finish(
        decision_body(result, name),
        title="Would following the model have made money? The decision rules after fees, walk-forward",
        notes=[f"Runs: `makeusrich {shlex.join(backtest)}`; the rules' settings are spec.decision's defaults"],
        **section,
    )


if __name__ == "__main__":
    main()
