"""Scoring forecasts honestly, with numpy only: metrics, naive baselines, statistical tests, the windows that can be
scored, and the rules that decide on live evidence. The trainer, the dashboard, the operator and the track record
use the same functions, so a number means the same thing wherever it is shown; nothing here imports torch.

    evaluate   point forecasts: MAE, RMSE, direction with Wilson intervals, Diebold-Mariano, the naive rules
    ranges     quantile forecasts: coverage, interval and pinball scores, conformal margins, naive ranges
    windows    which origins a series of candles can score
    folds      a walk-forward backtest as a table
    live       the live record as a pair's status carries it, and the Degraded rule
    sequential decisions on live evidence that may be checked after every forecast (e-detectors)
    decision   would following the forecasts have made money after fees: two rules and their twins
    bootstrap  the stationary block bootstrap: whether a difference or a ratio over candles could be luck

`evaluate`, `ranges`, `sequential`, `decision` and `bootstrap` are offered as modules (`evaluate.score`,
`ranges.range_metrics`); the rest by name.
"""

from makeusrich.scoring import bootstrap, decision, evaluate, ranges, sequential
from makeusrich.scoring.folds import COLUMNS, DECISION_COLUMNS, decision_rows, interval_ratio_line, table_rows
from makeusrich.scoring.live import (
    DEGRADED_REASONS,
    LABELS,
    RANGES_TOO_NARROW,
    VERSION_WINDOW,
    amount,
    compared,
    degraded_since,
    degraded_verdict,
    evidence_line,
    live_status,
)
from makeusrich.scoring.windows import segment_ids, valid_origins

__all__ = [
    "COLUMNS",
    "DECISION_COLUMNS",
    "DEGRADED_REASONS",
    "LABELS",
    "RANGES_TOO_NARROW",
    "VERSION_WINDOW",
    "amount",
    "bootstrap",
    "compared",
    "decision",
    "decision_rows",
    "degraded_since",
    "degraded_verdict",
    "evaluate",
    "evidence_line",
    "interval_ratio_line",
    "live_status",
    "ranges",
    "segment_ids",
    "sequential",
    "table_rows",
    "valid_origins",
]
