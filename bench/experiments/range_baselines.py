"""How strong are the naive ranges built from candle ranges? Issue 31 asks the LSTM's ranges to beat EWMA
volatility of closes by 3% and climatology by 10%, and not to lose to the best new baseline; this measures the new
baselines alone (no training: seconds), fold by fold, exactly as the walk-forward backtest fits and scores them.

For each of the folds (`--folds` of `--step-days`, the newest ending at the sample's last candle), the baselines
are fitted on the training split of the lookback before the cutoff (`prepare`, as `makeusrich train` splits it) and
scored on the fold's out-of-sample origins (`makeusrich.trainer.backtest.out_of_sample`): climatology, EWMA of
closes (RiskMetrics), EWMA of Garman-Klass candle variances, and HAR of those variances. Pooled over the folds,
each range's 90% interval score and pinball loss as ratios to EWMA's, with a Diebold-Mariano p-value on the
per-origin pinball losses against EWMA's (a small p and a ratio below 1: better, not by luck).

    python bench/experiments/range_baselines.py [--lookback-days 365,1095] [--folds 12] [--step-days 30] [--write]
"""

from __future__ import annotations

import argparse
from datetime import timedelta

import _harness
import numpy as np

from makeusrich.market import Source, close_moments, interval_ms, load_candles
from makeusrich.scoring import evaluate, ranges
from makeusrich.trainer.backtest import cutoffs, history_days, lookback_before, out_of_sample
from makeusrich.trainer.evaluation import Volatility, log_returns, naive_ranges
from makeusrich.trainer.features import ohlcv_array, prepare

NAMES = {
    "climatology": "climatology",
    "ewma": "EWMA of closes",
    "ewma_range": "EWMA of candle ranges",
    "har": "HAR of candle ranges",
}


def fold_ranges(lookback_days: int, folds: int, step_days: float) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Per fold: the actual log returns [n, h] and each naive range's quantiles [n, h, L]."""
    pair = _harness.example_pair(lookback_days)
    spec = pair.spec
    step = timedelta(days=step_days)
    days = history_days(lookback_days, folds, step)  # as `makeusrich backtest`
    frame = load_candles(spec.model_copy(update={"lookback_days": days}), Source("sample")).frame
    frame = frame.reset_index(drop=True)
    ohlcv = ohlcv_array(frame)
    closes = close_moments(frame["open_time"], spec.interval)
    found = []
    for cut in cutoffs(closes.iloc[-1], folds, step):
        before, offset = lookback_before(frame, spec, cut)
        data = prepare(before, spec.model.window, spec.model.horizon, interval_ms(spec.interval))
        origins = out_of_sample(frame, spec, cut, step)
        volatility = Volatility.of(ohlcv, data.split.train + offset, interval_ms(spec.interval))
        naive = naive_ranges(data, origins, spec.model.quantiles, volatility, offset)
        steps = origins[:, None] + np.arange(1, spec.model.horizon + 1)[None, :]
        actual = log_returns(ohlcv[steps, 3], ohlcv[origins, 3])
        found.append((actual, naive))
    return found


def table_for(lookback_days: int, folds: int, step_days: float, levels: list[float]) -> str:
    parts = fold_ranges(lookback_days, folds, step_days)
    rows = []
    for k, (actual, naive) in enumerate(parts, 1):
        scored = {name: ranges.range_score(actual, q, levels) for name, q in naive.items()}
        ewma = scored["ewma"].ranges[0].interval_score
        rows.append([str(k), str(len(actual)), *(f"{scored[n].ranges[0].interval_score / ewma:.4f}" for n in NAMES)])
    actual = np.concatenate([a for a, _ in parts])
    pooled = {name: np.concatenate([naive[name] for _, naive in parts]) for name in NAMES}
    scored = {name: ranges.range_score(actual, q, levels) for name, q in pooled.items()}
    losses = {name: ranges.pinball_by_origin(actual, q, levels) for name, q in pooled.items()}
    ewma, clim = scored["ewma"], scored["climatology"]
    rows.append(
        [
            "pooled",
            str(len(actual)),
            *(f"**{scored[n].ranges[0].interval_score / ewma.ranges[0].interval_score:.4f}**" for n in NAMES),
        ]
    )
    fold_table = _harness.table(
        ["fold", "hours", *(f"{NAMES[n]} / EWMA" for n in NAMES)], rows, "lr" + "r" * len(NAMES)
    )
    pooled_rows = []
    for name, label in NAMES.items():
        widest = scored[name].ranges[0]
        p = evaluate.diebold_mariano_losses(losses[name], losses["ewma"]) if name != "ewma" else None
        pooled_rows.append(
            [
                label,
                f"{widest.rate:.4f}",
                f"{widest.interval_score / ewma.ranges[0].interval_score:.4f}",
                f"{widest.interval_score / clim.ranges[0].interval_score:.4f}",
                f"{scored[name].pinball / ewma.pinball:.4f}",
                "" if p is None else f"{p:.3g}",
            ]
        )
    pooled_table = _harness.table(
        [
            "naive range",
            "90% coverage",
            "interval score / EWMA's",
            "/ climatology's",
            "pinball / EWMA's",
            "DM p (pinball vs EWMA)",
        ],
        pooled_rows,
        "lrrrrr",
    )
    return (
        f"### lookbackDays {lookback_days}: {folds} folds of {step_days:g} days\n\n90% interval score per fold, "
        f"as a ratio to EWMA of closes:\n\n{fold_table}\n\nPooled:\n\n{pooled_table}\n"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lookback-days", default="365,1095", help="comma-separated lookbacks")
    parser.add_argument("--folds", type=int, default=12)
    parser.add_argument("--step-days", type=float, default=30.0)
    run = _harness.Run.start(parser, __file__, argv)
    args = run.args
    levels = _harness.example_pair().spec.model.quantiles
    body = "\n".join(
        table_for(int(days), args.folds, args.step_days, levels) for days in str(args.lookback_days).split(",")
    )
    run.finish(
        body,
        title="Naive ranges from candle ranges: how strong are they?",
        settings={"levels": levels},
        notes=[
            "The bundled BTC/USDT sample, the example pair's window and horizon; no model is trained. Each baseline "
            "is fitted on its fold's training split only and scored on the fold's out-of-sample hours.",
        ],
    )


if __name__ == "__main__":
    main()
