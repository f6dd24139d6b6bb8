"""The pair page's evidence: skill on held-out data next to every baseline, the ranges next to the naive ones,
whether following it would have made money after fees, the stored walk-forward backtest, the live track record, and
the test split recomputed by the served model."""

from __future__ import annotations

from typing import Any

from nicegui import ui

from makeusrich.pair_sources import describe_error
from makeusrich.scoring import COLUMNS, decision, interval_ratio_line, table_rows
from makeusrich.store import BacktestResult, DecisionMetrics, ModelMetadata, TrackSummary
from makeusrich.ui.backtest import Backtest
from makeusrich.ui.card import PairState
from makeusrich.ui.charts import backtest_chart, equity_chart, error_chart, ratio_chart, track_chart
from makeusrich.ui.components import TONE_TEXT, stat
from makeusrich.ui.format import (
    KIND_NAMES,
    format_direction,
    format_price,
    format_ratio,
    format_time,
)
from makeusrich.ui.frame import Tab
from makeusrich.ui.tables import SkillRow, edge_sentence, range_rows, rule_rows, skill_rows
from makeusrich.ui.track import decision_rows, rolling_ratio, shadow_table_rows, track_series, window_rows

SKILL_EXPLAINED = (
    "Ratio: the model's mean absolute error divided by persistence's (next close = last close) on the same "
    "points; below 1 is better. DM p: the Diebold-Mariano test's p-value for the difference from persistence; "
    "above 0.05 the difference may be noise. Direction: share of moves whose sign was called right, with its 95% "
    "Wilson interval. Val: the hours that early-stopped the model. Test: the newest hours, which tuned nothing "
    "but judged the promotion: a promoted version's test numbers lean its way, so the unbiased report is the live "
    "track record below."
)


RANGES_EXPLAINED = (
    "Covers: share of closes that fell inside the range, with its 95% Wilson interval; a calibrated 90% range "
    "covers about 90%. Width: the range's mean half-width in % of the price. Interval score (Winkler: width plus "
    "a penalty for each miss) and pinball loss (all quantile levels) are ratios to EWMA volatility's on the same "
    "points; below 1 is better. Climatology is the training returns' fixed range; EWMA volatility (RiskMetrics, "
    "lambda 0.94) scales it by the recent volatility."
)


def skill_section(state: PairState, version: str | None, meta: ModelMetadata | None) -> None:
    """The version's skill on held-out data next to every baseline, in words and in tables, and its ranges."""
    with ui.card().classes("w-full"):
        with ui.row().classes("w-full items-center justify-between"):
            ui.label("Skill on held-out data").classes("text-lg font-semibold")
            if version:
                kind = f"{KIND_NAMES[meta.kind]} " if meta is not None else ""
                ui.label(f"{kind}version {version}").classes("text-sm muted").mark("served-kind")
        if meta is not None:
            edge = edge_sentence(meta)
            ui.label(edge.text).classes(f"text-base {TONE_TEXT[edge.tone]}").mark("edge")
            if meta.promotion.champion is not None or meta.promotion.reason:
                ui.label(f"Promotion: {meta.promotion.reason}").classes("text-sm muted").mark("promotion-reason")
        rows = skill_rows(meta)
        if rows:
            skill_table(rows)
        elif state.skill is not None and state.skill.test is not None:
            test = state.skill.test
            ui.label(
                f"Test MAE ratio {format_ratio(test.rel_mae)}, direction {format_direction(test.directional)} (the "
                "baselines' numbers are in the version's metadata.json, which this dashboard cannot read: "
                "start it with --store)"
            )
        else:
            ui.label("No measured model yet.").classes("muted")
        ui.label(SKILL_EXPLAINED).classes("text-xs muted")
        ranged = range_rows(meta)
        if ranged:
            ui.label("Forecast ranges").classes("text-lg font-semibold mt-2")
            range_table(ranged)
            ui.label(RANGES_EXPLAINED).classes("text-xs muted")


AFTER_FEES_EXPLAINED = (
    "Two rules turn each one-step forecast into a spot position for the next candle (no leverage, no shorting), "
    "and every trade pays the pair's fee (spec.decision). Signal holds the pair when the forecast beats the fees' "
    "round trip; risk target holds the share that the forecast's widest range says keeps the training split's "
    "volatility. Each is set beside holding, cash and its baseline twin on the same candles: the same rule fed by "
    "the training drift, or by EWMA volatility's range (the ranges' economic value). Against holding and against "
    "its twin, each rule's number is how much more (or, below 0, less) it ends with, with its 95% interval from a "
    "stationary block bootstrap (blocks of a day, 2,000 resamples) and the p-value; where the interval holds 0, "
    "luck can explain the difference. Returns, time invested and fees are what happened on those candles."
)
RULE_COLUMNS = [
    ("rule", "rule"),
    ("what", "what it does"),
    ("return", "return after fees"),
    ("invested", "time invested"),
    ("fees", "fees paid"),
    ("vs_holding", "vs holding (95%)"),
    ("sharpe_vs_holding", "Sharpe vs holding (95%)"),
    ("vs_twin", "vs its twin (95%)"),
]


def rule_table(metrics: DecisionMetrics, mark: str) -> None:
    columns = [{"name": n, "label": label, "field": n, "align": "left"} for n, label in RULE_COLUMNS]
    ui.table(columns=columns, rows=rule_rows(metrics), row_key="rule").props("flat dense wrap-cells").classes(
        "w-full tabular"
    ).mark(mark)


def after_fees_section(state: PairState, meta: ModelMetadata | None) -> Any:
    """Would following the served version have made money after fees: one sentence (live once a day of its
    forecasts is scored, else the test split), the test split's table, and a box the equity curves go in once the
    test split is recomputed. Returns that box."""
    recorded = meta.metrics.test.decision if meta is not None else None
    with ui.card().classes("w-full"):
        ui.label("Would following it have made money?").classes("text-lg font-semibold")
        live = state.live.after_fees if state.live else None
        said = [text for text in (live, decision.headline(recorded, "test split") if recorded else None) if text]
        if not said:
            why = "this version was measured before the project answered it" if meta else "no measured model yet"
            ui.label(f"Not known: {why}.").classes("text-sm muted").mark("after-fees-none")
        for text in said:
            ui.label(text + ".").classes("text-base").mark("after-fees")
        if recorded is not None:
            rule_table(recorded, "after-fees-table")
        box = ui.column().classes("w-full gap-0").mark("equity")
        ui.label(AFTER_FEES_EXPLAINED).classes("text-xs muted")
    return box


def equity(tab: Tab, result: Backtest | str, box: Any, interval: str) -> None:
    """The test split's equity curves of every rule and twin, recomputed now from the served model's forecasts."""
    box.clear()
    with box:
        if isinstance(result, str) or result.decisions is None:
            return
        ui.label("What 1 held on the test split became, after fees (twins dashed)").classes("caps")
        ui.echart(equity_chart(result, tab.tz, interval)).classes("w-full h-72").mark("equity-chart")
        if result.decision_agrees is False:
            ui.label(
                "Recomputed now, the rules' returns differ from those recorded at training: the candles read now "
                "differ from the trainer's."
            ).classes("text-sm text-warning")


def skill_table(rows: list[SkillRow]) -> None:
    columns = [{"name": "name", "label": "Forecaster", "field": "name", "align": "left"}]
    for split in ("validation", "test"):
        short = "Val" if split == "validation" else "Test"
        columns += [
            {"name": f"{split}_mae", "label": f"{short} MAE", "field": f"{split}_mae"},
            {"name": f"{split}_ratio", "label": f"{short} ratio", "field": f"{split}_ratio"},
            {"name": f"{split}_direction", "label": f"{short} direction", "field": f"{split}_direction"},
            {"name": f"{split}_p", "label": f"{short} DM p", "field": f"{split}_p"},
        ]
    forecaster_table(columns, rows, "skill-table")


def forecaster_table(columns: list[dict[str, Any]], rows: list[SkillRow], mark: str) -> None:
    """One row per forecaster, the model's first."""
    table_rows = [{"name": row.name, **row.cells} for row in rows]
    ui.table(columns=columns, rows=table_rows, row_key="name").props("flat dense wrap-cells").classes(
        "w-full tabular"
    ).mark(mark)


def range_table(rows: list[SkillRow]) -> None:
    columns = [{"name": "name", "label": "Range forecaster", "field": "name", "align": "left"}]
    nominal = sorted(
        {key.split("_cov")[1] for row in rows for key in row.cells if "_cov" in key}, key=int, reverse=True
    )
    for split in ("validation", "test"):
        short = "Val" if split == "validation" else "Test"
        columns += [
            {"name": f"{split}_cov{n}", "label": f"{short} {n}% covers", "field": f"{split}_cov{n}"} for n in nominal
        ]
        columns += [
            {"name": f"{split}_width", "label": f"{short} {nominal[0]}% width", "field": f"{split}_width"},
            {"name": f"{split}_interval", "label": f"{short} interval score", "field": f"{split}_interval"},
            {"name": f"{split}_pinball", "label": f"{short} pinball", "field": f"{split}_pinball"},
        ]
    forecaster_table(columns, rows, "range-table")


def walk_forward(result: BacktestResult) -> None:
    """The stored walk-forward of the served version's settings: every fold, the losing ones too, and the pool."""
    pooled = result.pooled_point
    ui.label(
        f"{len(result.folds)} retrainings replayed, each on the {result.lookback_days} days before its cutoff, "
        f"forecasting the next {result.step_days:g} days it never saw ({result.source or 'candles'}); pooled over "
        f"{pooled.n:,} hours: MAE ratio {format_ratio(pooled.rel_mae)} to persistence."
    ).classes("text-sm")
    if line := interval_ratio_line(result.pooled_ranges):
        ui.label(line).classes("text-sm").mark("walk-forward-ratios")
    rows = table_rows(result)
    columns = [{"name": c, "label": c.replace("_", " "), "field": c} for c in COLUMNS]
    ui.table(columns=columns, rows=rows, row_key="fold").props("flat dense wrap-cells").classes("w-full tabular").mark(
        "walk-forward"
    )


def backtest(tab: Tab, result: Backtest, decimals: int, interval: str) -> None:
    ratio = format_ratio(result.ratio)
    recorded = format_ratio(result.recorded_ratio)
    with ui.row().classes("w-full gap-6"):
        stat("Windows", f"{result.n:,}")
        stat("Model MAE", format_price(result.mae, decimals))
        stat("Persistence MAE", format_price(result.persistence_mae, decimals))
        stat("MAE ratio (now)", ratio, "font-semibold")
        stat("MAE ratio (at training)", recorded)
        stat("Direction", "—" if result.direction is None else f"{result.direction.accuracy:.1%}")
        if result.coverage is not None and result.nominal is not None:
            stat(f"{result.nominal:.0%} range held", f"{result.coverage:.1%}")
    if result.agrees is True:
        text = f"Recomputed now from the served version {result.version}: matches the number recorded at training."
        ui.label(text).classes("text-sm text-positive").mark("backtest-agrees")
    elif result.agrees is False:
        ui.label(
            f"The recomputed ratio {ratio} differs from the recorded {recorded}: the candles read now differ from "
            "those the trainer used (a different source, or corrected exchange data)."
        ).classes("text-sm text-warning").mark("backtest-differs")
    with ui.element("div").classes("w-full grid gap-2 grid-cols-1 lg:grid-cols-3"):
        with ui.column().classes("w-full gap-0 lg:col-span-2"):
            ui.label("Actual close, the model's forecast and persistence's").classes("caps")
            ui.echart(backtest_chart(result, tab.tz, decimals, interval)).classes("w-full h-72").mark("backtest-chart")
        with ui.column().classes("w-full gap-0"):
            ui.label("Cumulative absolute error (lower is better)").classes("caps")
            ui.echart(error_chart(result, tab.tz, decimals, interval)).classes("w-full h-72").mark("error-chart")
    when = ""
    if result.times:
        when = f"{format_time(result.times[0], tab.tz)} to {format_time(result.times[-1], tab.tz)}"
    ui.label(f"One-step forecasts for {when}: data the model never saw while training or early stopping.").classes(
        "text-xs muted"
    )


DECISION_COLUMNS = [
    ("decision", "decision"),
    ("what", "compares"),
    ("state", "alarm"),
    ("evidence", "evidence of threshold"),
    ("forecasts", "forecasts"),
    ("compared", "served vs other"),
]
SHADOW_COLUMNS = [
    ("role", "beside"),
    ("version", "version"),
    ("scored", "scored"),
    ("mae_ratio", "MAE ratio (served / it)"),
    ("pinball_ratio", "pinball ratio"),
]
DECISIONS_EXPLAINED = (
    "Each decision bets on the served version's scored forecasts since it went live and acts when the evidence "
    "reaches its threshold: the chance of a false alarm within 90 days is at most 1% per decision, however often "
    "it is checked. Losses are capped and divided by the volatility known at each forecast. Degraded clears when "
    "the evidence falls below a hundredth of the threshold; a rollback serves the replaced version again."
)


def live_decisions(tab: Tab, summary: TrackSummary) -> None:
    """The decisions on the served version's run, and the shadows it is compared with."""
    if not summary.decisions:
        return
    ui.label("Live decisions").classes("caps")
    columns = [{"name": n, "label": label, "field": n, "align": "left"} for n, label in DECISION_COLUMNS]
    ui.table(columns=columns, rows=decision_rows(summary, tab.tz), row_key="decision").props(
        "flat dense wrap-cells"
    ).classes("w-full tabular").mark("track-decisions")
    if summary.shadows:
        columns = [{"name": n, "label": label, "field": n, "align": "left"} for n, label in SHADOW_COLUMNS]
        ui.table(columns=columns, rows=shadow_table_rows(summary), row_key="role").props("flat dense").classes(
            "w-full tabular"
        ).mark("track-shadows")
    ui.label(DECISIONS_EXPLAINED).classes("text-xs muted")


TRACK_COLUMNS = [
    ("window", "window"),
    ("made", "forecasts"),
    ("missed", "missed"),
    ("scored", "scored"),
    ("mae_ratio", "MAE ratio"),
    ("dm_p", "DM p"),
    ("direction", "direction"),
    ("range", "range"),
]


async def track_record(tab: Tab, key: str, state: PairState, decimals: int) -> None:
    """What the served models forecast at each close, scored once the candle closed: live, not a test split."""
    try:
        summary, rows = await tab.dashboard.track_record(key)
    except Exception as exc:
        ui.label(f"The track record cannot be read: {describe_error(exc)}").classes("text-sm text-negative")
        return
    if summary is None or rows is None or rows.empty:
        why = (
            "the candles are the bundled sample, which ends in 2022, so no candle closes to record a forecast at"
            if state.offline and "sample" in state.offline
            else "no forecast was recorded yet: `makeusrich track` records one after each candle close"
        )
        ui.label(f"No track record: {why}.").classes("text-sm muted").mark("track-empty")
        return
    since = f" since {format_time(summary.live_since, tab.tz)}" if summary.live_since else ""
    ui.label(
        f"Version {summary.version or '?'} has forecast live{since}; updated {format_time(summary.updated_at, tab.tz)}."
    ).classes("text-sm")
    columns = [{"name": n, "label": label, "field": n} for n, label in TRACK_COLUMNS]
    ui.table(columns=columns, rows=window_rows(summary), row_key="window").props("flat dense").classes(
        "w-full tabular"
    ).mark("track-windows")
    live_decisions(tab, summary)
    for value, mark, caption in (
        (summary.decision, "track-after-fees", "After fees since it went live"),
        (summary.replayed_decision, "replayed-after-fees", "After fees over the replayed hours (never live)"),
    ):
        if value is not None:
            where = "live" if mark == "track-after-fees" else "replayed"
            ui.label(f"{caption}, to {format_time(value.through, tab.tz)}").classes("caps")
            ui.label(decision.headline(value.metrics, where) + ".").classes("text-sm").mark(mark)
            rule_table(value.metrics, f"{mark}-table")
    series = track_series(rows)
    interval = state.interval or "1h"
    times, ratios = rolling_ratio(rows)
    with ui.element("div").classes("w-full grid gap-2 grid-cols-1 lg:grid-cols-3"):
        with ui.column().classes("w-full gap-0 lg:col-span-2"):
            ui.label("Served forecasts and what happened").classes("caps")
            ui.echart(track_chart(series, tab.tz, decimals, interval)).classes("w-full h-72").mark("track-chart")
        with ui.column().classes("w-full gap-0"):
            ui.label("MAE ratio to persistence, last 7 days (below 1 beats it)").classes("caps")
            ui.echart(ratio_chart(times, ratios, tab.tz, interval)).classes("w-full h-72").mark("track-ratio")
    gaps = f"; {series.gaps:,} missed origin(s) are holes in the line, never filled in" if series.gaps else ""
    ui.label(f"Each point is a forecast made when its previous candle closed{gaps}.").classes("text-xs muted")
