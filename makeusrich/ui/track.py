"""The pair page's track record, as pure functions of the stored rows and track.json: the windows' table, the
live decisions and the shadows beside the served version, the served forecasts against what happened (gaps left
as holes), and the rolling 7-day MAE ratio."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import pandas as pd

from makeusrich.contract import central_ranges
from makeusrich.scoring import LABELS, amount, compared
from makeusrich.store import TrackSummary
from makeusrich.store.track_schema import GAP, LIVE, level_columns
from makeusrich.ui.format import format_pvalue, format_ratio, format_time

WINDOW_NAMES = {"24h": "last 24 h", "7d": "last 7 days", "30d": "last 30 days", "version": "since this version"}


def window_rows(summary: TrackSummary) -> list[dict[str, str]]:
    """One table row per window: forecasts made and missed, and their skill once scored."""
    rows = []
    for w in summary.windows:
        point = w.point
        widest = w.ranges.ranges[0] if w.ranges and w.ranges.ranges else None
        direction = point.directional if point else None
        rows.append(
            {
                "window": WINDOW_NAMES.get(w.window, w.window),
                "made": f"{w.made:,}",
                "missed": f"{w.missed:,}",
                "scored": f"{w.scored:,}",
                "mae_ratio": format_ratio(point.rel_mae if point else None),
                "dm_p": format_pvalue(point.dm_pvalue if point else None),
                "direction": f"{direction.accuracy:.1%}" if direction else "—",
                "range": f"{widest.nominal:.0%} held {widest.rate:.1%}" if widest else "—",
            }
        )
    return rows


ROLES = {"replaced": "the version it replaced", "baseline": "the baseline"}


def decision_rows(summary: TrackSummary, tz: str | None) -> list[dict[str, str]]:
    """One row per live decision: what it compares, how far its evidence is towards acting, on how many forecasts."""
    rows = []
    for d in summary.decisions:
        rows.append(
            {
                "decision": d.decision,
                "what": LABELS[d.decision],
                "state": f"ON since {format_time(d.since, tz)}" if d.on else "off",
                "evidence": f"{amount(d.statistic)} of {d.threshold:,.0f} ({d.share:.2%})",
                "forecasts": f"{d.forecasts:,}",
                "compared": compared(d) or "—",
            }
        )
    return rows


def shadow_table_rows(summary: TrackSummary) -> list[dict[str, str]]:
    """The served version beside each shadow, on the same scored origins."""
    return [
        {
            "role": ROLES.get(s.role, s.role),
            "version": s.version,
            "scored": f"{s.scored:,}",
            "mae_ratio": format_ratio(s.mae_ratio),
            "pinball_ratio": format_ratio(s.pinball_ratio),
        }
        for s in summary.shadows
    ]


@dataclass(frozen=True)
class TrackSeries:
    """One point per origin, at the close its first step forecast: None where nothing is known (a gap, or a
    candle that has not closed)."""

    times: list[pd.Timestamp] = field(default_factory=list)
    actual: list[float | None] = field(default_factory=list)
    forecast: list[float | None] = field(default_factory=list)
    persistence: list[float | None] = field(default_factory=list)
    low: list[float | None] = field(default_factory=list)
    high: list[float | None] = field(default_factory=list)
    nominal: float | None = None
    gaps: int = 0


def _value(x: float) -> float | None:
    return None if pd.isna(x) else float(x)


def track_series(rows: pd.DataFrame) -> TrackSeries:
    first = rows[(rows["step"] == 1) & (rows["kind"].isin([LIVE, GAP]))].sort_values("origin")
    if first.empty:
        return TrackSeries()
    levels = [level for level, column in level_columns(first) if first[column].notna().any()]
    low = high = None
    nominal = None
    ranges = central_ranges(levels) if len(levels) >= 2 else []
    if ranges:
        lo, hi, nominal = ranges[0]
        low, high = level_columns(first)[lo][1], level_columns(first)[hi][1]
    live = first["kind"] == LIVE
    return TrackSeries(
        times=list(first["target"]),
        actual=[_value(v) for v in first["actual"]],
        forecast=[_value(v) if ok else None for v, ok in zip(first["forecast"], live, strict=True)],
        persistence=[_value(v) if ok else None for v, ok in zip(first["persistence"], live, strict=True)],
        low=[_value(v) for v in first[low]] if low else [],
        high=[_value(v) for v in first[high]] if high else [],
        nominal=nominal,
        gaps=int((~live).sum()),
    )


def rolling_ratio(rows: pd.DataFrame, days: int = 7) -> tuple[list[pd.Timestamp], list[float | None]]:
    """The MAE ratio to persistence over the `days` before each scored target: how the live skill moves."""
    scored = rows[(rows["kind"] == LIVE) & rows["actual"].notna()].sort_values("target")
    if scored.empty:
        return [], []
    frame = pd.DataFrame(
        {"model": scored["error"].abs().to_numpy(), "persistence": scored["persistence_error"].abs().to_numpy()},
        index=pd.DatetimeIndex(scored["target"]),
    )
    sums = frame.rolling(timedelta(days=days)).sum()
    ratio = np.where(
        sums["persistence"] > 0, sums["model"] / sums["persistence"].where(sums["persistence"] > 0), np.nan
    )
    return list(frame.index), [None if np.isnan(v) else round(float(v), 6) for v in ratio]
