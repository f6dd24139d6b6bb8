"""Which of issue 31's volatility inputs earn their place? The walk-forward of the example pair, arm by arm.

The served model (makeusrich.trainer.features) has two additions over the one before issue 31: targets (and so
ranges) in units of an in-window HAR volatility, and the last candle's relative volume in that HAR. A third, each
candle's log range variance as a sixth input, was measured here at commit 265e0db (when the model had it) and left
out. Each arm takes away some of them, from the same code, so that every arm
runs the trainer's own walk-forward (`makeusrich.trainer.backtest.walk_forward`: each fold trained on the lookback
before its cutoff, warm-started from the previous fold as scheduled runs are, exported to ONNX, scored by
onnxruntime on the next 30 days):

- no volume: the HAR is fitted without the volume regressor (its coefficient zero in the graph).
- no scaling: every HAR coefficient zero, so the volatility is 1 and the targets are plain log returns.

Judged as the issue asks: pooled 90% interval score against EWMA volatility's, climatology's and the best new
baseline's (HAR of candle ranges), coverage, pinball and the point forecast's MAE against persistence's; the pool of
folds 1-9 is where a choice may be made, folds 10-12 report it.

    python bench/experiments/volatility_inputs.py [--lookback-days 365] [--folds 12] [--write]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from datetime import timedelta

import _harness
import numpy as np

import makeusrich.trainer.backtest as backtest
from makeusrich.market import Source, load_candles
from makeusrich.scoring import ranges
from makeusrich.scoring.folds import row
from makeusrich.store import BacktestResult
from makeusrich.trainer.features import Prepared, Scaler, prepare, relative_volume


@dataclass(frozen=True)
class Arm:
    scaling: bool
    volume: bool

    def prepare(self, *args: object, **kwargs: object) -> Prepared:
        """The trainer's `prepare`, then this arm's parts taken away."""
        data = prepare(*args, **kwargs)  # type: ignore[arg-type]
        variance = ranges.range_variance(data.ohlcv)
        har = data.volatility
        if not self.volume:
            plain = ranges.fit_har(variance, data.split.train, har.spans)
            har = replace(har, coefficients=np.append(plain.coefficients, 0.0))
        if not self.scaling:
            har = replace(har, coefficients=np.zeros_like(har.coefficients))
        scale = har.sigma(variance, relative_volume(data.ohlcv, data.window))
        returns = data.log_returns(data.targets, np.arange(len(data.ohlcv)))
        target_scaler = Scaler.fit(returns[data.split.train] / scale[data.split.train, None])
        targets = target_scaler.transform(returns / scale[:, None]).astype(np.float32)
        return replace(
            data,
            targets=targets,
            target_scaler=target_scaler,
            volatility=har,
            scale=scale,
        )


ARMS = {
    "before issue 31 (neither)": Arm(scaling=False, volume=False),
    "targets over the in-window HAR": Arm(scaling=True, volume=False),
    "+ relative volume in the HAR (served)": Arm(scaling=True, volume=True),
}


KEYS = ("n", "coverage_90", "interval_90_vs_ewma", "interval_90_vs_climatology", "interval_90_vs_har", "pinball_vs_har")


def rows_of(name: str, result: BacktestResult) -> list[list[str]]:
    """The pool of all folds and that of folds 1-9 (where a choice may be made), then the folds lost to EWMA."""
    out = []
    pools = [("pooled", result.pooled_point, result.pooled_ranges)]
    if result.choice is not None:
        pools.append(("folds 1-9", result.choice.point, result.choice.ranges))
    for label, point, scored in pools:
        line = row(label, "", point, scored, "", "")
        out.append([name, label, *(str(line[key]) for key in KEYS), str(line["mae_ratio"]), str(line["dm_p"])])
    lost = [
        str(fold.fold)
        for fold in result.folds
        if row("", "", fold.point, fold.ranges, "", "")["interval_90_vs_ewma"] > 1
    ]
    out.append([name, "folds lost to EWMA", ", ".join(lost) or "none", *[""] * (len(KEYS) + 1)])
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lookback-days", type=int, default=365)
    parser.add_argument("--folds", type=int, default=12)
    run = _harness.Run.start(parser, __file__, argv)
    args = run.args
    pair = _harness.example_pair(args.lookback_days)
    spec = pair.spec
    step = timedelta(days=30)
    days = backtest.history_days(args.lookback_days, args.folds, step)
    frame = load_candles(spec.model_copy(update={"lookback_days": days}), Source("sample")).frame
    rows = []
    for name, arm in ARMS.items():
        backtest.prepare = arm.prepare  # type: ignore[attr-defined]  # the walk-forward's own code, this arm's data
        result = backtest.walk_forward(pair.name, spec, frame, args.folds, step, hold_out=3, source="sample")
        rows += rows_of(name, result)
    header = [
        "arm",
        "pool",
        "hours",
        "90% coverage",
        "interval / EWMA's",
        "/ climatology's",
        "/ HAR's",
        "pinball / HAR's",
        "MAE / persistence",
        "DM p (MAE)",
    ]
    run.finish(
        _harness.table(header, rows, "llrrrrrrrr"),
        title="Volatility inputs: which earn their place?",
        settings={**_harness.model_settings(pair), "folds": args.folds, "step": "30d", "warm": True},
        versions=("torch",),
        notes=[
            "The bundled BTC/USDT sample; each arm is the trainer's walk-forward with some of issue 31's inputs "
            "taken away (see the script's docstring).",
        ],
    )


if __name__ == "__main__":
    main()
