"""The live track record as a pair's status carries it, and the condition that calls it Degraded from the live
decisions (makeusrich.scoring.sequential): one definition for the operator (status.live and the condition) and
the dashboard (the card and its badge)."""

from __future__ import annotations

from typing import Literal

from makeusrich.pair import LiveDecision, LiveStatus, LiveWindowStatus
from makeusrich.scoring.decision import headline
from makeusrich.scoring.sequential import (
    DEGRADED_COVERAGE,
    DEGRADED_POINT,
    DEGRADED_RANGE,
    ROLLBACK_POINT,
    ROLLBACK_RANGE,
)
from makeusrich.store import LiveWindow, TrackSummary

Verdict = tuple[Literal["True", "False", "Unknown"], str, str]  # a condition's status, reason and message
DEGRADED_WINDOW = "30d"
VERSION_WINDOW = "version"
DEGRADED_REASONS = {
    DEGRADED_POINT: "WorseThanBaseline",
    DEGRADED_RANGE: "RangesWorseThanBaseline",
    DEGRADED_COVERAGE: "RangesTooNarrow",
}
RANGES_TOO_NARROW = DEGRADED_REASONS[DEGRADED_COVERAGE]
"""The Degraded reason a recalibration answers: the widest range misses more than it promises."""
LABELS = {
    DEGRADED_POINT: "its point forecast against persistence's",
    DEGRADED_RANGE: "its ranges against the baseline's",
    DEGRADED_COVERAGE: "its widest range's misses",
    ROLLBACK_POINT: "its point forecast against the version it replaced",
    ROLLBACK_RANGE: "its ranges against the version it replaced",
}


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
    """track.json as the status carries it: each window's headline numbers and the live decisions (the full scores
    stay in the store)."""
    windows = [live_window(w) for w in summary.windows]
    month = next((w for w in windows if w.window == DEGRADED_WINDOW), None)
    return LiveStatus(
        version=summary.version,
        live_since=summary.live_since,
        updated_at=summary.updated_at,
        last_forecast_at=summary.last_forecast_at,
        skill=month.mae_ratio if month else None,
        after_fees=live_headline(summary),
        windows=windows,
        decisions=summary.decisions,
        shadows=summary.shadows,
    )


def live_headline(summary: TrackSummary) -> str | None:
    """Whether following the served version since it went live made money after fees, in one line with the hours it
    rests on; None before a day of them was scored."""
    value = summary.decision
    if value is None:
        return None
    return headline(value.metrics, f"live to {value.through[:16].replace('T', ' ')} UTC")


def amount(value: float) -> str:
    """An e-detector's statistic for people: whole numbers once large, two digits when small."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def compared(decision: LiveDecision) -> str | None:
    """The two sides of a decision in words: the served version's miss rate against the promise, or its mean capped
    loss against the comparator's."""
    if decision.served is None or decision.other is None:
        return None
    if decision.decision == DEGRADED_COVERAGE:
        return f"it missed {decision.served:.1%} of closes ({decision.other:.1%} promised)"
    return f"mean loss {decision.served:.3f} vs {decision.other:.3f} ({decision.against})"


def evidence_line(decision: LiveDecision) -> str:
    """One decision's evidence in words: what it compares, its statistic against its threshold, and on what."""
    said = compared(decision)
    return (
        f"{LABELS[decision.decision]}: evidence {amount(decision.statistic)} of the {decision.threshold:,.0f} that "
        f"decides, on {decision.forecasts} forecasts{f', {said}' if said else ''}"
    )


def degraded_since(live: LiveStatus | None) -> str | None:
    """When the current Degraded episode began (the origin at which its first decision fired), or None."""
    fired = [d.since for d in live.decisions if d.on and d.since and d.decision in DEGRADED_REASONS] if live else []
    return min(fired, default=None)


def degraded_verdict(live: LiveStatus | None) -> Verdict:
    """Whether the served model has fallen behind, by the live decisions on its own run (makeusrich.scoring.sequential:
    checked after every forecast, with a 1% chance per decision of a false alarm within 90 days)."""
    judged = [d for d in live.decisions if d.decision in DEGRADED_REASONS] if live else []
    if live is None or not judged:
        return "Unknown", "NoTrackRecord", "no served forecast has been scored yet (is `makeusrich track` running?)"
    span = f"since version {live.version} went live ({live.live_since})"
    fired = [d for d in judged if d.on]
    if fired:
        worst = max(fired, key=lambda d: d.share)
        return "True", DEGRADED_REASONS[worst.decision], f"{span}, {evidence_line(worst)}"
    strongest = max(judged, key=lambda d: d.share)
    return "False", "LiveSkillHolds", f"{span}, the strongest evidence is {evidence_line(strongest)}"
