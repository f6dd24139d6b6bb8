"""ECharts options for the pair page, as plain dicts (served by NiceGUI's bundled ECharts, no CDN).

Axes are categories labelled in the viewer's time zone, each candle by the moment it closes, so the forecast
sits on its own future slots after the last candle. Keys starting with ':' hold JavaScript that NiceGUI
evaluates in the browser (number formats).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pandas as pd

from makeusrich.market.candles import close_moments
from makeusrich.ui.backtest import Backtest
from makeusrich.ui.view import parse_time, zone

UP, DOWN, FORECAST, MUTED = "#16a34a", "#dc2626", "#2563eb", "#9ca3af"
ACTUAL, PERSISTENCE = "#475569", "#f59e0b"


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


def _number_js(decimals: int) -> str:
    return (
        "(v) => (v === null || v === undefined || Number.isNaN(Number(v))) ? '—' : Number(v).toLocaleString("
        f"undefined, {{minimumFractionDigits: {decimals}, maximumFractionDigits: {decimals}}})"
    )


def _axis_js() -> str:
    return "(v) => Number(v).toLocaleString(undefined, {maximumFractionDigits: 6})"


def time_labels(times: Sequence[Any], tz: str | None, daily: bool = False) -> list[str]:
    zone_info = zone(tz)
    pattern = "%Y-%m-%d" if daily else "%m-%d %H:%M"
    labels = []
    for value in times:
        moment = parse_time(value)
        labels.append(moment.astimezone(zone_info).strftime(pattern) if moment else "")
    return labels


def _base(decimals: int) -> dict[str, Any]:
    return {
        "animation": False,
        "backgroundColor": "transparent",
        "grid": {"left": 8, "right": 12, "top": 36, "bottom": 56, "containLabel": True},
        "tooltip": {"trigger": "axis", "axisPointer": {"type": "cross"}, ":valueFormatter": _number_js(decimals)},
        "legend": {"top": 0, "textStyle": {"color": MUTED}},
        "yAxis": {
            "scale": True,
            "axisLabel": {"color": MUTED, ":formatter": _axis_js()},
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
) -> dict[str, Any]:
    """Candlesticks of recent candles and the forecast drawn on the slots after the last one, each candle
    labelled by the moment it closes (`forecast_times` are closes too)."""
    daily = interval.endswith(("d", "w"))
    closes = list(close_moments(candles["open_time"], interval))
    labels = time_labels(closes, tz, daily) + time_labels(list(forecast_times), tz, daily)
    bars = [
        [round(float(o), 10), round(float(c), 10), round(float(lo), 10), round(float(h), 10)]
        for o, c, lo, h in zip(candles["open"], candles["close"], candles["low"], candles["high"], strict=True)
    ]
    ahead: list[float | None] = [None] * len(bars)
    if forecast and bars:
        ahead[-1] = bars[-1][1]
        ahead += [float(x) for x in forecast]
    options = _base(decimals)
    options["xAxis"] = {
        "type": "category",
        "data": labels,
        "boundaryGap": True,
        "axisLabel": {"color": MUTED},
    }
    options["dataZoom"][0]["startValue"] = max(0, len(labels) - 120)
    options["dataZoom"][1]["startValue"] = max(0, len(labels) - 120)
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
    return options


def backtest_chart(result: Backtest, tz: str | None, decimals: int, interval: str) -> dict[str, Any]:
    """Actual closes, the model's one-step forecasts and persistence's over the test split."""
    options = _base(decimals)
    options["xAxis"] = {
        "type": "category",
        "data": time_labels(result.times, tz, interval.endswith(("d", "w"))),
        "axisLabel": {"color": MUTED},
    }
    options["series"] = [
        line("Actual close", result.actual, ACTUAL, 2),
        line("Model forecast", result.predicted, FORECAST, 1.5),
        line("Persistence (last close)", result.persistence, PERSISTENCE, 1.5, dashed=True),
    ]
    return options


def error_chart(result: Backtest, tz: str | None, decimals: int, interval: str) -> dict[str, Any]:
    """Cumulative absolute error of the model and of persistence: the MAE ratio, drawn as it builds up."""
    model, base = 0.0, 0.0
    model_sum, base_sum = [], []
    for actual, predicted, last in zip(result.actual, result.predicted, result.persistence, strict=True):
        model += abs(predicted - actual)
        base += abs(last - actual)
        model_sum.append(round(model, 8))
        base_sum.append(round(base, 8))
    options = _base(decimals)
    options["dataZoom"] = []
    options["grid"]["bottom"] = 8
    options["xAxis"] = {
        "type": "category",
        "data": time_labels(result.times, tz, interval.endswith(("d", "w"))),
        "axisLabel": {"color": MUTED},
    }
    options["series"] = [
        line("Model: cumulative |error|", model_sum, FORECAST, 2),
        line("Persistence: cumulative |error|", base_sum, PERSISTENCE, 2, dashed=True),
    ]
    return options
