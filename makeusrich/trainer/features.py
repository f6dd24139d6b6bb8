"""Stationary features, targets, windows and the chronological split: pure, vectorised numpy.

Feature row t describes candle t against the previous close, so it needs candles t-1 and t:

    log(open_t / close_t-1), log(high_t / close_t-1), log(low_t / close_t-1), log(close_t / close_t-1),
    log(1 + volume_t) - log(1 + volume_t-1)

A forecast made at candle t (the last closed one) reads the raw candles t-W+1..t, that is feature rows
t-W+2..t, and predicts y_t,k = log(close_t+k / close_t) for k = 1..horizon, in units of the volatility s_t that a
HAR regression inside the window expects at t: from the means of the candles' range variances (Garman-Klass plus
the squared jump from the previous close, makeusrich.scoring.ranges.range_variance: the high and the low say more
about how far prices move than closes do) over the last candle, the last day and the whole window's W-1 candles,
and from the last candle's log volume against its mean over the window (trading swells when prices start to
move); fitted on training origins only. The network learns the shape of the next move, the HAR its size, and a
range is s_t times a quantile. The ONNX graph computes the same features and s_t from raw candles
(see model.FeatureLayer; a test holds the two equal).

Nothing here looks past a split boundary: a sample belongs to a split only if every candle it reads, inputs and
targets, lies inside that split, and standardisation statistics come from training rows only.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from makeusrich.errors import CandleError
from makeusrich.market import OHLCV
from makeusrich.scoring import ranges, segment_ids, valid_origins

N_FEATURES = 5
FEATURE_SET = "ohlc-over-previous-close+log-volume-change/targets-over-in-window-har-with-volume"
"""Names what feature_rows computes: a change there must change this too, so that no run starts from weights that
learned other inputs (makeusrich.trainer.warm)."""


def ohlcv_array(frame: pd.DataFrame) -> np.ndarray:
    """Raw candles [n, 5] in the model's input order (open, high, low, close, volume), rounded to float32 as a
    client sends them (contract 2) and held as float64, so that training sees exactly what serving sees."""
    return frame[list(OHLCV)].to_numpy(dtype=np.float32).astype(np.float64)


def feature_rows(ohlcv: np.ndarray) -> np.ndarray:
    """Features of candles 1..n-1 against their previous close: [n-1, 5] (row i describes candle i+1). Each
    candle's log range variance as a sixth column was measured and left out: it did not help
    (bench/results/experiments/volatility_inputs.md)."""
    prev_close = ohlcv[:-1, 3:4]
    prices = np.log(ohlcv[1:, :4] / prev_close)
    log_volume = np.log1p(ohlcv[:, 4])
    volume = np.diff(log_volume)[:, None]
    return np.concatenate([prices, volume], axis=1)


def relative_volume(ohlcv: np.ndarray, window: int) -> np.ndarray:
    """Per candle: log(1 + volume) less its mean over the W-1 candles ending there (fewer at the start): the
    in-window HAR's volume regressor, [n]."""
    log_volume = np.log1p(ohlcv[:, 4])
    sums = np.concatenate([[0.0], np.cumsum(log_volume)])
    t = np.arange(1, len(log_volume) + 1)
    start = np.maximum(t - (window - 1), 0)
    return np.asarray(log_volume - (sums[t] - sums[start]) / (t - start))


def in_window_spans(window: int, step_ms: int) -> tuple[int, ...]:
    """The spans of the HAR that scales the targets, all inside a window of W candles (W-1 range variances): a
    candle, a day (at most W-1 candles) and the whole window. At one hour, the week's and month's means of the
    HAR of makeusrich.scoring.ranges add nothing (bench/results/experiments/range_baselines.md)."""
    day = max(1, round(ranges.DAY_MS / step_ms))
    return tuple(sorted({1, min(day, window - 1), window - 1}))


def targets(close: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """y[i, k] = log(close[t+k+1] / close[t]) for each origin t: cumulative log returns, [len(origins), h]."""
    log_close = np.log(close)
    steps = origins[:, None] + np.arange(1, horizon + 1)[None, :]
    return np.asarray(log_close[steps] - log_close[origins][:, None])


ROLES = ("train", "validation", "calibration", "test")
"""The four spans of a run's candles, oldest first, each with one role: `train` fits the weights, `validation`
early-stops them, `calibration` fits the ranges' conformal margins, and `test` judges the version (the gates of
makeusrich.trainer.promotion). No rule is evaluated on hours that fitted, early-stopped or calibrated what it
judges."""

FRACTIONS = (0.75, 0.075, 0.075)
"""Shares of the candles for train, validation and calibration; test takes the rest (the newest tenth)."""


@dataclass(frozen=True)
class Split:
    """Origins (forecast times, as candle indices) of each role, chronological and without shared candles."""

    train: np.ndarray
    validation: np.ndarray
    calibration: np.ndarray
    test: np.ndarray

    def of(self, role: str) -> np.ndarray:
        origins: np.ndarray = getattr(self, role)
        return origins


def chronological_split(
    origins: np.ndarray, n_candles: int, window: int, horizon: int, fractions: tuple[float, ...] = FRACTIONS
) -> Split:
    """Split origins at candle boundaries b1 < b2 < b3 so that no candle is read by two roles: a sample belongs to
    a role when every candle it reads, inputs and targets, lies inside that role's span. The windows straddling
    a boundary are dropped (a purge of W+h-1)."""
    edges = [0, *(int(n_candles * sum(fractions[: k + 1])) for k in range(len(fractions))), n_candles]
    first = origins - window + 1
    last = origins + horizon
    train, validation, calibration = (origins[(first >= lo) & (last < hi)] for lo, hi in itertools.pairwise(edges[:-1]))
    return Split(train, validation, calibration, test=origins[first >= edges[-2]])


@dataclass(frozen=True)
class Scaler:
    """Mean and standard deviation per column, fitted on training rows only."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, rows: np.ndarray) -> Scaler:
        std = rows.std(axis=0)
        return cls(mean=rows.mean(axis=0), std=np.where(std > 1e-12, std, 1.0))

    def transform(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray((rows - self.mean) / self.std)

    def inverse(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(rows * self.std + self.mean)


def training_feature_rows(features: np.ndarray, train_origins: np.ndarray, window: int) -> np.ndarray:
    """The feature rows that training windows read (and nothing after them): the scaler's data."""
    if len(train_origins) == 0:
        return features[:0]
    # feature row r describes candle r+1; a window at origin t reads rows t-W+1 .. t-1.
    starts = train_origins - window + 1
    marks = np.zeros(len(features) + 1, dtype=np.int64)
    np.add.at(marks, starts, 1)
    np.add.at(marks, train_origins, -1)
    used = np.cumsum(marks)[:-1] > 0
    return features[used]


def windows(features: np.ndarray, origins: np.ndarray, window: int) -> np.ndarray:
    """Feature windows [len(origins), W-1, F] as a view into `features` where possible (no copy of the data
    per window): window at origin t = feature rows t-W+1 .. t-1."""
    view = sliding_window_view(features, window - 1, axis=0)  # [n-W+1, 5, W-1]
    return np.asarray(view[origins - window + 1].transpose(0, 2, 1))


@dataclass(frozen=True)
class Prepared:
    """Everything training and evaluation need, derived from one candle frame."""

    ohlcv: np.ndarray  # raw candles [n, 5]
    open_time: pd.Series
    features: np.ndarray  # standardised feature rows [n-1, 5]
    targets: np.ndarray  # standardised targets per candle index, [n, h] (NaN where undefined)
    split: Split
    feature_scaler: Scaler
    target_scaler: Scaler
    volatility: ranges.Har  # the in-window HAR whose volatility the targets are measured in
    scale: np.ndarray  # that volatility at each candle [n]
    window: int
    horizon: int

    def inputs(self, origins: np.ndarray) -> np.ndarray:
        return windows(self.features, origins, self.window)

    def raw_windows(self, origins: np.ndarray) -> np.ndarray:
        """Raw OHLCV windows [len, W, 5], as a client sends them to the served model."""
        view = sliding_window_view(self.ohlcv, self.window, axis=0)
        return np.asarray(view[origins - self.window + 1].transpose(0, 2, 1))

    def log_returns(self, standardised: np.ndarray, origins: np.ndarray) -> np.ndarray:
        """Targets or the network's outputs at origins, [n, h] or [n, h, L] in standardised units, as cumulative
        log returns from each origin's last close: what the graph does after the network."""
        extra = (1,) * (standardised.ndim - 2)
        mean, std = (
            np.reshape(values, (1, -1, *extra)) for values in (self.target_scaler.mean, self.target_scaler.std)
        )
        return np.asarray((standardised * std + mean) * self.scale[origins].reshape(-1, 1, *extra))

    def last_close(self, origins: np.ndarray) -> np.ndarray:
        return np.asarray(self.ohlcv[origins, 3])

    def actual_prices(self, origins: np.ndarray) -> np.ndarray:
        """Closes of the next `horizon` candles after each origin, [len, h]."""
        steps = origins[:, None] + np.arange(1, self.horizon + 1)[None, :]
        return np.asarray(self.ohlcv[steps, 3])


def prepare(
    frame: pd.DataFrame, window: int, horizon: int, step_ms: int, fractions: tuple[float, ...] = FRACTIONS
) -> Prepared:
    """Features, targets and split for a clean candle frame (see makeusrich.market.candles.clean_candles)."""
    ohlcv = ohlcv_array(frame)
    if not np.isfinite(ohlcv).all() or (ohlcv[:, :4] <= 0).any():
        raise CandleError("candles contain NaN, infinite or non-positive values; clean them first")
    open_ms = frame["open_time"].astype("int64").to_numpy() // 1_000_000
    origins = valid_origins(segment_ids(open_ms, step_ms), window, horizon)
    split = chronological_split(origins, len(ohlcv), window, horizon, fractions)
    for name in ROLES:
        part = split.of(name)
        if len(part) < 2:
            raise CandleError(
                f"too little data: the {name} split has {len(part)} window(s) of {window} candles + {horizon} "
                f"ahead from {len(ohlcv)} candles; raise lookbackDays or lower model.window"
            )
    variance = ranges.range_variance(ohlcv)
    volume = relative_volume(ohlcv, window)
    volatility = ranges.fit_har(variance, split.train, in_window_spans(window, step_ms), volume)
    scale = volatility.sigma(variance, volume)
    raw_features = feature_rows(ohlcv)
    feature_scaler = Scaler.fit(training_feature_rows(raw_features, split.train, window))
    all_targets = np.full((len(ohlcv), horizon), np.nan)
    all_targets[origins] = targets(ohlcv[:, 3], origins, horizon) / scale[origins, None]
    target_scaler = Scaler.fit(all_targets[split.train])
    return Prepared(
        ohlcv=ohlcv,
        open_time=frame["open_time"].reset_index(drop=True),
        features=feature_scaler.transform(raw_features).astype(np.float32),
        targets=target_scaler.transform(all_targets).astype(np.float32),
        split=split,
        feature_scaler=feature_scaler,
        target_scaler=target_scaler,
        volatility=volatility,
        scale=scale,
        window=window,
        horizon=horizon,
    )
