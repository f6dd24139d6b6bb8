"""The default history length, chosen on some months and reported on later ones it did not see.

Why: `lookbackDays` defaults to the walk-forward winner, and a number reported on the hours it was chosen on
flatters it. This reads the walk-forward backtests of bench/backtest_bench.py (run with `--hold-out`), chooses the
lookback with the lowest pooled MAE ratio on the earlier folds only, and reports every lookback, the chosen one
and the pair's default on the held-out newest folds, with Diebold-Mariano p-values and Wilson intervals.

    python bench/lookback_bench.py [--lookback-days 365 1095 3650] [--folds 12] [--step 30d] [--write]
"""

from __future__ import annotations

import argparse
import json

import _harness

from makeusrich.store import BacktestResult, Pool


def described(pool: Pool) -> list[str]:
    """The cells of one pool: MAE ratio (DM p), direction [95% CI], 90% coverage, interval score vs EWMA's."""
    point, widest = pool.point, pool.ranges.model.ranges[0]
    direction = point.directional
    shown = (
        f"{direction.accuracy:.1%} [{direction.wilson_low:.1%}, {direction.wilson_high:.1%}]" if direction else "n/a"
    )
    ewma = pool.ranges.ewma.ranges[0].interval_score
    return [
        f"{point.rel_mae:.4f} ({point.dm_pvalue:.3g})" if point.rel_mae is not None and point.dm_pvalue else "n/a",
        shown,
        f"{widest.rate:.1%}",
        f"{widest.interval_score / ewma - 1:+.1%}",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--lookback-days", type=int, nargs="+", default=[365, 1095, 3650])
    parser.add_argument("--folds", type=int, default=12)
    parser.add_argument("--step", default="30d")
    run = _harness.Run.start(parser, __file__, argv)
    args = run.args
    results = {}
    for days in args.lookback_days:
        path = _harness.RESULTS / "backtest" / f"{days}d-{args.folds}x{args.step}.json"
        if not path.exists():
            raise SystemExit(f"{path} is missing: run bench/backtest_bench.py --lookback-days {days} --write first")
        result = BacktestResult.model_validate(json.loads(path.read_text()))
        if result.choice is None or result.held_out is None:
            raise SystemExit(f"{path} has no hold-out: run bench/backtest_bench.py with --hold-out")
        results[days] = result
    chosen = min(results, key=lambda days: results[days].choice.point.rel_mae or 1e9)  # type: ignore[union-attr]
    default = _harness.example_pair().spec.lookback_days
    header = ["lookback", "pool", "MAE ratio (DM p)", "direction [95% CI]", "90% covers", "interval score vs EWMA"]
    rows = []
    for days, result in results.items():
        for label, pool in (("chosen on", result.choice), ("held out", result.held_out)):
            assert pool is not None
            folds = f"{label} folds {pool.folds[0]}-{pool.folds[-1]} ({pool.point.n:,} hours)"
            mark = " (chosen)" if days == chosen else ""
            mark += " (the default)" if days == default else ""
            rows.append([f"{days} days{mark}", folds, *described(pool)])
    said = results[chosen].held_out
    assert said is not None
    verdict = (
        f"Chosen on the earlier folds: {chosen} days (the pair's default is {default}). On the held-out folds "
        f"{said.folds[0]}-{said.folds[-1]}, which the choice never saw, it scores an MAE ratio of "
        f"{described(said)[0]} to persistence."
    )
    run.finish(
        verdict + "\n\n" + _harness.table(header, rows),
        title="The default history length, reported on months it was not chosen on",
        settings={"lookbacks": " ".join(map(str, args.lookback_days)), "folds": args.folds, "step": args.step},
        notes=["Reads: " + ", ".join(f"`backtest/{d}d-{args.folds}x{args.step}.json`" for d in args.lookback_days)],
    )


if __name__ == "__main__":
    main()
