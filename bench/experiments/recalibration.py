"""Does refitting only the conformal margins on the newest held-out hours keep the ranges' coverage nearer its
level between retrainings? Issue 31, part 3, replayed on the walk-forward of the example pair.

Each fold trains as `makeusrich backtest` does (the lookback before its cutoff, warm-started from the previous
fold's weights) and its frozen network forecasts the next 30 days. The served margins are the ones the trainer
fits on the fold's calibration split, the newest of which is more than a month old at the cutoff (the test split
lies between). A recalibration refits them, every `--every` days of the live month, on the newest `--span` hours
that fitted no weight (calibration, test and the live hours whose candle has closed by then; never a later one)
and serves them until the next. The last arm is `makeusrich recalibrate`'s rule: it keeps the newest 336 hours to
judge the new margins (the gates are not replayed: every recalibration is served here). Scored against each
fold's served margins on the same hours: the gap between the 90% range's coverage and 90%, per fold and per week,
its interval score and pinball loss.

    python bench/experiments/recalibration.py [--lookback-days 365] [--every 7,1] [--span 336,672] [--write]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import timedelta

import _harness
import numpy as np
import torch

from makeusrich.market import Source, close_moments, interval_ms, load_candles
from makeusrich.scoring import ranges
from makeusrich.trainer.backtest import cutoffs, history_days, lookback_before, out_of_sample
from makeusrich.trainer.evaluation import calibrate
from makeusrich.trainer.features import Prepared, ohlcv_array, prepare
from makeusrich.trainer.model import FeatureLayer, LSTMCore, calibrated
from makeusrich.trainer.recalibrate import CALIBRATION, TEST
from makeusrich.trainer.train import configure_threads, train

WEEK = 168


@dataclass(frozen=True)
class Fold:
    """One fold's network outputs and truths in its standardised units, at every held-out origin (oldest first)."""

    origins: np.ndarray  # candle indices of the whole history
    live: np.ndarray  # [n] True where the origin lies in the fold's 30 live days
    raw: np.ndarray  # [n, h, L] the network's quantiles before margins
    actual: np.ndarray  # [n, h] what happened, standardised
    returns: np.ndarray  # [n, h] what happened, in log returns
    served: np.ndarray  # [h, L] the trainer's margins (calibration split)
    sigma: np.ndarray  # [n] the in-window volatility
    mean: np.ndarray  # [h] the target scaler's
    std: np.ndarray  # [h]

    def log_returns(self, standardised: np.ndarray) -> np.ndarray:
        return np.asarray(
            (standardised * self.std[None, :, None] + self.mean[None, :, None]) * self.sigma[:, None, None]
        )


def fold_outputs(
    ohlcv: np.ndarray, offset: int, data: Prepared, core: LSTMCore, levels: list[float], live: np.ndarray
) -> Fold:
    """Run the fold's network on its calibration, test and live origins."""
    held = np.concatenate([data.split.calibration + offset, data.split.test + offset, live])
    windows = np.lib.stride_tricks.sliding_window_view(ohlcv, data.window, axis=0)[held - data.window + 1]
    layer = FeatureLayer(data.feature_scaler, data.volatility)
    with torch.no_grad():
        features, sigma = layer(torch.from_numpy(np.ascontiguousarray(windows.transpose(0, 2, 1), dtype=np.float32)))
        raw = core(features).numpy().astype(np.float64)
    steps = held[:, None] + np.arange(1, data.horizon + 1)[None, :]
    returns = np.log(ohlcv[steps, 3] / ohlcv[held, 3][:, None])
    mean, std = data.target_scaler.mean, data.target_scaler.std
    sigma_64 = sigma.numpy().astype(np.float64)
    actual = (returns / sigma_64[:, None] - mean[None, :]) / std[None, :]
    return Fold(
        origins=held,
        live=np.isin(held, live),
        raw=raw,
        actual=actual,
        returns=returns,
        served=calibrate(core, data, levels),
        sigma=sigma_64,
        mean=mean,
        std=std,
    )


def replay(fold: Fold, levels: list[float], every: int | None, span: int, horizon: int, lag: int = 0) -> np.ndarray:
    """Quantiles [n_live, h, L] in log returns: the served margins (every=None) or margins refitted every `every`
    hours on the newest `span` held-out origins whose targets had closed when the block began, less the newest
    `lag` of them (`makeusrich recalibrate` keeps its newest hours to judge the new margins)."""
    live_at = np.flatnonzero(fold.live)
    median = levels.index(0.5)
    out = []
    blocks = [live_at] if every is None else np.array_split(live_at, max(1, -(-len(live_at) // every)))
    for block in blocks:
        if every is None:
            margins = fold.served
        else:
            closed = np.flatnonzero(fold.origins + horizon <= fold.origins[block[0]])
            known = closed[: len(closed) - lag][-span:]
            margins = ranges.conformal_margins(fold.actual[known], fold.raw[known], levels)
        q = calibrated(torch.from_numpy(fold.raw[block]), torch.from_numpy(margins), median).numpy()
        out.append(q)
    standardised = np.concatenate(out)
    return np.asarray(
        (standardised * fold.std[None, :, None] + fold.mean[None, :, None]) * fold.sigma[live_at, None, None]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lookback-days", type=int, default=365)
    parser.add_argument("--folds", type=int, default=12)
    parser.add_argument("--every", default="7,1", help="days between recalibrations, comma-separated")
    parser.add_argument("--span", default="336,672", help="held-out hours each recalibration fits, comma-separated")
    run = _harness.Run.start(parser, __file__, argv)
    args = run.args
    configure_threads()
    pair = _harness.example_pair(args.lookback_days)
    spec, levels = pair.spec, pair.spec.model.quantiles
    step = timedelta(days=30)
    days = history_days(args.lookback_days, args.folds, step)
    frame = load_candles(spec.model_copy(update={"lookback_days": days}), Source("sample")).frame
    frame = frame.reset_index(drop=True)
    ohlcv = ohlcv_array(frame)
    closes = close_moments(frame["open_time"], spec.interval)
    step_hours = round(interval_ms(spec.interval) / 3_600_000, 9)
    arms: dict[str, tuple[int | None, int, int]] = {"served margins (calibration split)": (None, 0, 0)}
    for days in str(args.every).split(","):
        for span in str(args.span).split(","):
            arms[f"every {days} d on the newest {span} h"] = (round(float(days) * 24 / step_hours), int(span), 0)
    arms[f"every 1 d on {CALIBRATION} h before the newest {TEST} (`makeusrich recalibrate`)"] = (
        round(24 / step_hours),
        CALIBRATION,
        TEST,
    )
    found: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {name: [] for name in arms}
    start = None
    for cut in cutoffs(closes.iloc[-1], args.folds, step):
        before, offset = lookback_before(frame, spec, cut)
        data = prepare(before, spec.model.window, spec.model.horizon, interval_ms(spec.interval))
        result = train(data, spec.model, progress=None, start=start)
        start = {name: tensor.detach().clone() for name, tensor in result.core.state_dict().items()}
        live = out_of_sample(frame, spec, cut, step)
        fold = fold_outputs(ohlcv, offset, data, result.core.cpu(), levels, live)
        for name, (every, hours, lag) in arms.items():
            found[name].append((fold.returns[fold.live], replay(fold, levels, every, hours, spec.model.horizon, lag)))
    run.finish(
        report(found, levels),
        title="Recalibration between retrainings: does it keep coverage at its level?",
        settings={**_harness.model_settings(pair), "folds": args.folds, "step": "30d", "warm": True},
        versions=("torch",),
        notes=[
            "The bundled BTC/USDT sample; the same trained folds for every arm, so the arms differ only in margins.",
        ],
    )


def report(found: dict[str, list[tuple[np.ndarray, np.ndarray]]], levels: list[float]) -> str:
    low, high = 0, len(levels) - 1
    nominal = levels[high] - levels[low]
    served = found[next(iter(found))]
    rows = []
    for name, parts in found.items():
        fold_cover = [np.mean((a[:, 0] >= q[:, 0, low]) & (a[:, 0] <= q[:, 0, high])) for a, q in parts]
        weeks = []
        for a, q in parts:
            hit = (a[:, 0] >= q[:, 0, low]) & (a[:, 0] <= q[:, 0, high])
            weeks += [np.mean(chunk) for chunk in np.array_split(hit, max(1, len(hit) // WEEK))]
        actual = np.concatenate([a for a, _ in parts])
        quantiles = np.concatenate([q for _, q in parts])
        base_actual = np.concatenate([a for a, _ in served])
        base_q = np.concatenate([q for _, q in served])
        score = ranges.range_score(actual, quantiles, levels)
        base = ranges.range_score(base_actual, base_q, levels)
        rows.append(
            [
                name,
                f"{score.ranges[0].rate:.4f}",
                f"{np.mean(np.abs(np.array(fold_cover) - nominal)):.4f}",
                f"{np.max(np.abs(np.array(fold_cover) - nominal)):.4f}",
                f"{np.mean(np.abs(np.array(weeks) - nominal)):.4f}",
                f"{score.ranges[0].interval_score / base.ranges[0].interval_score:.4f}",
                f"{score.pinball / base.pinball:.4f}",
            ]
        )
    return _harness.table(
        [
            "margins",
            "90% coverage, pooled",
            "mean gap to 90%, per fold",
            "largest fold gap",
            "mean gap, per week",
            "interval score / served",
            "pinball / served",
        ],
        rows,
        "lrrrrrr",
    )


if __name__ == "__main__":
    main()
