"""Recalibration (issue 31): the served LSTM's conformal margins refitted on the newest held-out hours and
published as a new version through the gates, with no training.

Between trainings a version's margins grow old: its calibration hours end before its test tenth, so at a 1095-day
lookback they are more than three months old on the day it is published, and coverage drifts with the market
(bench/results/experiments/recalibration.md replays what refitting them does). A recalibration rebuilds the served
graph from its weights file (makeusrich.trainer.warm.read_forecaster), fits new margins on the CALIBRATION
candles just before the newest TEST ones, and judges the new version on those newest ones as a training run's
version is judged: the coverage rule, and not significantly worse than the served version on hours neither used.
Its point forecast is the served version's (a margin never moves the median), so the point gate says so instead of
judging the same forecasts again on a few days. Every hour whose label fits a margin closed after the last hour
that fitted or early-stopped the weights.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import torch

from makeusrich.errors import MakeUsRichError
from makeusrich.market import close_moments
from makeusrich.scoring import ranges
from makeusrich.trainer.features import Prepared, Split
from makeusrich.trainer.model import Forecaster

CALIBRATION = 672
"""Candles whose labels fit the new margins: four weeks of hours, the span that kept nearly all the sharpness in the
replay (a shorter one follows the market closer and widens the ranges more)."""
TEST = 336
"""The newest candles, which judge the new version: two weeks of hours, so that a range that covers as it says
passes the coverage rule (0.03 of tolerance) about 93 times in 100 (binomially; less where misses cluster), and a
champion check has enough hours."""


class RecalibrationError(MakeUsRichError):
    """Nothing can be recalibrated: what is served, or the hours since it was trained, do not allow it."""


def recalibration_split(
    data: Prepared, tuned_through: pd.Timestamp, interval: str, calibration: int = CALIBRATION, test: int = TEST
) -> Split:
    """`data`'s split with new calibration and test roles: test the newest `test` origins, calibration the newest
    `calibration` origins whose labels close before the first test origin and after `tuned_through` (the close of
    the last hour that tuned the served weights). Train and validation keep their origins whose labels close before
    the first calibration origin: the naive baselines are fitted on train, and judged beside the version."""
    origins = np.sort(np.concatenate([data.split.of(role) for role in ("train", "validation", "calibration", "test")]))
    if len(origins) < test:
        raise RecalibrationError(f"only {len(origins)} forecast origins in the candles; a recalibration needs {test}")
    newest = origins[-test:]
    closes = close_moments(data.open_time, interval)
    labelled_after = (closes.iloc[origins + 1] > tuned_through).to_numpy(dtype=bool)  # the first label's close
    held_out = origins[(origins + data.horizon <= newest[0]) & labelled_after]
    if len(held_out) < calibration:
        raise RecalibrationError(
            f"only {len(held_out)} hours closed after the served version's weights were tuned (through "
            f"{tuned_through:%Y-%m-%d %H:%M}) and before the newest {test}; a recalibration fits its margins on "
            f"{calibration}: wait, or train"
        )
    fits = held_out[-calibration:]
    train, validation = (part[part + data.horizon < fits[0]] for part in (data.split.train, data.split.validation))
    if len(train) < 2 or len(validation) < 2:
        raise RecalibrationError(
            f"lookbackDays leaves no training or validation hours before the {calibration + test} hours a "
            "recalibration fits and judges (the naive baselines are fitted on the former): raise it"
        )
    return Split(train=train, validation=validation, calibration=fits, test=newest)


def refit_margins(
    forecaster: Forecaster, data: Prepared, origins: np.ndarray, levels: list[float]
) -> tuple[np.ndarray, float]:
    """Conformal margins [h, L] in the graph's standardised units, from the network's quantiles and the outcomes at
    `origins` (candle indices of `data`), each divided by the graph's own in-window volatility; and the median of
    that volatility there, what a margin in standardised units is worth in log returns."""
    windows = torch.from_numpy(np.ascontiguousarray(data.raw_windows(origins), dtype=np.float32))
    with torch.no_grad():
        features, sigma = forecaster.features(windows)
        raw = forecaster.core(features).double().numpy()
    returns = np.log(data.actual_prices(origins) / data.last_close(origins)[:, None])
    mean, std = forecaster.target_mean.double().numpy(), forecaster.target_std.double().numpy()
    volatility = sigma.double().numpy()
    actual = (returns / volatility[:, None] - mean[None, :]) / std[None, :]
    return ranges.conformal_margins(actual, raw, levels), float(np.median(volatility))


def with_margins(forecaster: Forecaster, margins: np.ndarray) -> Forecaster:
    """A copy of the graph whose margins are `margins`: the same network, scalers and volatility."""
    new = copy.deepcopy(forecaster)
    new.margins.copy_(torch.as_tensor(np.asarray(margins, dtype=np.float32)))
    return new
