"""Which candles can be forecast from and scored: windows that no gap runs through. Pure numpy, shared by the
trainer's split and by every later scoring of a served model (the dashboard's backtest, the track record)."""

from __future__ import annotations

import numpy as np


def segment_ids(open_ms: np.ndarray, step_ms: int) -> np.ndarray:
    """A number per candle that changes after every gap: candles with equal ids are contiguous."""
    breaks = np.concatenate([[0], (np.diff(open_ms) != step_ms).astype(np.int64)])
    return np.cumsum(breaks)


def valid_origins(segments: np.ndarray, window: int, horizon: int) -> np.ndarray:
    """Indices t of candles from which a forecast can be made and scored: candles t-W+1..t+h are contiguous."""
    n = len(segments)
    t = np.arange(window - 1, n - horizon)
    return np.asarray(t[segments[t - window + 1] == segments[t + horizon]])
