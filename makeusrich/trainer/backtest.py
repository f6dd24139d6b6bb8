"""Walk-forward backtest: replay the retraining schedule over past candles and score every out-of-sample hour.

One split says little at one hour, where skill is a fraction of a percent. Here fold k trains on the
`lookbackDays` of candles that closed before its cutoff exactly as `makeusrich train` does (same split, scalers
and conformal calibration fitted inside the fold, the same exported ONNX file), then that frozen model forecasts
the next `step` of candles, which no part of the fold saw. The cutoffs move forward by `step`, so the forecast
periods tile the last `folds * step` of the history without overlapping. Every fold is scored next to
persistence, climatology and EWMA volatility on the same points, and so is the pool of all folds.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing import get_context
from typing import Any

import numpy as np
import pandas as pd
import torch
from numpy.lib.stride_tricks import sliding_window_view
from tqdm import tqdm

from makeusrich.errors import CandleError, MakeUsRichError
from makeusrich.market import close_moments, interval_ms
from makeusrich.onnxrt import onnx_session
from makeusrich.pair import CurrencyPairSpec
from makeusrich.scoring import (
    COLUMNS,
    DECISION_COLUMNS,
    bootstrap,
    decision,
    decision_rows,
    evaluate,
    ranges,
    segment_ids,
    table_rows,
    valid_origins,
)
from makeusrich.store import BacktestResult, FoldResult, Pool, RangeMetrics, Score
from makeusrich.trainer.evaluation import Volatility, calibrate, log_returns, naive_ranges
from makeusrich.trainer.export import export_onnx, run_onnx
from makeusrich.trainer.features import Prepared, ohlcv_array, prepare
from makeusrich.trainer.model import Forecaster
from makeusrich.trainer.train import EpochRecord, train, usable_cpus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Forecasts:
    """A fold's out-of-sample points: what happened, the model's forecast and every baseline's range."""

    actual: np.ndarray  # [n, h] prices
    last_close: np.ndarray  # [n]
    forecast: np.ndarray  # [n, h]
    quantiles: np.ndarray  # [n, h, L] log returns, like the naive ranges below
    naive: dict[str, np.ndarray]  # each naive range's quantiles, by the name RangeMetrics gives it
    positions: np.ndarray  # [n, rules]: each decision rule's position for the next candle, in decision.RULES order
    target_at: np.ndarray  # [n] int64 nanoseconds: when the next candle closes

    @classmethod
    def pool(cls, parts: list[Forecasts]) -> Forecasts:
        def joined(name: str) -> Any:
            if name == "naive":
                return {key: np.concatenate([p.naive[key] for p in parts]) for key in parts[0].naive}
            return np.concatenate([getattr(p, name) for p in parts])

        return cls(*(joined(name) for name in cls.__dataclass_fields__))


def history_days(lookback_days: int, folds: int, step: timedelta) -> int:
    """The days of candles a walk-forward reads: lookbackDays before the first cutoff, plus every fold's forecast
    period after it (at most ten years, the schema's longest lookback)."""
    return min(3650, lookback_days + -(-step * folds // timedelta(days=1)) + 1)


def cutoffs(last_close: pd.Timestamp, folds: int, step: timedelta) -> list[pd.Timestamp]:
    """Fold cutoffs, oldest first: the last fold's forecast period ends at the newest candle's close."""
    return [last_close - (folds - k) * step for k in range(folds)]


def score_forecasts(part: Forecasts, spec: CurrencyPairSpec) -> tuple[Score, RangeMetrics]:
    """The point forecast against persistence, and the ranges against the naive ones with the bootstrap intervals
    of the interval scores' ratios (a day of candles the mean block, as the decision rules resample)."""
    actual = log_returns(part.actual, part.last_close)
    point = evaluate.score(part.actual, part.forecast, part.last_close)
    day = bootstrap.day_of_candles(timedelta(milliseconds=interval_ms(spec.interval)))
    return point, ranges.range_metrics(actual, part.quantiles, part.naive, spec.model.quantiles, mean_block=day)


def judge_positions(part: Forecasts, spec: CurrencyPairSpec, fitted: decision.Fitted | None) -> decision.Decisions:
    """The decision rules over a fold's (or pooled folds') candles, after fees: the positions were taken at each
    origin from its fold's model and fit; pooled, a trader simply follows each fold's model in turn."""
    levels = spec.model.quantiles
    return decision.judge(
        {rule: part.positions[:, k] for k, rule in enumerate(decision.RULES)},
        np.log(part.actual[:, 0] / part.last_close),
        timedelta(milliseconds=interval_ms(spec.interval)),
        spec.decision,
        round(levels[-1] - levels[0], 9),
        fitted,
    )


def lookback_before(frame: pd.DataFrame, spec: CurrencyPairSpec, cutoff: pd.Timestamp) -> tuple[pd.DataFrame, int]:
    """The candles a fold trains on (the lookback that closed by the cutoff, indexed from 0) and where they start
    in `frame` (a RangeIndex)."""
    closes = close_moments(frame["open_time"], spec.interval)
    before = frame[closes <= cutoff].tail(spec.lookback_candles())
    return before.reset_index(drop=True), int(before.index[0])


def out_of_sample(frame: pd.DataFrame, spec: CurrencyPairSpec, cutoff: pd.Timestamp, step: timedelta) -> np.ndarray:
    """A fold's origins in `frame`: forecasts made at closes from the cutoff on whose every target closes within
    `step`."""
    model = spec.model
    closes = close_moments(frame["open_time"], spec.interval).to_numpy()
    open_ms = frame["open_time"].astype("int64").to_numpy() // 1_000_000
    origins = valid_origins(segment_ids(open_ms, interval_ms(spec.interval)), model.window, model.horizon)
    last_target = closes[np.minimum(origins + model.horizon, len(frame) - 1)]
    found = np.asarray(origins[(closes[origins] >= cutoff) & (last_target <= cutoff + step)], dtype=np.int64)
    if len(found) == 0:
        raise CandleError(f"no candles to forecast after the cutoff {cutoff:%Y-%m-%d %H:%M}: the history ends there")
    return found


def run_fold(
    spec: CurrencyPairSpec,
    frame: pd.DataFrame,
    cutoff: pd.Timestamp,
    step: timedelta,
    threads: int,
    progress: Callable[[EpochRecord, int], None] | None,
    start: dict[str, torch.Tensor] | None = None,
) -> tuple[Forecasts, dict[str, Any]]:
    """Train on the lookback before `cutoff` as the trainer does (from `start`'s weights when given: the previous
    fold's, as a scheduled run starts from the served model's); forecast the `step` after it."""
    torch.set_num_threads(threads)
    model, interval = spec.model, spec.interval
    closes = close_moments(frame["open_time"], interval)
    before, offset = lookback_before(frame, spec, cutoff)
    data = prepare(before, model.window, model.horizon, interval_ms(interval))
    result = train(data, model, progress, start)
    margins = calibrate(result.core.cpu(), data, model.quantiles)
    session = onnx_session(
        export_onnx(
            Forecaster(result.core, data.feature_scaler, data.target_scaler, data.volatility, margins), model.window
        )
    )

    ohlcv = ohlcv_array(frame)
    origins = out_of_sample(frame, spec, cutoff, step)
    windows = sliding_window_view(ohlcv, model.window, axis=0)[origins - model.window + 1].transpose(0, 2, 1)
    forecast, quantiles = run_onnx(session, np.ascontiguousarray(windows))
    last_close = ohlcv[origins, 3]
    actual = ohlcv[origins[:, None] + np.arange(1, model.horizon + 1)[None, :], 3]

    # Baselines fitted on the fold's training split; each volatility is known at each origin from past candles.
    volatility = Volatility.of(ohlcv, data.split.train + offset, interval_ms(interval))
    sigma = volatility.ewma
    naive = naive_ranges(data, origins, model.quantiles, volatility, offset)
    at = decision.Origins(
        last_close=last_close,
        actual=actual[:, 0],
        forecast=np.asarray(forecast[:, 0], dtype=np.float64),
        low=np.asarray(quantiles[:, 0, 0], dtype=np.float64),
        high=np.asarray(quantiles[:, 0, -1], dtype=np.float64),
        level=round(model.quantiles[-1] - model.quantiles[0], 9),
        ewma_sigma=sigma[origins],
    )
    fitted, held = decision_positions(data, offset, spec, sigma, at)
    target_at = closes.iloc[origins + 1].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    part = Forecasts(actual, last_close, forecast, log_returns(quantiles, last_close), naive, held, target_at)
    facts = {
        "trained_from": before["open_time"].iloc[0],
        "forecast_to": closes.iloc[int(origins[-1]) + model.horizon],
        "epochs": len(result.epochs),
        "train_seconds": round(result.seconds, 1),
        "fitted": fitted,
        "warm": result.warm,
        "state": {name: tensor.detach().clone() for name, tensor in result.core.state_dict().items()},
    }
    return part, facts


def decision_positions(
    data: Prepared, offset: int, spec: CurrencyPairSpec, sigma: np.ndarray, at: decision.Origins
) -> tuple[decision.Fitted, np.ndarray]:
    """What the fold's decision rules fit on its training split, and their positions [n, rules] at its forecast
    origins (`sigma` is the whole history's EWMA volatility; the fold's candles start at `offset` in it)."""
    train = data.split.train
    train_returns = np.log(data.actual_prices(train)[:, 0] / data.last_close(train))
    fitted = decision.Fitted.of(train_returns, sigma[train + offset], at.level)
    held = decision.positions(at, fitted, spec.decision)
    return fitted, np.stack([held[rule] for rule in decision.RULES], axis=1)


def _fold_in_worker(args: tuple[CurrencyPairSpec, pd.DataFrame, pd.Timestamp, timedelta, int]) -> Any:
    part, facts = run_fold(*args, progress=None)
    facts.pop("state")  # a cold fold's weights start nothing: not worth sending back
    return part, facts


def fold_outcomes(
    spec: CurrencyPairSpec,
    frame: pd.DataFrame,
    cuts: list[pd.Timestamp],
    step: timedelta,
    jobs: int = 1,
    show_progress: bool = False,
) -> list[tuple[Forecasts, dict[str, Any]]]:
    """Each fold's out-of-sample points and facts, oldest first. With spec.model.warmStart each fold after the
    first starts from the previous fold's weights, so folds run one after another; that is honest for the same
    reason as in the trainer (makeusrich.trainer.warm): the cutoffs move forward by `step` with fixed fractions,
    so the previous fold's weights were fitted and early-stopped on hours before this fold's validation ends."""
    warm = spec.model.warm_start
    if warm and jobs > 1:
        raise MakeUsRichError(
            f"--jobs {jobs} trains folds at once, but warm-started folds start from the previous fold's weights: "
            "use --jobs 1, or --cold (every fold from the seed)"
        )
    cpus = usable_cpus()
    outcomes: list[tuple[Forecasts, dict[str, Any]]] = []
    start: dict[str, torch.Tensor] | None = None
    if jobs > 1:
        tasks = [(spec, frame, cut, step, max(1, cpus // jobs)) for cut in cuts]
        with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
            done = tqdm(pool.map(_fold_in_worker, tasks), total=len(cuts), desc="folds", disable=not show_progress)
            return list(done)
    for k, cut in enumerate(cuts):
        with tqdm(
            total=spec.model.max_epochs, desc=f"fold {k + 1}/{len(cuts)}", unit="epoch", disable=not show_progress
        ) as bar:

            def advance(record: EpochRecord, max_epochs: int, bar: Any = bar, fold: int = k + 1) -> None:
                bar.update(1)
                bar.set_postfix(validation=f"{record.validation_loss:.4f}")
                if not show_progress:
                    log.info("epoch done", extra={"fold": fold, "epoch": record.epoch, "max_epochs": max_epochs})

            part, facts = run_fold(spec, frame, cut, step, max(1, min(cpus, 8)), advance, start)
        weights = facts.pop("state")
        start = weights if warm else None  # only the newest fold's weights start another
        outcomes.append((part, facts))
        log.info("fold done", extra={"fold": k + 1, "folds": len(cuts), "cutoff": str(cut)})
    return outcomes


def walk_forward(
    name: str,
    spec: CurrencyPairSpec,
    frame: pd.DataFrame,
    folds: int,
    step: timedelta,
    jobs: int = 1,
    show_progress: bool = False,
    source: str = "",
    hold_out: int = 0,
) -> BacktestResult:
    """Every fold in order (or `jobs` at a time in worker processes), then the pool of all their points; with
    `hold_out`, also the pool of the folds before the newest `hold_out` ones (where a setting may be chosen) and
    that of the newest (which then report it, unseen by the choice). On a terminal each fold gets a progress bar
    of its epochs (of folds done, when they run in parallel)."""
    started = time.perf_counter()
    frame = frame.reset_index(drop=True)
    closes = close_moments(frame["open_time"], spec.interval)
    cuts = cutoffs(closes.iloc[-1], folds, step)
    needed = cuts[0] - timedelta(days=spec.lookback_days)
    if closes.iloc[0] > needed + timedelta(days=1):
        log.warning(
            "the first folds train on less than lookbackDays",
            extra={"history_from": str(closes.iloc[0]), "needed_from": str(needed)},
        )
    outcomes = fold_outcomes(spec, frame, cuts, step, jobs, show_progress)
    results = []
    for k, (cut, (part, facts)) in enumerate(zip(cuts, outcomes, strict=True)):
        point, scored = score_forecasts(part, spec)
        traded = judge_positions(part, spec, facts["fitted"]).metrics
        results.append(
            FoldResult(
                fold=k + 1,
                cutoff=_iso(cut),
                trained_from=_iso(facts["trained_from"]),
                forecast_to=_iso(facts["forecast_to"]),
                epochs=facts["epochs"],
                train_seconds=facts["train_seconds"],
                warm=facts["warm"],
                point=point,
                ranges=scored,
                decision=traded,
            )
        )
    parts = [part for part, _ in outcomes]
    everything = Forecasts.pool(parts)
    pooled_point, pooled_ranges = score_forecasts(everything, spec)
    pooled_decisions = judge_positions(everything, spec, None)

    def pooled(numbers: range) -> Pool:
        part = Forecasts.pool([parts[k] for k in numbers])
        point, scored = score_forecasts(part, spec)
        traded = judge_positions(part, spec, None).metrics
        return Pool(folds=[k + 1 for k in numbers], point=point, ranges=scored, decision=traded)

    split = folds - hold_out
    return BacktestResult(
        pair=name,
        model=spec.model.model_dump(by_alias=True),
        source=source,
        symbol=spec.symbol,
        interval=spec.interval,
        lookback_days=spec.lookback_days,
        step_days=step / timedelta(days=1),
        folds=results,
        pooled_point=pooled_point,
        pooled_ranges=pooled_ranges,
        pooled_decision=pooled_decisions.metrics,
        equity=decision.equity(pooled_decisions, [_iso(pd.Timestamp(t, tz="UTC")) for t in everything.target_at]),
        choice=pooled(range(split)) if 0 < hold_out < folds else None,
        held_out=pooled(range(split, folds)) if 0 < hold_out < folds else None,
        seconds=round(time.perf_counter() - started, 1),
    )


def _iso(moment: pd.Timestamp) -> str:
    return pd.Timestamp(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def to_csv(result: BacktestResult) -> str:
    return _csv(COLUMNS, table_rows(result))


def decision_csv(result: BacktestResult) -> str:
    return _csv(DECISION_COLUMNS, decision_rows(result))


def _csv(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def decision_markdown(result: BacktestResult) -> str:
    """The decision rules' table as people read it: returns after fees, and each comparison as how much more (or
    less) the rule ends with, its 95% interval and p-value."""
    head = ["fold", "cutoff", "holding", "signal", "signal on drift", "risk target", "risk target on EWMA"]
    compared = ["signal_vs_holding", "risk_target_vs_holding", "signal_vs_drift", "risk_target_vs_ewma"]
    lines = ["| " + " | ".join(head + [c.replace("_", " ") for c in compared]) + " |", "|" + "---|" * 11]
    for r in decision_rows(result):
        cells = [str(r["fold"]), str(r["cutoff"])[:10]]
        cells += [f"{r[c]:+.1%}" for c in ("holding", "signal", "signal_drift", "risk_target", "risk_target_ewma")]
        cells += [f"{r[c]:+.1%} [{r[c + '_low']:+.1%}, {r[c + '_high']:+.1%}] p={r[c + '_p']:.2f}" for c in compared]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_markdown(result: BacktestResult) -> str:
    rows = table_rows(result)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def ratios_markdown(result: BacktestResult) -> str:
    """The widest range's interval score over each naive range's, per fold and pooled, each with its 95% bootstrap
    interval: which ratios are more than luck. Empty for results measured before the intervals were."""
    labelled = [(str(f.fold), f.ranges) for f in result.folds] + [("pooled", result.pooled_ranges)]
    labelled += [(f"folds {p.folds[0]}-{p.folds[-1]}", p.ranges) for p in (result.choice, result.held_out) if p]
    names = [name for name in ranges.NAIVE_RANGES if name in (result.pooled_ranges.interval_ratios or {})]
    if not names:
        return ""
    head = " | ".join(f"/ {ranges.NAIVE_RANGE_NAMES[n]}" for n in names)
    lines = [f"| fold | {head} |", "|---|" + "---:|" * len(names)]
    for label, scored in labelled:
        found = scored.interval_ratios or {}
        cells = [f"{found[n].ratio:.4f} [{found[n].low:.4f}, {found[n].high:.4f}]" if n in found else "" for n in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_png(result: BacktestResult) -> bytes:
    """Per-fold skill, two panels: the point forecast's MAE ratio to persistence, and the 90% range's interval
    score as a ratio to EWMA's, HAR's and climatology's; below 1 is better in both, and 1 is drawn."""
    import matplotlib

    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its font cache notes are not the user's business
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = [r for r in table_rows(result) if str(r["fold"]).isdigit()]
    folds = [r["cutoff"][:10] for r in rows]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    x = np.arange(len(rows))
    top.bar(x, [float(r["mae_ratio"] or np.nan) for r in rows], color="#4477aa")
    top.axhline(1.0, color="black", linewidth=1)
    top.set_ylim(0.97, 1.03)
    top.set_ylabel("MAE / persistence")
    top.set_title(
        f"{result.pair}: walk-forward, {len(rows)} folds of {result.step_days:g} days, lookback "
        f"{result.lookback_days} days"
    )
    against = [
        (key, label, color)
        for key, label, color in (
            ("interval_90_vs_ewma", "vs EWMA volatility", "#228833"),
            ("interval_90_vs_har", "vs HAR of ranges", "#aa3377"),
            ("interval_90_vs_climatology", "vs climatology", "#ccbb44"),
        )
        if all(r[key] != "" for r in rows)  # HAR is blank in results measured before it
    ]
    width = 0.8 / len(against)
    for k, (key, label, color) in enumerate(against):
        offset = (k - (len(against) - 1) / 2) * width
        bottom.bar(x + offset, [float(r[key]) for r in rows], width, label=label, color=color)
    bottom.axhline(1.0, color="black", linewidth=1)
    ratios = [float(r[key]) for r in rows for key, _, _ in against]
    bottom.set_ylim(min([*ratios, 1.0]) - 0.05, max([*ratios, 1.0]) + 0.08)  # the differences, not the bars' feet
    bottom.set_ylabel("90% interval score ratio")
    bottom.set_xticks(x, folds, rotation=45, ha="right")
    bottom.legend(loc="upper left", ncols=len(against), framealpha=0.9)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


RULE_STYLES = {
    decision.HOLD: ("#000000", "-"),
    decision.CASH: ("#999999", ":"),
    decision.SIGNAL: ("#4477aa", "-"),
    decision.SIGNAL_DRIFT: ("#4477aa", "--"),
    decision.RISK_TARGET: ("#228833", "-"),
    decision.RISK_TARGET_EWMA: ("#228833", "--"),
}


def equity_png(result: BacktestResult) -> bytes:
    """The pooled folds' equity curves: what 1 held by each rule (and its twin, dashed) became after fees, with the
    folds' cutoffs marked."""
    import matplotlib

    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    matplotlib.use("Agg")
    from matplotlib import dates
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(10, 4.5))
    if result.equity is not None:
        at = pd.to_datetime(result.equity.at)
        for rule in decision.RULES:
            colour, style = RULE_STYLES[rule]
            wealth = np.exp(np.asarray(result.equity.rules[rule]))
            axes.plot(at, wealth, style, color=colour, linewidth=1.4, label=decision.RULE_NAMES[rule])
        for fold in result.folds[1:]:
            cut = dates.date2num(pd.Timestamp(fold.cutoff))  # type: ignore[no-untyped-call]  # matplotlib's stub
            axes.axvline(cut, color="#dddddd", linewidth=0.8, zorder=0)
        axes.legend(loc="best", ncols=3, framealpha=0.9, fontsize=8)
    fee = result.pooled_decision.fee_bps if result.pooled_decision else None
    axes.set_title(f"{result.pair}: 1 followed through {len(result.folds)} folds, after fees of {fee:g} bps a trade")
    axes.set_ylabel("value of 1 held from the first fold")
    figure.autofmt_xdate()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()
