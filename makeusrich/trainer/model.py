"""The LSTM, and the module exported to ONNX: raw candles in, close prices and their quantiles out.

`Forecaster` wraps the trained `LSTMCore` with the feature computation, both scalers, the in-window HAR that
sizes the ranges and the conformal margins as constant buffers, so the ONNX file needs nothing from the client but
raw OHLCV (contract 2).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from makeusrich.scoring import ranges
from makeusrich.trainer.features import N_FEATURES, Scaler


class LSTMCore(nn.Module):
    """Standardised feature windows [B, W-1, 5] -> quantiles of standardised cumulative log returns
    [B, horizon, levels], ascending along levels.

    Non-crossing by construction: the head gives the median and, for each level outward from it, a gap that
    softplus keeps positive; a quantile is the median plus (or minus) the sum of the gaps up to it."""

    def __init__(self, hidden_size: int, layers: int, dropout: float, horizon: int, levels: int, median: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(
            input_size=N_FEATURES,
            hidden_size=hidden_size,
            num_layers=layers,
            dropout=dropout if layers > 1 else 0.0,
            batch_first=True,
        )
        self.horizon, self.levels, self.median = horizon, levels, median
        self.head = nn.Linear(hidden_size, horizon * levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        raw = self.head(out[:, -1, :]).reshape(-1, self.horizon, self.levels)
        centre = raw[:, :, self.median : self.median + 1]
        gaps = nn.functional.softplus(raw)
        above = centre + torch.cumsum(gaps[:, :, self.median + 1 :], dim=2)
        below = centre - torch.flip(torch.cumsum(torch.flip(gaps[:, :, : self.median], [2]), dim=2), [2])
        return torch.cat([below, centre, above], dim=2)


def _buffer(values: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.float32))


class FeatureLayer(nn.Module):
    """Raw OHLCV windows [B, W, 5] -> standardised feature windows [B, W-1, 5], and the volatility [B] the
    in-window HAR expects for the next candle (from the window's range variances and its last candle's relative
    volume); mirrors features.feature_rows and Prepared.scale."""

    mean: torch.Tensor
    std: torch.Tensor
    coefficients: torch.Tensor

    def __init__(self, scaler: Scaler, volatility: ranges.Har) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(np.asarray(scaler.mean, dtype=np.float64)))
        self.register_buffer("std", torch.as_tensor(np.asarray(scaler.std, dtype=np.float64)))
        self.register_buffer("coefficients", torch.as_tensor(np.asarray(volatility.coefficients, dtype=np.float64)))
        self.floor, self.spans = volatility.floor, volatility.spans

    def forward(self, candles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Ratios of nearby prices in float64: in float32 the log of open/previous close (often 1 +- 1e-6) would
        # be mostly rounding noise once standardised.
        candles = candles.double()
        prev_close = candles[:, :-1, 3:4]
        prices = torch.log(candles[:, 1:, 0:4] / prev_close)
        log_volume = torch.log1p(candles[:, :, 4:5])
        volume = log_volume[:, 1:, :] - log_volume[:, :-1, :]
        opened, high, low, close = (prices[:, :, column : column + 1] for column in range(4))
        variance = 0.5 * (high - low) ** 2 - ranges.GARMAN_KLASS * (close - opened) ** 2 + opened**2
        features = torch.cat([prices, volume], dim=2)
        means = [variance[:, -span:, 0].mean(dim=1) for span in self.spans]
        recent_volume = log_volume[:, -1, 0] - log_volume[:, 1:, 0].mean(dim=1)  # features.relative_volume
        logs = [torch.log(mean + self.floor) for mean in means]
        design = torch.stack([torch.ones_like(means[0]), *logs, recent_volume], dim=1)
        sigma = torch.sqrt(torch.exp(design @ self.coefficients))
        return ((features - self.mean) / self.std).float(), sigma.float()


def calibrated(quantiles: torch.Tensor, margins: torch.Tensor, median: int) -> torch.Tensor:
    """Quantiles [B, h, L] moved outward by their margins [h, L] (a negative margin moves inward), then kept in
    order: each end stays on its side of the median and never inside the next range in."""
    centre = quantiles[:, :, median : median + 1]
    parts = [centre]
    inner = torch.zeros_like(centre)
    for index in range(median + 1, quantiles.shape[2]):  # outward above the median, then mirrored below
        inner = torch.maximum(inner, quantiles[:, :, index : index + 1] - centre + margins[:, index : index + 1])
        parts.append(centre + inner)
    inner = torch.zeros_like(centre)
    for index in range(median - 1, -1, -1):
        inner = torch.maximum(inner, centre - quantiles[:, :, index : index + 1] + margins[:, index : index + 1])
        parts.insert(0, centre - inner)
    return torch.cat(parts, dim=2)


class Forecaster(nn.Module):
    """The served model: raw candles [B, W, 5] (oldest first) -> the next `horizon` closes' median [B, horizon]
    and calibrated quantiles [B, horizon, levels]. The network and the margins work in units of the in-window
    HAR's volatility, so a range widens and narrows with it."""

    target_mean: torch.Tensor
    target_std: torch.Tensor
    margins: torch.Tensor

    def __init__(
        self,
        core: LSTMCore,
        feature_scaler: Scaler,
        target_scaler: Scaler,
        volatility: ranges.Har,
        margins: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        self.features = FeatureLayer(feature_scaler, volatility)
        self.core = core
        self.register_buffer("target_mean", _buffer(target_scaler.mean))
        self.register_buffer("target_std", _buffer(target_scaler.std))
        shape = (core.horizon, core.levels)
        self.register_buffer("margins", _buffer(np.zeros(shape) if margins is None else margins))

    def forward(self, candles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features, sigma = self.features(candles)
        standardised = calibrated(self.core(features), self.margins, self.core.median)
        log_returns = (standardised * self.target_std[:, None] + self.target_mean[:, None]) * sigma[:, None, None]
        quantiles = candles[:, -1, 3:4, None] * torch.exp(log_returns)
        return quantiles[:, :, self.core.median], quantiles
