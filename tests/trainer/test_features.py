"""Features, windows and splits: equal to a plain per-row computation, gap-aware, and leak-free."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from makeusrich.errors import CandleError
from makeusrich.market import clean_candles, read_sample
from makeusrich.trainer.features import (
    Scaler,
    chronological_split,
    feature_rows,
    prepare,
    segment_ids,
    training_feature_rows,
    valid_origins,
)
from makeusrich.trainer.model import FeatureLayer

HOUR = 3_600_000


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    frame, _ = clean_candles(read_sample("BTCUSDT", "1h"), "1h")
    return frame.iloc[-3000:].reset_index(drop=True)


def slow_features(frame: pd.DataFrame) -> list[list[float]]:
    """The features written out row by row: the reference the vectorised code must equal."""
    rows = []
    for i in range(1, len(frame)):
        prev, cur = frame.iloc[i - 1], frame.iloc[i]
        rows.append(
            [
                math.log(cur.open / prev.close),
                math.log(cur.high / prev.close),
                math.log(cur.low / prev.close),
                math.log(cur.close / prev.close),
                math.log1p(cur.volume) - math.log1p(prev.volume),
            ]
        )
    return rows


def test_vectorised_features_equal_the_row_by_row_definition(candles: pd.DataFrame) -> None:
    part = candles.iloc[:200]
    fast = feature_rows(part[["open", "high", "low", "close", "volume"]].to_numpy())
    assert np.allclose(fast, np.array(slow_features(part)), rtol=0, atol=1e-12)


def test_windows_skip_gaps() -> None:
    open_ms = np.array([0, 1, 2, 3, 5, 6, 7, 8, 9, 10]) * HOUR  # one candle missing at 4
    origins = valid_origins(segment_ids(open_ms, HOUR), window=3, horizon=1)
    # a window of 3 ending at t plus the candle t+1 must all be contiguous
    assert origins.tolist() == [2, 6, 7, 8]


def test_split_shares_no_candle_between_train_validation_and_test() -> None:
    origins = np.arange(9, 1000 - 2)
    window, horizon = 10, 2
    split = chronological_split(origins, 1000, window, horizon)

    def span(part: np.ndarray) -> set[int]:
        return {int(i) for t in part for i in range(t - window + 1, t + horizon + 1)}

    assert not span(split.train) & span(split.validation)
    assert not span(split.validation) & span(split.test)
    assert split.train.max() < split.validation.min() < split.test.min()


def test_scaler_reads_training_rows_only(candles: pd.DataFrame) -> None:
    data = prepare(candles, 48, 1, HOUR)
    # Changing everything after the last training candle must not change the scalers.
    last_train_candle = int(data.split.train.max()) + 1
    altered = candles.copy()
    for column in ("open", "high", "low", "close"):
        altered.loc[last_train_candle + 1 :, column] *= 1.5 + np.random.default_rng(0).random(
            len(altered) - last_train_candle - 1
        )
    altered.loc[last_train_candle + 1 :, "volume"] *= 7.0
    again = prepare(altered, 48, 1, HOUR)
    assert np.array_equal(again.split.train, data.split.train)
    assert np.array_equal(again.feature_scaler.mean, data.feature_scaler.mean)
    assert np.array_equal(again.feature_scaler.std, data.feature_scaler.std)
    assert np.array_equal(again.target_scaler.mean, data.target_scaler.mean)
    assert np.array_equal(again.volatility.coefficients, data.volatility.coefficients)
    assert np.array_equal(again.scale[: last_train_candle + 1], data.scale[: last_train_candle + 1])
    assert np.array_equal(again.inputs(data.split.train), data.inputs(data.split.train))
    assert np.array_equal(again.targets[data.split.train], data.targets[data.split.train])


def test_training_feature_rows_are_those_windows_read() -> None:
    features = np.arange(20, dtype=float)[:, None]
    rows = training_feature_rows(features, np.array([5, 6]), window=3)
    assert rows[:, 0].tolist() == [3.0, 4.0, 5.0]  # origin t reads rows t-2 .. t-1


def test_windows_are_views_of_the_right_rows(candles: pd.DataFrame) -> None:
    data = prepare(candles, 24, 3, HOUR)
    t = int(data.split.test[5])
    window = data.inputs(np.array([t]))[0]
    assert window.shape == (23, 5)
    assert np.array_equal(window, data.features[t - 23 : t])
    raw = data.raw_windows(np.array([t]))[0]
    assert np.array_equal(raw[-1], data.ohlcv[t]) and raw.shape == (24, 5)
    expected = data.log_returns(data.targets[[t]], np.array([t]))[0]
    assert np.allclose(expected, np.log(data.ohlcv[t + 1 : t + 4, 3] / data.ohlcv[t, 3]), atol=1e-6)


def test_feature_layer_in_the_graph_equals_numpy(candles: pd.DataFrame) -> None:
    data = prepare(candles, 32, 1, HOUR)
    assert data.volatility.spans == (1, 24, 31)
    origins = data.split.test[:64]
    layer = FeatureLayer(data.feature_scaler, data.volatility)
    with torch.no_grad():
        in_graph, sigma = layer(torch.from_numpy(data.raw_windows(origins).astype(np.float32)))
    assert np.allclose(in_graph.numpy(), data.inputs(origins), rtol=0, atol=1e-5)
    assert np.allclose(sigma.numpy(), data.scale[origins], rtol=1e-5, atol=0)


def test_the_targets_scale_moves_with_the_window_s_volatility(candles: pd.DataFrame) -> None:
    data = prepare(candles, 32, 1, HOUR)
    t = int(data.split.test[10])
    layer = FeatureLayer(data.feature_scaler, data.volatility)
    window = data.raw_windows(np.array([t])).astype(np.float32)
    wild, loud = window.copy(), window.copy()
    wild[0, -1, 1] *= 1.05  # the last candle's high five per cent higher: a wider candle
    loud[0, -1, 4] *= 10.0  # ten times the volume
    with torch.no_grad():
        sigma, wider, louder = (float(layer(torch.from_numpy(w))[1][0]) for w in (window, wild, loud))
    assert wider > sigma * 1.2
    assert louder > sigma * 1.2
    # The regression found that volatility persists, and that heavy trading comes with wider moves.
    assert data.volatility.coefficients[1:-1].sum() > 0.5 and data.volatility.coefficients[-1] > 0.2


def test_too_little_data_says_what_to_change(candles: pd.DataFrame) -> None:
    with pytest.raises(CandleError, match="too little data.*raise lookbackDays or lower model.window"):
        prepare(candles.iloc[:150], 120, 1, HOUR)


def test_scaler_round_trip_and_constant_columns() -> None:
    rows = np.array([[1.0, 5.0], [3.0, 5.0]])
    scaler = Scaler.fit(rows)
    assert np.allclose(scaler.inverse(scaler.transform(rows)), rows)
    assert scaler.std[1] == 1.0  # a constant column is centred, not divided by zero
