"""How the dashboard writes numbers, times and skill for a person: pure functions, no I/O, no NiceGUI. Times are
shown in the viewer's time zone, which the page learns from the browser."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd

from makeusrich.pair import PromotionSpec
from makeusrich.store import ESTIMATOR_NAMES, Directional, ModelMetadata, RangeCoverage, Score

SIGNIFICANCE = 0.05
"""Diebold-Mariano p-value under which a difference from persistence counts as more than noise."""


KIND_NAMES = {"lstm": "LSTM", "baseline": "Baseline"}
"""The served model's kind, as the dashboard names it (the baseline: persistence with volatility ranges)."""

Tone = Literal["positive", "negative", "warning", "info", "neutral"]


def price_decimals(price: float | None, significant: int = 6) -> int:
    """Decimals that show `significant` digits of a price, at least 2 and at most 8: 43,210.12 but 0.00001235.

    Chosen once per pair from its last price, so every price on a card lines up."""
    if price is None or not math.isfinite(price) or price == 0:
        return 2
    integer_digits = math.floor(math.log10(abs(price))) + 1
    return max(2, min(8, significant - integer_digits))


def format_price(value: float | None, decimals: int) -> str:
    """Thousands separators and a fixed number of decimals; an em dash for what is unknown."""
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:,.{decimals}f}"


def format_change(change: float | None) -> str:
    """A relative change as a signed percentage, with more decimals for the small moves forecasts predict."""
    if change is None or not math.isfinite(change):
        return "—"
    percent = change * 100
    decimals = 3 if abs(percent) < 1 else 2
    return f"{percent:+.{decimals}f}%"


def change_tone(change: float | None) -> Tone:
    if change is None or not math.isfinite(change) or change == 0:
        return "neutral"
    return "positive" if change > 0 else "negative"


def format_ratio(ratio: float | None) -> str:
    return "—" if ratio is None or not math.isfinite(ratio) else f"{ratio:.3f}"


def format_pvalue(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def zone(name: str | None) -> ZoneInfo:
    """The viewer's time zone from its IANA name; UTC when the browser sent none or an unknown one."""
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def parse_time(value: str | datetime | pd.Timestamp | None) -> datetime | None:
    """An aware UTC datetime from an ISO text (with Z), a datetime or a Timestamp; None if it is not one."""
    if value is None:
        return None
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def format_time(value: str | datetime | pd.Timestamp | None, tz: str | None, seconds: bool = False) -> str:
    """Local time with the zone's abbreviation, such as 2022-06-15 02:00 CEST."""
    moment = parse_time(value)
    if moment is None:
        return "—"
    return moment.astimezone(zone(tz)).strftime("%Y-%m-%d %H:%M:%S %Z" if seconds else "%Y-%m-%d %H:%M %Z")


def format_age(value: str | datetime | pd.Timestamp | None, now: datetime | None = None) -> str:
    """How long ago, in the largest unit that fits: 'just now', '5 min ago', '3 h ago', '12 days ago'."""
    moment = parse_time(value)
    if moment is None:
        return ""
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    if seconds < 0:
        return "in the future"
    if seconds < 60:
        return "just now"
    if seconds >= 86_400:
        days = int(seconds // 86_400)
        return f"{days} day{'s' if days != 1 else ''} ago"
    return f"{int(seconds // 3_600)} h ago" if seconds >= 3_600 else f"{int(seconds // 60)} min ago"


def version_time(version: str | None) -> datetime | None:
    """The UTC time a version name encodes (20261126T150000Z)."""
    if not version:
        return None
    try:
        return datetime.strptime(version, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def format_direction(direction: Directional | None) -> str:
    """Directional accuracy with its 95% Wilson interval: 54.2% (45.3-62.8%)."""
    if direction is None:
        return "—"
    low, high = direction.wilson_low * 100, direction.wilson_high * 100
    return f"{direction.accuracy * 100:.1f}% ({low:.1f}-{high:.1f}%)"


def format_coverage(found: RangeCoverage) -> str:
    """A range's coverage with its 95% Wilson interval: 88.6% (86.9-90.1%)."""
    return f"{found.rate:.1%} ({found.wilson_low * 100:.1f}-{found.wilson_high * 100:.1f}%)"


@dataclass(frozen=True)
class Verdict:
    text: str
    tone: Tone


def verdict(split: Score | None, kind: str | None = None) -> Verdict:
    """One honest sentence about a split's MAE ratio: 'beats' only when the Diebold-Mariano test says the
    difference is unlikely to be noise. The baseline is persistence by design, and says so."""
    if kind == "baseline":
        return Verdict("persistence, by design", "neutral")
    if split is None or split.rel_mae is None:
        return Verdict("skill not measured", "neutral")
    significant = split.dm_pvalue is not None and split.dm_pvalue < SIGNIFICANCE
    if split.rel_mae < 1:
        if significant:
            return Verdict("beats persistence", "positive")
        return Verdict("no clear edge over persistence", "neutral")
    if split.rel_mae > 1 and significant:
        return Verdict("worse than persistence", "negative")
    return Verdict("no better than persistence", "warning")


def training_line(meta: ModelMetadata) -> str:
    """How a version was made, in one line: an LSTM's epochs, or the baseline's fit (no epochs)."""
    training = meta.training
    took = f" in {training.total_seconds:.0f} s" if training.total_seconds is not None else ""
    if meta.kind == "baseline":
        estimator = ESTIMATOR_NAMES[meta.baseline.estimator] + " " if meta.baseline else ""
        return f"baseline fitted ({estimator}volatility){took} on {meta.source} candles"
    start = f", from the weights of {training.warm_from}" if training.warm_from else ""
    return f"{training.epochs} epochs (best {training.best_epoch}){took} on {meta.source} candles{start}"


def promotion_rules(spec: PromotionSpec) -> str:
    """The gates a new LSTM passes to replace the served version, in one line (all judged on its test hours)."""
    return (
        f"test MAE ≤ {spec.max_relative_mae:g} times persistence's; widest range's coverage within "
        f"{spec.coverage_tolerance:g} of its level; not significantly worse than the served version on hours neither "
        "used"
    )
