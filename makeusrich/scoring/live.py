"""The live track record as a pair's status carries it, and the rule that calls it Degraded: one definition
for the operator (status.live and the condition) and the dashboard (the card and its badge)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from makeusrich.pair import LiveStatus, LiveWindowStatus
from makeusrich.store import LiveWindow, TrackSummary

Verdict = tuple[Literal["True", "False", "Unknown"], str, str]  # a condition's status, reason and message
# Degraded: over the last 30 days the served version is worse than persistence with DM p below DEGRADED_P, or
# its widest range covers less than MIN_COVERAGE of the closes (judged once MIN_SCORED forecasts have closed).
DEGRADED_WINDOW = "30d"
DEGRADED_SPAN = timedelta(days=30)
VERSION_WINDOW = "version"
DEGRADED_P = 0.05
MIN_COVERAGE = 0.85
MIN_SCORED = 24


def live_window(window: LiveWindow) -> LiveWindowStatus:
    point, ranges = window.point, window.ranges
    widest = ranges.ranges[0] if ranges and ranges.ranges else None
    return LiveWindowStatus(
        window=window.window,
        made=window.made,
        missed=window.missed,
        scored=window.scored,
        mae_ratio=point.rel_mae if point else None,
        dm_pvalue=point.dm_pvalue if point else None,
        direction=point.directional.accuracy if point and point.directional else None,
        coverage=widest.rate if widest else None,
        coverage_nominal=widest.nominal if widest else None,
    )


def live_status(summary: TrackSummary) -> LiveStatus:
    """track.json as the status carries it: each window's headline numbers (the full scores stay in the store)."""
    windows = [live_window(w) for w in summary.windows]
    month = next((w for w in windows if w.window == DEGRADED_WINDOW), None)
    return LiveStatus(
        version=summary.version,
        live_since=summary.live_since,
        updated_at=summary.updated_at,
        last_forecast_at=summary.last_forecast_at,
        skill=month.mae_ratio if month else None,
        windows=windows,
    )


def judged_window(live: LiveStatus | None) -> tuple[LiveWindowStatus | None, str]:
    """The served version's forecasts of the last 30 days, and how a message names them: its own window while
    it is younger than 30 days (the version it replaced is not its fault: a retrain must be able to clear the
    alarm), else the 30-day window, which then holds it alone."""
    if live is None:
        return None, "over 30 days"
    windows = {w.window: w for w in live.windows}
    if live.live_since and live.updated_at and VERSION_WINDOW in windows:
        since = datetime.fromisoformat(live.live_since)
        if since > datetime.fromisoformat(live.updated_at) - DEGRADED_SPAN:
            return windows[VERSION_WINDOW], f"since version {live.version} went live ({live.live_since})"
    return windows.get(DEGRADED_WINDOW), "over 30 days"


def degraded_verdict(live: LiveStatus | None) -> Verdict:
    """Whether the served model has fallen behind, on its live record of the last 30 days."""
    month, span = judged_window(live)
    if month is None or month.scored == 0:
        return "Unknown", "NoTrackRecord", "no served forecast has been scored yet (is `makeusrich track` running?)"
    ratio, p = month.mae_ratio, month.dm_pvalue
    if ratio is not None and ratio > 1.0 and p is not None and p < DEGRADED_P:
        return (
            "True",
            "WorseThanPersistence",
            f"{span} its MAE is {ratio:.4f} of persistence's (DM p {p:.3g}, {month.scored} forecasts)",
        )
    if month.coverage is not None and month.scored >= MIN_SCORED and month.coverage < MIN_COVERAGE:
        nominal = f"{month.coverage_nominal:.0%} " if month.coverage_nominal is not None else ""
        return (
            "True",
            "RangesTooNarrow",
            f"{span} its {nominal}range held {month.coverage:.1%} of {month.scored} closes (below {MIN_COVERAGE:.0%})",
        )
    skill = f"MAE {ratio:.4f} of persistence's" if ratio is not None else "no MAE ratio yet"
    return "False", "LiveSkillHolds", f"{span}: {skill} on {month.scored} forecasts"
