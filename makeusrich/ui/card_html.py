"""A pair's card as one HTML string, with its sparkline: 50 cards are then 50 elements for NiceGUI to build and
send, not 2,000. Every value is escaped."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from html import escape

from makeusrich.ui.badges import badges, live_line, run_progress
from makeusrich.ui.card import PairState
from makeusrich.ui.format import (
    KIND_NAMES,
    Tone,
    change_tone,
    format_age,
    format_change,
    format_direction,
    format_price,
    format_ratio,
    format_time,
    price_decimals,
    verdict,
)


def sparkline(closes: Sequence[float], forecast: Sequence[float] = (), width: int = 160, height: int = 36) -> str:
    """An inline SVG of recent closes and the forecast after them: 50 of these cost less than one canvas chart."""
    points = [c for c in closes if math.isfinite(c)]
    ahead = [f for f in forecast if math.isfinite(f)]
    if len(points) < 2:
        return f'<svg width="{width}" height="{height}" role="img" aria-label="no price history"></svg>'
    values = points + ahead
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    total = len(values) - 1
    pad = 2

    def xy(i: int, v: float) -> str:
        x = pad + (width - 2 * pad) * i / total
        y = pad + (height - 2 * pad) * (1 - (v - low) / span)
        return f"{x:.1f},{y:.1f}"

    past = " ".join(xy(i, v) for i, v in enumerate(points))
    svg = [
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        'aria-label="recent closes and forecast">',
        f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{past}"/>',
    ]
    if ahead:
        future = " ".join(xy(len(points) - 1 + i, v) for i, v in enumerate([points[-1], *ahead]))
        color = "#16a34a" if ahead[0] >= points[-1] else "#dc2626"
        svg.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="2" stroke-dasharray="3 2" points="{future}"/>'
        )
    return "".join([*svg, "</svg>"])


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _stat(label: str, value: str, tone: Tone = "neutral", note: str = "") -> str:
    extra = f'<div class="mur-sub">{_e(note)}</div>' if note else ""
    return (
        f'<div class="mur-stat"><div class="mur-caps">{_e(label)}</div>'
        f'<div class="mur-num mur-{tone}">{_e(value)}</div>{extra}</div>'
    )


def card_html(state: PairState, tz: str | None, now: datetime | None = None) -> str:
    """A pair's card as one HTML string: 50 cards are then 50 elements for NiceGUI to build and send, not 2,000.
    Every value is escaped; the whole card links to the pair's page (NiceGUI navigates without a reload)."""
    s = state
    decimals = price_decimals(s.last_close)
    where = f" · {s.namespace}" if s.namespace != "default" else ""
    chips = "".join(
        f'<span class="mur-badge mur-{b.tone}" title="{_e(b.tooltip)}">{_e(b.text)}</span>' for b in badges(s, now)
    )
    parts = [
        f'<a class="pair-card mur-card" href="/pair/{_e(s.namespace)}/{_e(s.name)}" data-pair="{_e(s.key)}">',
        '<div class="mur-row mur-top"><div class="mur-min">',
        f'<div class="mur-title">{_e(s.symbol)}</div>',
        f'<div class="mur-sub">{_e(s.name)} · {_e(s.interval)}{_e(where)}</div>',
        f'</div><div class="mur-badges">{chips}</div></div>',
    ]
    if s.loading:
        parts.append('<div class="mur-sub">Loading…</div></a>')
        return "".join(parts)
    last = f"last close · {format_time(s.last_close_time, tz)}" if s.last_close_time else "no candles"
    last += f" · {s.offline}" if s.offline else ""
    parts += [
        '<div class="mur-row mur-price-row"><div>',
        f'<div class="mur-price">{_e(format_price(s.last_close, decimals))}</div><div class="mur-sub">{_e(last)}</div>',
        f'</div><div class="mur-spark">{sparkline(s.closes, s.forecast, width=120)}</div></div>',
    ]
    ahead = s.forecast_times[0] if s.forecast_times else None
    next_price = format_price(s.forecast[0] if s.forecast else None, decimals)
    test = s.skill.test if s.skill else None
    validation = s.skill.validation if s.skill else None
    say = verdict(test, s.kind)
    spread = s.forecast_range()
    note = format_time(ahead, tz) if ahead else ""
    if spread is not None:
        low, high, nominal = spread
        note += f" · {nominal:.0%}: {format_price(low, decimals)} to {format_price(high, decimals)}"
    parts += [
        '<div class="mur-row mur-stats">',
        _stat("Forecast next close", next_price, note=note),
        _stat("Expected change", format_change(s.change), change_tone(s.change)),
        "</div>",
        '<div class="mur-caps"><span class="mur-dim">Skill vs persistence</span>',
        f'<span class="mur-verdict mur-{say.tone}">{_e(say.text)}</span></div>',
        '<div class="mur-row mur-stats">',
        _stat("MAE ratio val", format_ratio(validation.rel_mae if validation else None)),
        _stat("MAE ratio test", format_ratio(test.rel_mae if test else None)),
        _stat("Direction (test)", format_direction(test.directional if test else None)),
        "</div>",
        f'<div class="mur-sub" data-live>{_e(live_line(s))}</div>',
        f'<div class="mur-sub" data-after-fees>{_e(s.after_fees or "After fees: not measured for this version")}</div>',
    ]
    version = s.served_version or s.promoted_version
    model, title = "no model served", ""
    if version:
        model = f"{KIND_NAMES.get(s.kind or '', 'model')} {version} · trained {format_age(s.trained_at, now) or '—'}"
        title = f"trained at {format_time(s.trained_at, tz)}" if s.trained_at else ""
    parts.append(f'<div class="mur-foot" title="{_e(title)}">{_e(model)}</div>')
    if s.run is not None and s.run.state == "training":
        parts.append(f'<div class="mur-progress" role="status">Training: {_e(run_progress(s.run))}</div>')
    parts += [f'<div class="mur-error" role="alert">⚠ {_e(error)}</div>' for error in s.errors]
    return "".join([*parts, "</a>"])
