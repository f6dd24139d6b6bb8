"""The LSTM, and the module exported to ONNX: raw candles in, close prices out.

`Forecaster` wraps the trained `LSTMCore` with the feature computation and both scalers as constant buffers,
so the ONNX file needs nothing from the client but raw OHLCV (contract 2).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from makeusrich.trainer.features import N_FEATURES, Scaler


class LSTMCore(nn.Module):
    """Standardised feature windows [B, W-1, 5] -> standardised cumulative log returns [B, horizon]."""

    def __init__(self, hidden_size: int, layers: int, dropout: float, horizon: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(
            input_size=N_FEATURES,
            hidden_size=hidden_size,
            num_layers=layers,
            dropout=dropout if layers > 1 else 0.0,
            batch_first=True,
        )
        self.head = nn.Linear(hidden_size, horizon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        result: torch.Tensor = self.head(out[:, -1, :])
        return result


def _buffer(values: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.float32))


class FeatureLayer(nn.Module):
    """Raw OHLCV windows [B, W, 5] -> standardised feature windows [B, W-1, 5]; mirrors features.feature_rows."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, scaler: Scaler) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(np.asarray(scaler.mean, dtype=np.float64)))
        self.register_buffer("std", torch.as_tensor(np.asarray(scaler.std, dtype=np.float64)))

    def forward(self, candles: torch.Tensor) -> torch.Tensor:
        # Ratios of nearby prices in float64: in float32 the log of open/previous close (often 1 +- 1e-6) would
        # be mostly rounding noise once standardised.
        candles = candles.double()
        prev_close = candles[:, :-1, 3:4]
        prices = torch.log(candles[:, 1:, 0:4] / prev_close)
        log_volume = torch.log1p(candles[:, :, 4:5])
        volume = log_volume[:, 1:, :] - log_volume[:, :-1, :]
        features = torch.cat([prices, volume], dim=2)
        return ((features - self.mean) / self.std).float()


class Forecaster(nn.Module):
    """The served model: raw candles [B, W, 5] (oldest first) -> next `horizon` close prices [B, horizon]."""

    target_mean: torch.Tensor
    target_std: torch.Tensor

    def __init__(self, core: LSTMCore, feature_scaler: Scaler, target_scaler: Scaler) -> None:
        super().__init__()
        self.features = FeatureLayer(feature_scaler)
        self.core = core
        self.register_buffer("target_mean", _buffer(target_scaler.mean))
        self.register_buffer("target_std", _buffer(target_scaler.std))

    def forward(self, candles: torch.Tensor) -> torch.Tensor:
        standardised = self.core(self.features(candles))
        log_returns = standardised * self.target_std + self.target_mean
        return candles[:, -1, 3:4] * torch.exp(log_returns)
