"""How narrow can an honest 90% range get on these hours? Issue 31 asks the served ranges to score at most 0.90 of
climatology's interval score over the 1095-day walk-forward; the LSTM reaches 0.911 there. This asks whether any
volatility model built from the same candles gets further, each a HAR-type regression of the next candle's log range
variance (Corsi 2009) with more and more of what is known about it, fitted per fold and scored on the fold's
out-of-sample hours exactly as the walk-forward scores its naive ranges (`range_baselines.py`):

- in-window HAR: the log means of the candles' range variances over the last candle, day and window (spans 1, 24,
  119 at one hour) and the last candle's relative volume: the volatility the LSTM's targets are measured in.
- + same hour: the log mean range variance of the candles at the next candle's hour on the four previous days
  (intraday seasonality, still inside the window).
- week and month: spans of a week and four weeks beside them (outside the served window).
- + calendar: the next candle's hour of the day and day of the week (the served model gets no timestamps).
- + leverage: the last candle's fall, if it fell, in units of the day's volatility (falls raise volatility more
  than rises: Black 1976).
- fitted on every hour: the last, fitted on all the lookback's hours up to the cutoff rather than its oldest 75%
  (the served model keeps the newest quarter to early-stop, calibrate and judge it).
- fitted to the interval score: the in-window HAR's regressors, the range's half-width fitted by torch to minimise
  the 90% interval score itself on the training hours, instead of least squares on log variance.

Each range is the volatility times the quantiles of the training returns divided by it (as every naive range here),
so the regressions differ only in what they know. Ratios below 1 are better; the interval of each ratio to
climatology's is a 95% stationary block bootstrap of the hours (blocks of a day on average). The LSTM's own pooled
ratios are read from `bench/results/backtest/*.json` (the same hours) where that file exists.

    python bench/experiments/range_ceiling.py [--lookback-days 365,1095] [--folds 12] [--write]
"""

from __future__ import annotations

import argparse
import json
from datetime import timedelta

import _harness
import numpy as np
import pandas as pd
import torch

from makeusrich.market import Source, close_moments, interval_ms, load_candles
from makeusrich.scoring import bootstrap, ranges
from makeusrich.store import RatioInterval
from makeusrich.trainer.backtest import cutoffs, history_days, lookback_before, out_of_sample
from makeusrich.trainer.evaluation import Volatility, log_returns, naive_ranges
from makeusrich.trainer.features import in_window_spans, ohlcv_array, prepare, relative_volume

SAME_HOUR_LAGS = (23, 47, 71, 95)
"""Candles before the last one that share the next candle's hour of the day, inside a window of 120 hours."""


def lagged_mean(values: np.ndarray, lags: tuple[int, ...]) -> np.ndarray:
    """Per candle, the mean of the values `lags` candles before it (the first candles repeat the earliest)."""
    index = np.maximum(np.arange(len(values))[:, None] - np.asarray(lags)[None, :], 0)
    return np.asarray(values[index].mean(axis=1))


def regressors(frame: pd.DataFrame, ohlcv: np.ndarray, window: int, step_ms: int) -> dict[str, np.ndarray]:
    """Every extra regressor an arm may add, known at each candle (about the next one)."""
    variance = ranges.range_variance(ohlcv)
    floor = float(np.mean(variance)) * 1e-3
    day = in_window_spans(window, step_ms)[1]
    day_mean = np.exp(ranges.har_design(variance, (day,), floor)[:, 1])
    next_open = pd.to_datetime(frame["open_time"]).dt.tz_localize(None) + pd.Timedelta(milliseconds=step_ms)
    fall = np.minimum(np.r_[0.0, np.diff(np.log(ohlcv[:, 3]))], 0.0)
    return {
        "volume": relative_volume(ohlcv, window)[:, None],
        "same hour": np.log(lagged_mean(variance, SAME_HOUR_LAGS) + floor)[:, None],
        "calendar": np.column_stack(
            [
                np.eye(24)[next_open.dt.hour.to_numpy()][:, 1:],
                np.eye(7)[next_open.dt.dayofweek.to_numpy()][:, 1:],
            ]
        ),
        "leverage": (fall / np.sqrt(day_mean))[:, None],
    }


ARMS: dict[str, tuple[str, tuple[str, ...], bool]] = {  # spans (the window's or to a month), regressors, every hour
    "in-window HAR (the LSTM's scale)": ("window", ("volume",), False),
    "+ same hour of previous days": ("window", ("volume", "same hour"), False),
    "week and month spans, volume": ("month", ("volume",), False),
    "+ calendar (hour, weekday)": ("month", ("volume", "calendar"), False),
    "+ leverage": ("month", ("volume", "calendar", "leverage"), False),
    "+ fitted on every lookback hour": ("month", ("volume", "calendar", "leverage"), True),
}
DIRECT = "in-window HAR fitted to the interval score"


def direct_half_width(design: np.ndarray, returns: np.ndarray, fit: np.ndarray, alpha: float) -> np.ndarray:
    """exp(design @ c) as the range's half-width around a fitted centre, c fitted by Adam to minimise the (1 -
    alpha) interval score of the returns at the fit origins; the half-width at every candle (used as the arm's
    volatility, so that its ranges are made as every other arm's)."""
    torch.manual_seed(0)
    x = torch.tensor(design[fit])
    y = torch.tensor(returns[fit + 1])
    start, *_ = np.linalg.lstsq(design[fit], np.log(np.abs(returns[fit + 1]) + 1e-12), rcond=None)
    coefficients = torch.tensor(start, requires_grad=True)
    centre = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.Adam([coefficients, centre], lr=0.01)
    for _ in range(1500):
        optimiser.zero_grad()
        half = torch.exp(x @ coefficients)
        low, high = centre - half, centre + half
        score = (high - low) + (2.0 / alpha) * (torch.relu(low - y) + torch.relu(y - high))
        (score.mean() * 100.0).backward()
        optimiser.step()
    return np.asarray(np.exp(design @ coefficients.detach().numpy()))


def scaled(
    sigma: np.ndarray, returns: np.ndarray, fit: np.ndarray, origins: np.ndarray, levels: list[float]
) -> np.ndarray:
    """Quantiles [n, 1, L] at origins: the volatility there times the quantiles of the returns at the fit origins
    divided by the volatility at each (as every naive range is made)."""
    z = ranges.standardised_quantiles(returns[fit], sigma[fit], levels)
    return np.asarray(sigma[origins][:, None, None] * z[None, None, :])


def fold_scores(lookback_days: int, folds: int, step: timedelta) -> dict[str, list[np.ndarray]]:
    """Per arm (and climatology and EWMA), each fold's actual returns and quantiles, as [actual, quantiles] lists."""
    pair = _harness.example_pair(lookback_days)
    spec = pair.spec
    if spec.model.horizon != 1:
        raise SystemExit("the arms forecast the next candle's volatility: the example pair's horizon must be 1")
    step_ms = interval_ms(spec.interval)
    days = history_days(lookback_days, folds, step)
    frame = load_candles(spec.model_copy(update={"lookback_days": days}), Source("sample")).frame
    frame = frame.reset_index(drop=True)
    ohlcv = ohlcv_array(frame)
    returns = np.r_[np.diff(np.log(ohlcv[:, 3])), np.nan]  # returns[t]: from candle t to the next
    variance = ranges.range_variance(ohlcv)
    extra = regressors(frame, ohlcv, spec.model.window, step_ms)
    spans = {"window": in_window_spans(spec.model.window, step_ms), "month": ranges.har_spans(step_ms)}
    levels = spec.model.quantiles
    found: dict[str, list[np.ndarray]] = {}
    closes = close_moments(frame["open_time"], spec.interval)
    for cut in cutoffs(closes.iloc[-1], folds, step):
        before, offset = lookback_before(frame, spec, cut)
        data = prepare(before, spec.model.window, spec.model.horizon, step_ms)
        origins = out_of_sample(frame, spec, cut, step)
        train = data.split.train + offset
        every = np.concatenate([data.split.of(role) for role in ("train", "validation", "calibration", "test")])
        naive = naive_ranges(data, origins, levels, Volatility.of(ohlcv, train, step_ms), offset)
        found.setdefault("actual", []).append(log_returns(ohlcv[origins + 1, 3], ohlcv[origins, 3])[:, None])
        found.setdefault("Climatology", []).append(naive["climatology"])
        found.setdefault("EWMA volatility of closes", []).append(naive["ewma"])

        for name, (span, names, on_every) in ARMS.items():
            fit = every + offset if on_every else train
            columns = np.column_stack([extra[n] for n in names])
            har = ranges.fit_har(variance, fit, spans[span], columns)
            found.setdefault(name, []).append(scaled(har.sigma(variance, columns), returns, fit, origins, levels))
        har = ranges.fit_har(variance, train, spans["window"], extra["volume"])
        half = direct_half_width(har.design(variance, extra["volume"]), returns, train, 0.1)
        found.setdefault(DIRECT, []).append(scaled(half, returns, train, origins, levels))
    return found


def served(lookback_days: int, folds: int) -> dict[str, RatioInterval] | None:
    """The LSTM's pooled ratios from the walk-forward's results file of the same lookback and folds, if any."""
    path = _harness.RESULTS / "backtest" / f"{lookback_days}d-{folds}x30d.json"
    if not path.exists():
        return None
    pooled = json.loads(path.read_text())["pooledRanges"]
    return {name: RatioInterval.model_validate(value) for name, value in (pooled.get("intervalRatios") or {}).items()}


def table_for(lookback_days: int, folds: int, levels: list[float], day: float) -> str:
    parts = fold_scores(lookback_days, folds, timedelta(days=30))
    actual = np.concatenate(parts.pop("actual"))
    pooled = {name: np.concatenate(found) for name, found in parts.items()}
    widest = ranges.central_ranges(levels)[0]

    def per_hour(q: np.ndarray) -> np.ndarray:
        return ranges.interval_scores(actual[:, 0], q[:, 0, widest[0]], q[:, 0, widest[1]], 1.0 - widest[2])

    scores = {name: per_hour(q) for name, q in pooled.items()}
    clim, ewma = scores["Climatology"], scores["EWMA volatility of closes"]
    rows = []
    for name, q in pooled.items():
        hit = ranges.range_score(actual, q, levels).ranges[0]
        [(to_ewma, *_), (to_clim, low, high)] = bootstrap.ratio_intervals(scores[name], [ewma, clim], day)
        rows.append([name, f"{hit.rate:.4f}", f"{to_ewma:.4f}", f"{to_clim:.4f} [{low:.4f}, {high:.4f}]"])
    lstm = served(lookback_days, folds)
    if lstm and "climatology" in lstm:
        c = lstm["climatology"]
        rows.append(
            [
                "the LSTM (walk-forward results file)",
                "",
                f"{lstm['ewma'].ratio:.4f}",
                f"{c.ratio:.4f} [{c.low:.4f}, {c.high:.4f}]",
            ]
        )
    table = _harness.table(
        ["range", "90% coverage", "interval score / EWMA's", "/ climatology's [95% interval]"], rows, "lrrr"
    )
    return f"### lookbackDays {lookback_days}: {folds} folds of 30 days, {len(actual)} hours\n\n{table}\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lookback-days", default="365,1095", help="comma-separated lookbacks")
    parser.add_argument("--folds", type=int, default=12)
    run = _harness.Run.start(parser, __file__, argv)
    args = run.args
    pair = _harness.example_pair()
    levels = pair.spec.model.quantiles
    day = bootstrap.day_of_candles(timedelta(milliseconds=interval_ms(pair.spec.interval)))
    body = "\n".join(table_for(int(days), args.folds, levels, day) for days in str(args.lookback_days).split(","))
    run.finish(
        body,
        title="How narrow can an honest 90% range get? Volatility models with more and more knowledge",
        settings={"levels": levels, "window": pair.spec.model.window, "same-hour lags": list(SAME_HOUR_LAGS)},
        versions=("torch",),
        notes=[
            "The bundled BTC/USDT sample; each arm is fitted per fold on the training split of the lookback before "
            "the cutoff (one arm on every lookback hour) and scored on the fold's out-of-sample hours, beside the "
            "walk-forward's own climatology and EWMA ranges.",
        ],
    )


if __name__ == "__main__":
    main()
