"""How a trained version is measured, as it will be served: the exported ONNX file run by onnxruntime on raw
candle windows, next to persistence, the trivial rules and an AR model for the point, and next to the naive ranges
(climatology, EWMA volatility of closes and of candle ranges, HAR of candle ranges; makeusrich.scoring.ranges),
every baseline fitted on the training split only. Also the conformal calibration of
the ranges and the smoke test the server runs before serving. The trainer and the walk-forward backtest share it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import timedelta

import numpy as np
import onnxruntime
import torch

from makeusrich.market import interval_ms
from makeusrich.pair import CurrencyPairSpec, DecisionSpec
from makeusrich.scoring import decision, evaluate, ranges
from makeusrich.store import DecisionMetrics, Metrics, SmokeTest, SplitMetrics
from makeusrich.trainer.export import run_onnx
from makeusrich.trainer.features import Prepared
from makeusrich.trainer.model import LSTMCore
from makeusrich.trainer.train import predict_standardised

AR_ORDER = 24


def training_log_returns(data: Prepared) -> np.ndarray:
    """Log returns of the candles the training split reads (nothing later): the AR baseline's data."""
    last = int(data.split.train.max()) + data.horizon
    return np.diff(np.log(data.ohlcv[: last + 1, 3]))


def log_returns(prices: np.ndarray, last_close: np.ndarray) -> np.ndarray:
    """Prices [n, h] or quantiles [n, h, L] as log returns from each origin's last close."""
    return np.asarray(np.log(prices / last_close.reshape((-1,) + (1,) * (prices.ndim - 1))))


@dataclass(frozen=True)
class Volatility:
    """The volatilities the naive ranges scale by, known at each candle of a series [n]: RiskMetrics' EWMA of
    squared close-to-close returns (which the decision rules read too), its EWMA of candle range variances, and a
    HAR regression on those variances fitted on training origins only."""

    ewma: np.ndarray
    ewma_range: np.ndarray
    har: np.ndarray

    @classmethod
    def of(cls, ohlcv: np.ndarray, train_origins: np.ndarray, step_ms: int) -> Volatility:
        """For candles [n, 5], with the HAR fitted on `train_origins` (indices into the same candles)."""
        variance = ranges.range_variance(ohlcv)
        har = ranges.fit_har(variance, train_origins, ranges.har_spans(step_ms))
        return cls(
            ewma=ranges.ewma_sigma(ohlcv[:, 3]),
            ewma_range=np.sqrt(ranges.ewma_through(variance)),  # the variances are the HAR's too: made once
            har=har.sigma(variance),
        )

    def at(self, origins: np.ndarray) -> dict[str, np.ndarray]:
        """Each volatility at `origins`, by the name RangeMetrics gives its range."""
        return {field.name: getattr(self, field.name)[origins] for field in fields(self)}


def naive_ranges(
    data: Prepared, origins: np.ndarray, levels: list[float], volatility: Volatility, offset: int = 0
) -> dict[str, np.ndarray]:
    """Each naive range's quantiles [n, h, L] at origins, fitted on the training split only. `volatility` is
    indexed like `origins`; `offset` is where `data`'s candles start in it."""
    train = data.split.train
    train_returns = log_returns(data.actual_prices(train), data.last_close(train))
    trained, now = volatility.at(train + offset), volatility.at(origins)
    return ranges.baseline_quantiles(train_returns, levels, {name: (trained[name], now[name]) for name in now})


def decision_metrics(
    data: Prepared,
    origins: np.ndarray,
    forecast: np.ndarray,
    quantiles: np.ndarray,
    levels: list[float],
    sigma: np.ndarray,
    interval: timedelta,
    settings: DecisionSpec,
) -> DecisionMetrics:
    """Would following the version's one-step forecasts and widest range at `origins` have made money after fees
    (makeusrich.scoring.decision)? What the rules fit (the drift, the risk target, EWMA's range) comes from the
    one-step returns at the training origins only."""
    level = round(levels[-1] - levels[0], 9)
    train = data.split.train
    train_returns = np.log(data.actual_prices(train)[:, 0] / data.last_close(train))
    at = decision.Origins(
        last_close=data.last_close(origins),
        actual=data.actual_prices(origins)[:, 0],
        forecast=np.asarray(forecast[:, 0], dtype=np.float64),
        low=np.asarray(quantiles[:, 0, 0], dtype=np.float64),
        high=np.asarray(quantiles[:, 0, -1], dtype=np.float64),
        level=level,
        ewma_sigma=sigma[origins],
    )
    return decision.decide(at, decision.Fitted.of(train_returns, sigma[train], level), interval, settings).metrics


def score_split(
    data: Prepared,
    origins: np.ndarray,
    session: onnxruntime.InferenceSession,
    ar_coefs: np.ndarray,
    levels: list[float],
    volatility: Volatility,
    decide: tuple[timedelta, DecisionSpec] | None = None,
) -> SplitMetrics:
    """The exported model, run by onnxruntime as it will be served, and every baseline on one split; with
    `decide` (the interval and the pair's spec.decision), also the decision rules on it."""
    history = evaluate.past_closes(data.ohlcv[:, 3], origins, min(AR_ORDER, data.window - 1) + 1)
    actual, last_close = data.actual_prices(origins), data.last_close(origins)
    forecast, quantiles = run_onnx(session, data.raw_windows(origins))
    point = evaluate.evaluate_split(
        actual=actual,
        forecast=forecast,
        last_close=last_close,
        closes_history=history,
        train_mean_log_return=float(np.mean(data.log_returns(data.targets[data.split.train], data.split.train)[:, 0])),
        ar_coefs=ar_coefs,
    )
    naive = naive_ranges(data, origins, levels, volatility)
    scored = ranges.range_metrics(log_returns(actual, last_close), log_returns(quantiles, last_close), naive, levels)
    traded = decision_metrics(data, origins, forecast, quantiles, levels, volatility.ewma, *decide) if decide else None
    return point.model_copy(update={"ranges": scored, "decision": traded})


def smoke_test(session: onnxruntime.InferenceSession, data: Prepared) -> SmokeTest:
    """The last test window and the exported model's forecast for it: the server runs it before serving a
    version, so a model that fails on real prices, or a file that is not the measured model, is refused."""
    candles = np.ascontiguousarray(data.raw_windows(data.split.test[-1:]), dtype=np.float32)
    forecast, quantiles = run_onnx(session, candles)
    return SmokeTest(candles=candles[0].tolist(), forecast=forecast[0].tolist(), quantiles=quantiles[0].tolist())


def calibrate(core: LSTMCore, data: Prepared, levels: list[float]) -> np.ndarray:
    """Conformal margins [h, L] in standardised units, from the calibration split: hours that neither fitted nor
    early-stopped the model, and that judge nothing (the test split's coverage can then fail)."""
    calibration = data.split.calibration
    predicted = predict_standardised(core, data, calibration, torch.device("cpu"))
    return ranges.conformal_margins(data.targets[calibration], predicted, levels)


def measure(data: Prepared, session: onnxruntime.InferenceSession, spec: CurrencyPairSpec) -> Metrics:
    """The version on its validation and test splits, each baseline on the same points (fitted on training only),
    and on the test split whether following it would have made money."""
    levels = spec.model.quantiles
    interval = timedelta(milliseconds=interval_ms(spec.interval))
    ar_coefs = evaluate.fit_ar(training_log_returns(data), min(AR_ORDER, data.window - 1))
    volatility = Volatility.of(data.ohlcv, data.split.train, interval_ms(spec.interval))
    return Metrics(
        validation=score_split(data, data.split.validation, session, ar_coefs, levels, volatility),
        test=score_split(data, data.split.test, session, ar_coefs, levels, volatility, (interval, spec.decision)),
    )
