"""Data preparation of the whole bundled history: vectorised `prepare` against a row-by-row pandas version.

Why: issue 3 asked for preparation at least 100 times faster than the straightforward loop over rows; this
measures both on the same candles, window and split, the loop building only 2,000 of the training windows.

    python bench/prepare_bench.py [--repeat 20] [--write]

`--write` records the table, the command, the commit and the date in bench/results/prepare.md.
"""

from __future__ import annotations

import argparse
import math
import statistics

import _harness
import numpy as np
import pandas as pd

from makeusrich.market import clean_candles, read_sample
from makeusrich.trainer.features import prepare

WINDOW, HORIZON, HOUR = 120, 1, 3_600_000


def row_by_row(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same features, windows, split and scaling written the straightforward way: loops over rows."""
    features: list[list[float]] = []
    for i in range(1, len(frame)):
        prev, cur = frame.iloc[i - 1], frame.iloc[i]
        features.append(
            [
                math.log(cur["open"] / prev["close"]),
                math.log(cur["high"] / prev["close"]),
                math.log(cur["low"] / prev["close"]),
                math.log(cur["close"] / prev["close"]),
                math.log1p(cur["volume"]) - math.log1p(prev["volume"]),
            ]
        )
    times = [t.value // 1_000_000 for t in frame["open_time"]]
    origins = []
    for t in range(WINDOW - 1, len(frame) - HORIZON):
        if all(times[k + 1] - times[k] == HOUR for k in range(t - WINDOW + 1, t + HORIZON)):
            origins.append(t)
    b1 = int(len(frame) * 0.8)
    train = [t for t in origins if t + HORIZON < b1]
    used = sorted({r for t in train for r in range(t - WINDOW + 1, t)})
    rows = np.array([features[r] for r in used])
    mean, std = rows.mean(axis=0), rows.std(axis=0)
    windows = np.array(
        [
            [[(v - m) / s for v, m, s in zip(features[r], mean, std, strict=True)] for r in range(t - WINDOW + 1, t)]
            for t in train[:2000]
        ]
    )
    closes = frame["close"].tolist()
    targets = np.array([math.log(closes[t + 1] / closes[t]) for t in origins])
    return windows, targets, rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=20, help="runs of the vectorised version (the loop runs once)")
    run = _harness.Run.start(parser, __file__, argv)
    frame, _ = clean_candles(read_sample("BTCUSDT", "1h"), "1h")

    def vectorised() -> None:
        data = prepare(frame, WINDOW, HORIZON, HOUR)
        np.ascontiguousarray(data.inputs(data.split.train[:2000]))  # the same 2,000 windows, materialised

    fast = _harness.timings(vectorised, run.args.repeat)[0]
    slow = _harness.timings(lambda: row_by_row(frame), 1)[0]
    # the loop builds only 2,000 of the ~33,000 training windows: the ratio is a lower bound
    ratio = statistics.median(slow) / statistics.median(fast)
    rows = [
        ["vectorised prepare() + the same 2,000 windows copied", f"{statistics.median(fast):.4f}", len(fast)],
        ["row by row (pandas iloc, python loops; 2,000 of the training windows)", f"{statistics.median(slow):.2f}", 1],
    ]
    run.finish(
        f"candles: {len(frame)}, window {WINDOW}, horizon {HORIZON}\n\n"
        + _harness.table(["implementation", "median s", "runs"], rows)
        + f"\n\nspeed-up (lower bound, the slow side did less work): {ratio:.0f}x\n",
        title="Data preparation benchmark",
        settings={"candles": len(frame), "window": WINDOW, "horizon": HORIZON, "slowWindows": 2000},
        versions=("numpy", "pandas"),
    )


if __name__ == "__main__":
    main()
