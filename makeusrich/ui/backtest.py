"""The test-split backtest a pair page draws: the served model, run now over the windows it was scored on.

metadata.json keeps the test metrics, not the per-point predictions. Rather than trust a stored file, the page
asks the model server for forecasts over the same test windows (the first is made at metadata's data.testFrom,
the close of its last input candle; the split ends with the candle closing at data.to) and scores them again
with the trainer's own functions. Its MAE ratio is shown next to the recorded one: equal numbers say that the
served model is the one that was measured, on the same candles.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from makeusrich.errors import CandleError
from makeusrich.market import OHLCV, interval_ms
from makeusrich.scoring import decision, evaluate, ranges, segment_ids, valid_origins
from makeusrich.store import DecisionMetrics, Directional, ModelMetadata
from makeusrich.ui.format import parse_time

BATCH = 256
"""Windows per inference request: well under the server's --max-batch (1024), small enough to stay fast."""


@dataclass(frozen=True)
class HeldOut:
    """The test split rebuilt from candles: raw input windows and what happened after each."""

    windows: np.ndarray  # [n, window, 5] float32, as a client sends them
    last_close: np.ndarray  # [n]
    actual: np.ndarray  # [n, horizon]
    target_times: pd.Series  # when the first forecast candle of each window closes
    ewma_sigma: np.ndarray  # [n] the RiskMetrics volatility known at each origin (the decision rules' twin reads it)


@dataclass(frozen=True)
class Backtest:
    version: str
    times: list[pd.Timestamp]
    actual: list[float]
    predicted: list[float]
    persistence: list[float]
    mae: float
    persistence_mae: float
    ratio: float | None
    recorded_ratio: float | None
    direction: Directional | None
    n: int
    horizon: int
    low: list[float] = field(default_factory=list)  # the widest range's ends at the first step, when it has one
    high: list[float] = field(default_factory=list)
    nominal: float | None = None
    coverage: float | None = None  # share of first-step closes inside it, recomputed now
    recorded_coverage: float | None = None  # what training recorded on the test split (all steps pooled)
    decisions: decision.Decisions | None = None  # the decision rules on these forecasts, after fees
    recorded_decision: DecisionMetrics | None = None  # what training recorded for them

    @property
    def agrees(self) -> bool | None:
        """Whether the recomputed MAE ratio matches the recorded one to 0.1%; None if either is missing."""
        if self.ratio is None or self.recorded_ratio is None:
            return None
        return abs(self.ratio - self.recorded_ratio) <= 1e-3 * max(1.0, abs(self.recorded_ratio))

    @property
    def decision_agrees(self) -> bool | None:
        """Whether the rules' returns recomputed now match those recorded at training to 0.1% of holding's spread
        (EWMA's volatility, read from fewer candles now, may differ in the last digits); None if either is missing."""
        if self.decisions is None or self.recorded_decision is None:
            return None
        now, then = self.decisions.metrics.rules, self.recorded_decision.rules
        return all(abs(now[r].total_log_return - then[r].total_log_return) <= 1e-3 for r in then if r in now)


EWMA_WARM = 600
"""Candles read before the first test window, so that EWMA's volatility at it is what the trainer's was (its weight
on anything older is below 0.94^600, about 1e-16)."""


def split_range(metadata: ModelMetadata) -> tuple[pd.Timestamp, pd.Timestamp, int, int, str]:
    """(open time of the first candle needed, open time of the last, window, horizon, interval) of a version's
    test split, with EWMA_WARM candles before its first window. metadata.json names candles by their close
    (data.testFrom, data.to); frames by their open."""
    start, end = parse_time(metadata.data.test_from), parse_time(metadata.data.to)
    if start is None or end is None:
        raise CandleError("this version's metadata.json records no test split (data.testFrom, data.to)")
    window, horizon, step = metadata.window, metadata.horizon, pd.Timedelta(milliseconds=interval_ms(metadata.interval))
    first = pd.Timestamp(start) - (window + EWMA_WARM) * step
    return first, pd.Timestamp(end) - step, window, horizon, metadata.interval


def held_out_windows(
    candles: pd.DataFrame, test_from: pd.Timestamp, window: int, horizon: int, step_ms: int
) -> HeldOut:
    """Windows whose forecast time (last input candle) is at or after `test_from`, contiguous through their
    targets, exactly as the trainer's split chose them."""
    ohlcv = candles[list(OHLCV)].to_numpy(dtype=np.float32)
    open_ms = candles["open_time"].astype("int64").to_numpy() // 1_000_000
    origins = valid_origins(segment_ids(open_ms, step_ms), window, horizon)
    origins = origins[(candles["open_time"].iloc[origins] >= test_from).to_numpy()]
    if len(origins) == 0:
        raise CandleError(f"no complete test window in the candles from {test_from:%Y-%m-%d %H:%M}Z on")
    view = sliding_window_view(ohlcv, window, axis=0)  # [n-W+1, 5, W]
    windows = np.ascontiguousarray(view[origins - window + 1].transpose(0, 2, 1))
    closes = ohlcv[:, 3].astype(np.float64)
    steps = origins[:, None] + np.arange(1, horizon + 1)[None, :]
    target_times = candles["open_time"].iloc[origins + 1] + pd.Timedelta(milliseconds=step_ms)
    sigma = ranges.ewma_sigma(closes)[origins]
    return HeldOut(windows, closes[origins], closes[steps], target_times.reset_index(drop=True), sigma)


def score(
    version: str,
    tests: HeldOut,
    forecast: np.ndarray,
    recorded_ratio: float | None,
    horizon: int,
    quantiles: np.ndarray | None = None,
    metadata: ModelMetadata | None = None,
) -> Backtest:
    """The same MAE, persistence MAE and directional accuracy as the trainer's evaluation, and, when the model
    answers quantiles, the widest range and how often it held the first step's close."""
    forecast = np.asarray(forecast, dtype=np.float64).reshape(len(tests.last_close), horizon)
    persistence = np.repeat(tests.last_close[:, None], horizon, axis=1)
    mae = evaluate.mae(tests.actual, forecast)
    base = evaluate.mae(tests.actual, persistence)
    return Backtest(
        version=version,
        times=list(tests.target_times),
        actual=tests.actual[:, 0].tolist(),
        predicted=forecast[:, 0].tolist(),
        persistence=tests.last_close.tolist(),
        mae=mae,
        persistence_mae=base,
        ratio=mae / base if base > 0 else None,
        recorded_ratio=recorded_ratio,
        direction=evaluate.directional_accuracy(tests.last_close, forecast, tests.actual),
        n=len(tests.last_close),
        horizon=horizon,
        **widest_range(tests, quantiles, metadata),
        **decided(tests, forecast, quantiles, metadata),
    )


def decided(
    tests: HeldOut, forecast: np.ndarray, quantiles: np.ndarray | None, metadata: ModelMetadata | None
) -> dict[str, Any]:
    """The Backtest fields of the decision rules on these forecasts, with what the version fitted on its training
    split (its metadata.json); none for a version from before them."""
    recorded = metadata.metrics.test.decision if metadata else None
    basis = decision.refit(recorded) if recorded else None
    if basis is None or quantiles is None or len(tests.last_close) < 2:
        return {}
    at = decision.Origins(
        last_close=tests.last_close,
        actual=tests.actual[:, 0],
        forecast=forecast[:, 0],
        low=quantiles[:, 0, 0].astype(np.float64),
        high=quantiles[:, 0, -1].astype(np.float64),
        level=basis.level,
        ewma_sigma=tests.ewma_sigma,
    )
    assert metadata is not None
    step = timedelta(milliseconds=interval_ms(metadata.interval))
    return {"decisions": decision.decide(at, basis.fitted, step, basis.settings), "recorded_decision": recorded}


def widest_range(tests: HeldOut, quantiles: np.ndarray | None, metadata: ModelMetadata | None) -> dict[str, Any]:
    """The Backtest fields of the widest range, from quantiles [n, h, L] and the levels in metadata."""
    levels = metadata.quantiles if metadata else None
    if quantiles is None or not levels or quantiles.shape[-1] != len(levels):
        return {}
    low, high = quantiles[:, 0, 0].astype(np.float64), quantiles[:, 0, -1].astype(np.float64)
    inside = (tests.actual[:, 0] >= low) & (tests.actual[:, 0] <= high)
    recorded = metadata.metrics.test.ranges if metadata else None
    return {
        "low": low.tolist(),
        "high": high.tolist(),
        "nominal": round(levels[-1] - levels[0], 9),
        "coverage": float(inside.mean()),
        "recorded_coverage": recorded.model.ranges[0].rate if recorded else None,
    }


async def run_backtest(
    version: str,
    metadata: ModelMetadata,
    candles: pd.DataFrame,
    infer: Callable[[np.ndarray], Awaitable[tuple[np.ndarray, np.ndarray | None]]],
) -> Backtest:
    """Forecast every test window through `infer` (the v2 client: forecast and quantiles, if the model has
    them), in batches, and score the result."""
    first, _, window, horizon, interval = split_range(metadata)
    test_from = first + (EWMA_WARM + window - 1) * pd.Timedelta(milliseconds=interval_ms(interval))
    tests = held_out_windows(candles, test_from, window, horizon, interval_ms(interval))
    parts = [await infer(tests.windows[i : i + BATCH]) for i in range(0, len(tests.windows), BATCH)]
    forecast = np.concatenate([p[0] for p in parts], axis=0)
    given = [p[1] for p in parts]
    quantiles = (
        np.concatenate([q for q in given if q is not None], axis=0) if all(q is not None for q in given) else None
    )
    return score(version, tests, forecast, metadata.metrics.test.model.rel_mae, horizon, quantiles, metadata)
