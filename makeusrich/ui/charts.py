"""ECharts options for the pair page, as plain dicts (served by NiceGUI's bundled ECharts, no CDN).

Axes are categories labelled in the viewer's time zone, each candle by the moment it closes, so the forecast
sits on its own future slots after the last candle. Keys starting with ':' hold JavaScript that NiceGUI
evaluates in the browser (number formats).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from itertools import accumulate
from typing import Any

import numpy as np
import pandas as pd

from makeusrich.market import close_moments
from makeusrich.scoring import decision
from makeusrich.ui.backtest import Backtest
from makeusrich.ui.format import parse_time, zone
from makeusrich.ui.track import TrackSeries

UP, DOWN, FORECAST, MUTED = "#16a34a", "#dc2626", "#2563eb", "#9ca3af"
ACTUAL, PERSISTENCE = "#475569", "#f59e0b"
RANGE = "rgba(37, 99, 235, 0.3)"
AXIS_JS = "(v) => Number(v).toLocaleString(undefined, {maximumFractionDigits: 6})"


def line(name: str, data: Sequence[float | None], color: str, width: float, dashed: bool = False) -> dict[str, Any]:
    """One line series without point markers."""
    style: dict[str, Any] = {"width": width, "color": color, **({"type": "dashed"} if dashed else {})}
    return {
        "name": name,
        "type": "line",
        "data": data,
        "showSymbol": False,
        "lineStyle": style,
        "itemStyle": {"color": color},
    }


def band(name: str, low: Sequence[float | None], high: Sequence[float | None], color: str) -> list[dict[str, Any]]:
    """A shaded range: an invisible line at its low end and, stacked on it, an area as tall as the range
    (ECharts draws bands as stacked areas). The tooltip names the band once."""
    width = [None if lo is None or hi is None else round(hi - lo, 10) for lo, hi in zip(low, high, strict=True)]
    hidden = {"opacity": 0}
    common = {"type": "line", "stack": name, "showSymbol": False, "lineStyle": hidden, "connectNulls": False}
    return [
        {**common, "name": name, "data": list(low), "itemStyle": {"color": color}, "tooltip": {"show": False}},
        {**common, "name": name, "data": width, "areaStyle": {"color": color}, "itemStyle": {"color": color}},
    ]


def _number_js(decimals: int) -> str:
    return (
        "(v) => (v === null || v === undefined || Number.isNaN(Number(v))) ? '—' : Number(v).toLocaleString("
        f"undefined, {{minimumFractionDigits: {decimals}, maximumFractionDigits: {decimals}}})"
    )


def time_labels(times: Sequence[Any], tz: str | None, interval: str) -> list[str]:
    """Each time in the viewer's zone: the date alone for daily and weekly candles."""
    zone_info = zone(tz)
    pattern = "%Y-%m-%d" if interval.endswith(("d", "w")) else "%m-%d %H:%M"
    moments = (parse_time(value) for value in times)
    return [moment.astimezone(zone_info).strftime(pattern) if moment else "" for moment in moments]


def _base(decimals: int, labels: list[str]) -> dict[str, Any]:
    return {
        "animation": False,
        "backgroundColor": "transparent",
        "grid": {"left": 8, "right": 12, "top": 36, "bottom": 56, "containLabel": True},
        "tooltip": {"trigger": "axis", "axisPointer": {"type": "cross"}, ":valueFormatter": _number_js(decimals)},
        "legend": {"top": 0, "textStyle": {"color": MUTED}},
        "xAxis": {"type": "category", "data": labels, "axisLabel": {"color": MUTED}},
        "yAxis": {
            "scale": True,
            "axisLabel": {"color": MUTED, ":formatter": AXIS_JS},
            "splitLine": {"lineStyle": {"color": "rgba(128,128,128,0.15)"}},
        },
        "dataZoom": [{"type": "inside"}, {"type": "slider", "height": 18, "bottom": 8}],
    }


def candle_chart(
    candles: pd.DataFrame,
    forecast_times: Sequence[datetime],
    forecast: Sequence[float],
    tz: str | None,
    decimals: int,
    interval: str,
    ranges: Sequence[tuple[float, float, float]] = (),
) -> dict[str, Any]:
    """Candlesticks of recent candles and the forecast drawn on the slots after the last one, each candle
    labelled by the moment it closes (`forecast_times` are closes too), with its widest range as a band that
    opens from the last close. `ranges` holds (low, high, nominal) per forecast candle."""
    closes = list(close_moments(candles["open_time"], interval))
    labels = time_labels([*closes, *forecast_times], tz, interval)
    bars = [
        [round(float(o), 10), round(float(c), 10), round(float(lo), 10), round(float(h), 10)]
        for o, c, lo, h in zip(candles["open"], candles["close"], candles["low"], candles["high"], strict=True)
    ]
    ahead: list[float | None] = [None] * len(bars)
    if forecast and bars:
        ahead[-1] = bars[-1][1]
        ahead += [float(x) for x in forecast]
    options = _base(decimals, labels)
    options["xAxis"]["boundaryGap"] = True
    for zoom in options["dataZoom"]:
        zoom["startValue"] = max(0, len(labels) - 120)
    options["series"] = [
        {
            "name": "Candles",
            "type": "candlestick",
            "data": bars,
            "itemStyle": {"color": UP, "color0": DOWN, "borderColor": UP, "borderColor0": DOWN},
        },
        {
            "name": "Forecast",
            "type": "line",
            "data": ahead,
            "connectNulls": False,
            "symbol": "circle",
            "symbolSize": 7,
            "lineStyle": {"type": "dashed", "width": 2, "color": FORECAST},
            "itemStyle": {"color": FORECAST},
        },
    ]
    if ranges and bars and len(ranges) == len(forecast):
        pad: list[float | None] = [None] * (len(bars) - 1) + [bars[-1][1]]
        low = pad + [lo for lo, _, _ in ranges]
        high = pad + [hi for _, hi, _ in ranges]
        options["series"] += band(f"{ranges[0][2]:.0%} range", low, high, RANGE)
    return options


def forecasts_chart(
    times: Sequence[Any],
    actual: Sequence[float | None],
    forecast: Sequence[float | None],
    persistence: Sequence[float | None],
    ranged: tuple[Sequence[float | None], Sequence[float | None], float] | None,
    tz: str | None,
    decimals: int,
    interval: str,
    forecast_name: str = "Model forecast",
) -> dict[str, Any]:
    """Actual closes, a model's one-step forecasts and persistence's, and the model's (low, high, nominal) range."""
    options = _base(decimals, time_labels(times, tz, interval))
    options["series"] = [
        line("Actual close", actual, ACTUAL, 2),
        line(forecast_name, forecast, FORECAST, 1.5),
        line("Persistence (last close)", persistence, PERSISTENCE, 1.5, dashed=True),
    ]
    if ranged is not None:
        low, high, nominal = ranged
        options["series"] += band(f"{nominal:.0%} range", low, high, RANGE)
    return options


def backtest_chart(result: Backtest, tz: str | None, decimals: int, interval: str) -> dict[str, Any]:
    """The served version over its test split."""
    ranged = (result.low, result.high, result.nominal) if result.low and result.high and result.nominal else None
    return forecasts_chart(
        result.times, result.actual, result.predicted, result.persistence, ranged, tz, decimals, interval
    )


def error_chart(result: Backtest, tz: str | None, decimals: int, interval: str) -> dict[str, Any]:
    """Cumulative absolute error of the model and of persistence: the MAE ratio, drawn as it builds up."""

    def cumulative(forecast: list[float]) -> list[float]:
        errors = (abs(f - a) for f, a in zip(forecast, result.actual, strict=True))
        return [round(total, 8) for total in accumulate(errors)]

    options = _base(decimals, time_labels(result.times, tz, interval))
    options["dataZoom"] = []
    options["grid"]["bottom"] = 8
    options["series"] = [
        line("Model: cumulative |error|", cumulative(result.predicted), FORECAST, 2),
        line("Persistence: cumulative |error|", cumulative(result.persistence), PERSISTENCE, 2, dashed=True),
    ]
    return options


RULE_LINES = {
    decision.HOLD: (ACTUAL, False),
    decision.CASH: (MUTED, True),
    decision.SIGNAL: (FORECAST, False),
    decision.SIGNAL_DRIFT: (FORECAST, True),
    decision.RISK_TARGET: (UP, False),
    decision.RISK_TARGET_EWMA: (UP, True),
}


def equity_chart(result: Backtest, tz: str | None, interval: str) -> dict[str, Any]:
    """What 1 held by each decision rule became after fees over the test split, its baseline twin dashed."""
    found = result.decisions
    options = _base(4, time_labels(result.times, tz, interval))
    options["dataZoom"] = []
    options["grid"]["bottom"] = 8
    options["series"] = [
        line(
            decision.RULE_NAMES[rule],
            [round(float(v), 6) for v in np.exp(np.cumsum(found.returns[rule].log_returns))] if found else [],
            RULE_LINES[rule][0],
            2,
            dashed=RULE_LINES[rule][1],
        )
        for rule in decision.RULES
    ]
    return options


def track_chart(series: TrackSeries, tz: str | None, decimals: int, interval: str) -> dict[str, Any]:
    """The served forecasts against what happened, at the close each forecast: holes where an origin is a gap."""
    ranged = (series.low, series.high, series.nominal) if series.low and series.high and series.nominal else None
    return forecasts_chart(
        series.times,
        series.actual,
        series.forecast,
        series.persistence,
        ranged,
        tz,
        decimals,
        interval,
        forecast_name="Served forecast",
    )


def ratio_chart(times: Sequence[Any], ratios: Sequence[float | None], tz: str | None, interval: str) -> dict[str, Any]:
    """The rolling 7-day MAE ratio to persistence, with the line at 1 that the model must stay under."""
    options = _base(4, time_labels(times, tz, interval))
    options["dataZoom"] = []
    options["grid"]["bottom"] = 8
    ratio = line("MAE ratio, 7 days", ratios, FORECAST, 2)
    ratio["markLine"] = {"silent": True, "symbol": "none", "data": [{"yAxis": 1.0}], "lineStyle": {"color": MUTED}}
    options["series"] = [ratio]
    return options
