"""Scoring forecasts honestly, with numpy only: metrics, naive baselines, statistical tests and the windows
that can be scored. The trainer, the dashboard and the track record use the same functions, so a number means
the same thing wherever it is shown; nothing here imports torch."""

from makeusrich.scoring import evaluate
from makeusrich.scoring.windows import segment_ids, valid_origins

__all__ = ["evaluate", "segment_ids", "valid_origins"]
