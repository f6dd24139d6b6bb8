"""A pair's page: price chart with the served forecast, skill against every baseline, a backtest recomputed by
the served model, the versions, the last training run and the settings."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from html import escape
from typing import Any

from nicegui import ui

from makeusrich.errors import MakeUsRichError
from makeusrich.pair import CurrencyPair, next_run
from makeusrich.pair_sources import describe_error
from makeusrich.store import ModelMetadata, Readable, RunState
from makeusrich.ui.backtest import Backtest
from makeusrich.ui.badges import badges, run_progress
from makeusrich.ui.card import PairState, condition
from makeusrich.ui.charts import candle_chart
from makeusrich.ui.components import TONE_TEXT, badge, error_line, notice, stat
from makeusrich.ui.evidence import (
    after_fees_section,
    backtest,
    equity,
    skill_section,
    track_record,
    walk_forward,
)
from makeusrich.ui.format import (
    Tone,
    change_tone,
    format_change,
    format_price,
    format_time,
    price_decimals,
    promotion_rules,
    training_line,
)
from makeusrich.ui.frame import Tab
from makeusrich.ui.state import wait_loaded
from makeusrich.ui.tables import change_rows, promotion_reason, version_rows

PHASE_TONES: dict[str, Tone] = {"Succeeded": "positive", "Failed": "negative", "Running": "info", "Pending": "info"}


async def page(tab: Tab, namespace: str, name: str) -> None:
    dash = tab.dashboard
    key = f"{namespace}/{name}"
    await wait_loaded(dash, 3.0)
    if key not in dash.states:
        notice(f"No pair {key}", "It may have been deleted, or lives in a namespace this dashboard does not read.")
        return
    top = ui.column().classes("w-full gap-2")
    with ui.card().classes("w-full"):
        ui.label("Price and forecast").classes("text-lg font-semibold")
        chart = ui.echart({}).classes("w-full h-80 sm:h-96").mark("price-chart")
        chart_note = ui.label().classes("text-xs muted")
    model_box = ui.column().classes("w-full gap-4")
    seen: dict[str, Any] = {"top": None, "model": None}

    def draw_top(state: PairState) -> None:
        top.clear()
        with top:
            header(tab, state)
        candles = dash.candles.get(key)
        if candles is not None and state.pair is not None:
            chart.options.clear()
            decimals = price_decimals(state.last_close)
            chart.options.update(
                candle_chart(
                    candles,
                    state.forecast_times,
                    state.forecast,
                    tab.tz,
                    decimals,
                    state.pair.spec.interval,
                    [r for step in range(len(state.forecast)) if (r := state.forecast_range(step))],
                )
            )
            chart.update()
            chart_note.text = (
                f"{len(candles)} candles, the last closing {format_time(state.last_close_time, tab.tz)}; the "
                "dashed line is the served model's forecast after it, the shaded band its calibrated range. Each "
                "candle is labelled by the time it "
                f"closes, in {tab.tz or 'UTC'}."
            )
        else:
            chart_note.text = "No candles to draw: " + (state.candle_error or "none were loaded yet")

    async def tick() -> None:
        state = dash.states.get(key)
        if state is None:
            return
        if (dash.revisions.get(key, 0), tab.tz) != seen["top"]:
            seen["top"] = (dash.revisions.get(key, 0), tab.tz)
            draw_top(state)
        model_id = (state.served_version, state.promoted_version, state.newest_version, tab.tz, state.status, state.run)
        if model_id != seen["model"]:
            seen["model"] = model_id
            model_box.clear()
            with model_box:
                await model_sections(tab, key, state)

    await tick()
    ui.timer(1.0, tick)


def header(tab: Tab, s: PairState) -> None:
    decimals = price_decimals(s.last_close)
    with ui.row().classes("w-full items-center gap-2"):
        ui.link("Pairs", "/").classes("text-sm")
        ui.icon("chevron_right", size="xs").classes("muted")
        ui.label(s.key).classes("text-sm muted")
    with ui.row().classes("w-full items-end justify-between gap-3"):
        with ui.column().classes("gap-0"):
            with ui.row().classes("items-center gap-2"):
                ui.label(s.symbol).classes("text-3xl font-semibold").mark("pair-title")
                ui.chip(s.interval or "?", color=None).props("dense outline")
            ui.label(f"{s.name} · namespace {s.namespace}").classes("text-sm muted")
        with ui.row().classes("gap-6 items-end"):
            stat("Last close", format_price(s.last_close, decimals), "text-2xl font-semibold")
            stat("Forecast next close", format_price(s.forecast[0] if s.forecast else None, decimals), "text-2xl")
            stat("Expected change", format_change(s.change), f"text-2xl {TONE_TEXT[change_tone(s.change)]}")
    with ui.row().classes("w-full gap-1"):
        for b in badges(s):
            badge(b.text, b.tone, b.tooltip)
    for error in s.errors:
        error_line(error, "pair-error")
    if tab.can_manage() and s.pair is not None:
        with ui.row().classes("gap-2"):
            ui.button("Edit", icon="edit", on_click=lambda: ui.navigate.to(f"/edit/{s.namespace}/{s.name}")).props(
                "outline no-caps"
            ).mark("edit")
            ui.button("Delete", icon="delete", on_click=lambda: confirm_delete(tab, s.key)).props(
                "outline color=negative no-caps"
            ).mark("delete")


async def model_sections(tab: Tab, key: str, state: PairState) -> None:
    dash = tab.dashboard
    record = dash.records.get(key)
    version = state.served_version or state.promoted_version
    history: dict[str, Readable] = {}
    history_error = None
    try:
        history = await dash.history(key)
    except Exception as exc:
        history_error = describe_error(exc)
    found = history.get(version) if version else None
    meta = found if isinstance(found, ModelMetadata) else None
    if found is None and version:
        try:
            meta = await dash.metadata(key, version)
        except Exception as exc:
            history_error = history_error or describe_error(exc)
    decimals = price_decimals(state.last_close)
    skill_section(state, version, meta)
    equity_box = after_fees_section(state, meta)
    walked = None
    if version:
        try:
            walked = await dash.walk_forward(key, version)
        except Exception as exc:
            history_error = history_error or f"walk-forward backtest: {describe_error(exc)}"
    if walked is not None:
        with ui.card().classes("w-full"):
            ui.label("Walk-forward backtest").classes("text-lg font-semibold")
            walk_forward(walked)
    with ui.card().classes("w-full"):
        ui.label("Track record: every served forecast").classes("text-lg font-semibold")
        await track_record(tab, key, state, decimals)
    with ui.card().classes("w-full"):
        ui.label("Backtest on the test split").classes("text-lg font-semibold")
        backtest_box = ui.column().classes("w-full gap-2").mark("backtest")
    with ui.card().classes("w-full"):
        ui.label("Versions").classes("text-lg font-semibold")
        versions_table(tab, state, history, history_error)
        changes_table(tab, state)
    with ui.element("div").classes("w-full grid gap-4 grid-cols-1 lg:grid-cols-2"):
        with ui.card().classes("w-full"):
            ui.label("Last training run").classes("text-lg font-semibold")
            training(tab, state, history)
        if record is not None and record.pair is not None:
            with ui.card().classes("w-full"):
                ui.label("Settings").classes("text-lg font-semibold")
                settings(tab, record.pair)
    with backtest_box, ui.row().classes("items-center gap-2 muted"):
        ui.spinner(size="sm")
        ui.label("Running the served model over the test windows…")
    try:
        result: Backtest | str = await dash.backtest(key)
    except Exception as exc:
        result = f"No backtest: {describe_error(exc)}"
    backtest_box.clear()
    with backtest_box:
        if isinstance(result, str):
            error_line(result, "backtest-error")
        else:
            backtest(tab, result, decimals, state.interval)
    equity(tab, result, equity_box, state.interval)


def versions_table(tab: Tab, state: PairState, history: dict[str, Readable], error: str | None) -> None:
    if error:
        ui.label(error).classes("text-negative text-sm break-any")
    if not history:
        if not error:
            why = "no version was published yet" if tab.dashboard.store else "start with --store"
            ui.label(f"No version history: {why}").classes("muted")
        return
    pinned = state.pair.spec.serving.pinned_version if state.pair else None
    rows = version_rows(history, state.promoted_version, state.served_version, pinned, tab.tz, state.promoted_versions)
    columns = [
        {"name": "version", "label": "Version", "field": "version", "align": "left"},
        {"name": "marks", "label": "", "field": "marks", "align": "left"},
        {"name": "created", "label": "Created", "field": "created", "align": "left"},
        {"name": "promoted", "label": "Promoted", "field": "promoted"},
        {"name": "validation", "label": "Val ratio", "field": "validation_ratio"},
        {"name": "test", "label": "Test ratio", "field": "test_ratio"},
        {"name": "direction", "label": "Direction (test)", "field": "direction"},
    ]
    table_rows = [{**asdict(r), "marks": " · ".join(r.marks), "promoted": "yes" if r.promoted else "no"} for r in rows]
    table = ui.table(columns=columns, rows=table_rows, row_key="version", pagination=10)
    table.props("flat dense wrap-cells").classes("w-full tabular").mark("versions-table")
    table.add_slot(
        "body-cell-marks",
        '<q-td :props="props"><q-badge v-if="props.value" color="primary" :label="props.value" rounded /></q-td>',
    )
    table.add_slot(
        "body-cell-promoted",
        '<q-td :props="props"><span :title="props.row.reason">{{ props.value }}</span></q-td>',
    )


def changes_table(tab: Tab, state: PairState) -> None:
    """latest.json's trail: who promoted or rolled back which version, when and why."""
    if not state.changes:
        return
    ui.label("Changes of the served version, newest first").classes("caps")
    names = (("at", "When"), ("action", "What"), ("change", "Version"), ("by", "By"), ("reason", "Why"))
    columns = [{"name": n, "label": label, "field": n, "align": "left"} for n, label in names]
    ui.table(columns=columns, rows=change_rows(state.changes, tab.tz), pagination=10).props(
        "flat dense wrap-cells"
    ).classes("w-full tabular").mark("changes-table")


RUN_TONES: dict[str, Tone] = {
    "training": "info",
    "succeeded": "positive",
    "failed": "negative",
    "interrupted": "warning",
}


def local_run(tab: Tab, run: RunState) -> None:
    """The newest training `makeusrich up` started: its progress while it runs, its outcome and last lines after."""
    with ui.row().classes("items-center gap-2"):
        badge(run.state.capitalize(), RUN_TONES[run.state])
        ui.label(f"started {format_time(run.started_at, tab.tz)}").classes("text-sm")
        if run.finished_at:
            ui.label(f"finished {format_time(run.finished_at, tab.tz)}").classes("text-sm muted")
    text = run_progress(run) if run.state == "training" else run.message or ""
    ui.label(text).classes("text-sm break-any").mark("run-message")
    if run.last_lines and run.state != "training":
        ui.html(f'<pre class="mur-log">{escape(chr(10).join(run.last_lines))}</pre>').mark("run-log")


def training(tab: Tab, state: PairState, history: dict[str, Readable]) -> None:
    if state.run is not None:
        local_run(tab, state.run)
    status = state.status
    last = status.last_training if status else None
    if last is not None and (last.phase or last.job):
        with ui.row().classes("items-center gap-2"):
            badge(last.phase or "unknown", PHASE_TONES.get(last.phase or "", "neutral"))
            ui.label(f"Job {last.job}" if last.job else "").classes("text-sm")
        ui.label(
            f"started {format_time(last.started_at, tab.tz)} · finished {format_time(last.finished_at, tab.tz)}"
        ).classes("text-sm muted")
        if last.message:
            ui.label(last.message).classes("text-sm break-any").mark("training-message")
    trained = condition(status, "Trained")
    if trained is not None:
        ui.label(f"{trained.reason}: {trained.message}").classes("text-sm break-any").mark("trained-condition")
    newest = state.newest_version
    meta = history.get(newest) if newest else None
    if meta is not None:
        promoted = bool(state.newest_promoted)
        known = meta if isinstance(meta, ModelMetadata) else None
        with ui.row().classes("items-center gap-2"):
            badge("Promoted" if promoted else "Not promoted", "positive" if promoted else "warning")
            created = format_time(known.created_at if known else None, tab.tz)
            ui.label(f"version {newest} · {created}").classes("text-sm")
        ui.label(promotion_reason(meta, promoted)).classes("text-sm break-any").mark("promotion-reason")
        if known is not None:
            ui.label(training_line(known)).classes("text-sm muted")
    elif last is None and trained is None and state.run is None:
        ui.label("No training run recorded yet.").classes("muted")


def settings(tab: Tab, pair: CurrencyPair) -> None:
    spec = pair.spec
    try:
        upcoming = "suspended" if spec.suspend else format_time(next_run(spec.schedule, datetime.now(UTC)), tab.tz)
    except Exception:
        upcoming = "—"
    model = spec.model
    items = [
        ("Schedule", f"{spec.schedule} (next: {upcoming})"),
        ("Lookback", f"{spec.lookback_days} days of {spec.interval} candles"),
        ("Model", f"LSTM, {model.layers} layer(s) of {model.hidden_size} units"),
        ("Window", f"{model.window} candles in, {model.horizon} forecast"),
        ("Training", f"lr {model.learning_rate:g}, batch {model.batch_size}, ≤ {model.max_epochs} epochs"),
        ("Promotion", promotion_rules(spec.promotion)),
        ("Serving", f"{spec.serving.runtime}, {spec.serving.min_replicas} replica(s)"),
        ("Pinned version", spec.serving.pinned_version or "none (serve the promoted version)"),
    ]
    with ui.grid(columns="auto 1fr").classes("w-full gap-x-4 gap-y-1 text-sm"):
        for label, value in items:
            ui.label(label).classes("muted")
            ui.label(value).classes("break-any")


def confirm_delete(tab: Tab, key: str) -> None:
    record = tab.dashboard.records.get(key)
    if record is None:
        return
    with ui.dialog() as dialog, ui.card().classes("max-w-md"):
        ui.label(f"Delete {record.key}?").classes("text-lg font-semibold")
        what = (
            "the CurrencyPair resource and its CronJob and InferenceService"
            if (tab.dashboard.source.kind == "kubernetes")
            else f"the pair file {record.path}"
        )
        ui.label(f"This removes {what}. Models already in the store stay.")

        async def delete() -> None:
            if not tab.can_manage():
                ui.notify("Log in to delete pairs", type="negative")
                return
            try:
                await tab.dashboard.source.delete(record)
            except MakeUsRichError as exc:
                ui.notify(str(exc), type="negative", multi_line=True)
                return
            dialog.close()
            ui.notify(f"Deleted {record.key}", type="positive")
            tab.dashboard.wake()
            ui.navigate.to("/")

        with ui.row().classes("w-full justify-end gap-2"):
            ui.button("Cancel", on_click=dialog.close).props("flat no-caps")
            ui.button("Delete", icon="delete", on_click=delete).props("color=negative no-caps").mark("confirm-delete")
    dialog.open()
