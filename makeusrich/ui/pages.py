"""The dashboard's pages: one NiceGUI root page per browser tab, with client-side sub pages.

The root builds the header and a `ui.sub_pages` frame; a `Session` object per tab holds what the tab knows (its
time zone, whether it logged in) and builds the sub pages: the overview, a pair's page, the pair form and the
login. Pages only read the shared `Dashboard`; a timer per page redraws what changed since it last looked, so
no page waits on the network and no browser causes requests of its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from nicegui import app, ui
from nicegui.events import GenericEventArguments

from makeusrich.errors import MakeUsRichError
from makeusrich.metadata import ModelMetadata
from makeusrich.pair import CurrencyPair, next_run
from makeusrich.store.reader import Readable
from makeusrich.ui.auth import HASH_ENV, AuthConfig, Throttle, verify_password
from makeusrich.ui.backtest import Backtest
from makeusrich.ui.charts import backtest_chart, candle_chart, error_chart
from makeusrich.ui.data import PairRecord, PairSource, describe_error
from makeusrich.ui.forms import FIELDS, initial_values, validate_form
from makeusrich.ui.state import Dashboard, wait_loaded
from makeusrich.ui.view import (
    SORTS,
    PairState,
    Tone,
    badges,
    card_html,
    change_tone,
    format_change,
    format_direction,
    format_price,
    format_ratio,
    format_time,
    has_problem,
    matches,
    price_decimals,
    promotion_reason,
    skill_rows,
    sort_states,
    version_rows,
    zone,
)

log = logging.getLogger("makeusrich.ui")

TONE_COLOR: dict[Tone, str] = {
    "positive": "positive",
    "negative": "negative",
    "warning": "warning",
    "info": "info",
    "neutral": "grey-7",
}
TONE_TEXT: dict[Tone, str] = {
    "positive": "text-positive",
    "negative": "text-negative",
    "warning": "text-warning",
    "info": "text-info",
    "neutral": "",
}
CSS = """
body:not(.body--dark) { background: #f1f5f9; }
body.body--dark { background: #0b1120; }
.tabular { font-variant-numeric: tabular-nums; }
.mur-card { display: flex; flex-direction: column; gap: .6rem; height: 100%; padding: 1rem; border-radius: 6px;
  background: #fff; color: inherit; text-decoration: none; box-shadow: 0 1px 5px rgba(0,0,0,.2), 0 2px 2px
  rgba(0,0,0,.14), 0 3px 1px -2px rgba(0,0,0,.12); transition: box-shadow .15s ease-in-out; }
.mur-card:hover { box-shadow: 0 6px 18px rgba(15, 23, 42, .18); }
body.body--dark .mur-card { background: #1d1d1d; }
.mur-row { display: flex; gap: 1rem; align-items: flex-end; justify-content: space-between; }
.mur-top { align-items: flex-start; gap: .5rem; }
.mur-min { min-width: 0; }
.mur-stats { justify-content: flex-start; flex-wrap: wrap; row-gap: .4rem; }
.mur-title { font-size: 1.125rem; font-weight: 600; line-height: 1.5rem; }
.mur-sub { font-size: .75rem; opacity: .65; }
.mur-price { font-size: 1.5rem; font-weight: 600; line-height: 2rem; font-variant-numeric: tabular-nums; }
.mur-num { font-variant-numeric: tabular-nums; }
.mur-spark { flex-shrink: 0; opacity: .65; }
.mur-caps { text-transform: uppercase; letter-spacing: .04em; font-size: .7rem; }
.mur-stat .mur-caps, .mur-dim { opacity: .65; }
.mur-verdict { text-transform: none; letter-spacing: 0; font-size: .75rem; font-weight: 600; margin-left: .4rem; }
.mur-foot { font-size: .75rem; opacity: .65; overflow-wrap: anywhere; }
.mur-error { font-size: .875rem; color: var(--q-negative); overflow-wrap: anywhere; }
.mur-badges { display: flex; flex-wrap: wrap; gap: .25rem; justify-content: flex-end; }
.mur-badge { border-radius: 1em; padding: .15rem .55rem; font-size: .75rem; line-height: 1rem; color: #fff;
  white-space: nowrap; background: #616161; }
.mur-badge.mur-positive { background: var(--q-positive); }
.mur-badge.mur-negative { background: var(--q-negative); }
.mur-badge.mur-warning { background: var(--q-warning); color: #111; }
.mur-badge.mur-info { background: var(--q-info); color: #111; }
.mur-num.mur-positive, .mur-verdict.mur-positive { color: var(--q-positive); font-weight: 600; }
.mur-num.mur-negative, .mur-verdict.mur-negative { color: var(--q-negative); font-weight: 600; }
.mur-verdict.mur-warning { color: #b45309; }
body.body--dark .mur-verdict.mur-warning { color: var(--q-warning); }
.muted { opacity: .65; }
.caps { text-transform: uppercase; letter-spacing: .04em; font-size: .7rem; opacity: .65; }
.break-any { overflow-wrap: anywhere; }
"""
TZ_SCRIPT = "Intl.DateTimeFormat().resolvedOptions().timeZone"
TZ_EVENT = "makeusrich_time_zone"
SKILL_EXPLAINED = (
    "Ratio: the model's mean absolute error divided by persistence's (next close = last close) on the same "
    "points; below 1 is better. DM p: the Diebold-Mariano test's p-value for the difference from persistence; "
    "above 0.05 the difference may be noise. Direction: share of moves whose sign was called right, with its 95% "
    "Wilson interval."
)


class Pages:
    """What every tab shares: the dashboard, the login settings and the throttle on failed logins."""

    def __init__(self, dashboard: Dashboard, auth: AuthConfig, title: str = "Make Us Rich") -> None:
        self.dashboard = dashboard
        self.auth = auth
        self.title = title
        self.throttle = Throttle()
        digest = auth.password_hash or ""
        # Stored in a session: a changed password logs every session out.
        self.session_token = hashlib.sha256(f"makeusrich-ui:{digest}".encode()).hexdigest()[:32]

    def root(self) -> None:
        Session(self).build()


def badge(text: str, tone: Tone, tooltip: str = "") -> None:
    with ui.badge(text, color=TONE_COLOR[tone]).props("rounded").classes("px-2 py-1"):
        if tooltip:
            ui.tooltip(tooltip).classes("max-w-xs text-sm")


def stat(label: str, value: str, classes: str = "") -> None:
    with ui.column().classes("gap-0"):
        ui.label(label).classes("caps")
        ui.label(value).classes(f"tabular {classes}")


def empty_hints(source: PairSource, login_configured: bool, logged_in: bool) -> list[str]:
    """What to do when there is no pair yet: how to add one, and how to enable editing when it is off."""
    if source.kind == "kubernetes":
        add = "Create one with `kubectl apply -f btc-usdt.yaml` (manifests/examples/btc-usdt.yaml)."
    else:
        folder = getattr(source, "pairs_dir", "the pairs folder")
        add = (
            f"Add a CurrencyPair file to {folder} (a copy of manifests/examples/btc-usdt.yaml will do); "
            "it appears here at the next refresh."
        )
    if logged_in:
        return [add, "Or create one here with New pair."]
    if login_configured:
        return [add, "Or log in to create one here."]
    return [
        add,
        f"Editing here is off: set {HASH_ENV} (make one with `makeusrich ui --hash-password`) and restart the "
        "dashboard to create, edit and delete pairs from this page.",
    ]


class Session:
    """One browser tab: its header, its time zone and its sub pages."""

    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.dashboard = pages.dashboard
        self.auth = pages.auth
        # Taken while the page's request is current: event handlers run outside it.
        self.storage: dict[str, Any] = app.storage.user
        self.tz: str | None = self.storage.get("tz")
        self.frame: ui.sub_pages | None = None
        self.nav: ui.row | None = None

    # --- shell ---------------------------------------------------------------------------------------------------

    def can_manage(self) -> bool:
        return self.auth.enabled and self.storage.get("auth") == self.pages.session_token

    def build(self) -> None:
        ui.colors(primary="#2563eb")
        dark = ui.dark_mode(self.storage.get("dark"))
        with ui.header().classes("items-center justify-between px-3 sm:px-6 py-2 bg-slate-900 text-white"):
            with ui.link(target="/").classes("flex items-center gap-2 no-underline text-white"):
                ui.icon("insights", size="md")
                ui.label(self.pages.title).classes("text-lg font-semibold")
            with ui.row().classes("items-center gap-1 no-wrap"):
                self.nav = ui.row().classes("items-center gap-1 no-wrap")
                self.render_nav()
                icons = {None: "brightness_auto", True: "dark_mode", False: "light_mode"}
                toggle = ui.button(icon=icons[dark.value]).props("flat round color=white").mark("dark-toggle")
                toggle.tooltip("Light, dark or the system's theme")

                def cycle() -> None:
                    dark.value = {None: True, True: False, False: None}[dark.value]
                    self.storage["dark"] = dark.value
                    toggle.props(f"icon={icons[dark.value]}")

                toggle.on_click(cycle)
        with ui.column().classes("w-full max-w-screen-xl mx-auto px-3 sm:px-6 py-4 gap-4"):
            self.frame = ui.sub_pages(
                {
                    "/": self.overview,
                    "/pair/{namespace}/{name}": self.pair_page,
                    "/new": self.new_pair,
                    "/edit/{namespace}/{name}": self.edit_pair,
                    "/login": self.login,
                }
            ).classes("w-full")
        # Fire and forget: the browser answers with an event once connected, so no task waits on it.
        ui.on(TZ_EVENT, self.time_zone_reported)
        ui.run_javascript(f"emitEvent('{TZ_EVENT}', {TZ_SCRIPT})")

    def time_zone_reported(self, event: GenericEventArguments) -> None:
        """The browser's IANA time zone arrived; the pages' timers redraw what shows times, forms keep their input."""
        tz = event.args
        if isinstance(tz, str) and tz and zone(tz).key == tz and tz != self.tz:
            self.tz = tz
            self.storage["tz"] = tz

    def render_nav(self) -> None:
        if self.nav is None:
            return
        self.nav.clear()
        with self.nav:
            if self.can_manage():
                ui.button("New pair", icon="add", on_click=lambda: ui.navigate.to("/new")).props(
                    "flat color=white no-caps"
                ).mark("new-pair")
                ui.button("Log out", icon="logout", on_click=self.logout).props("flat color=white no-caps").mark(
                    "logout"
                )
            elif self.auth.enabled:
                ui.button("Log in", icon="login", on_click=lambda: ui.navigate.to("/login")).props(
                    "flat color=white no-caps"
                ).mark("login")
            else:
                with ui.chip("Read-only", icon="visibility").props("outline color=white dense").mark("read-only"):
                    ui.tooltip("Set MAKEUSRICH_UI_PASSWORD_HASH (makeusrich ui --hash-password) to manage pairs here")

    def logout(self) -> None:
        self.storage.pop("auth", None)
        self.render_nav()
        ui.notify("Logged out")
        ui.navigate.to("/")

    def read_only(self) -> None:
        with ui.card().classes("w-full max-w-xl"):
            ui.label("This dashboard is read-only").classes("text-lg font-semibold")
            ui.label(
                "Managing pairs needs a login. Start the dashboard with MAKEUSRICH_UI_PASSWORD_HASH set (make "
                "one with `makeusrich ui --hash-password`), then log in."
            )
            ui.link("Back to the pairs", "/")

    # --- the overview --------------------------------------------------------------------------------------------

    def overview(self) -> Awaitable[None] | None:
        """Drawn at once when the data is there, so the cards travel with the page's HTML (no extra round
        trip); only right after the dashboard starts does it wait for the first refresh."""
        if self.dashboard.loaded.is_set():
            self.draw_overview()
            return None

        async def later() -> None:
            await wait_loaded(self.dashboard, 2.0)
            self.draw_overview()

        return later()

    def draw_overview(self) -> None:
        dash = self.dashboard
        prefs: dict[str, Any] = {"query": "", "sort": "name", "problems": False}
        prefs.update(self.storage.get("overview") or {})
        with ui.row().classes("w-full items-center gap-3"):
            ui.label("Pairs").classes("text-2xl font-semibold")
            ui.space()
            query = (
                ui.input(placeholder="Filter by name or symbol", value=prefs["query"])
                .props("dense outlined clearable debounce=200")
                .classes("w-full sm:w-64")
                .mark("filter")
            )
            sort = (
                ui.select(SORTS, value=prefs["sort"] if prefs["sort"] in SORTS else "name", label="Sort by")
                .props("dense outlined options-dense")
                .classes("w-full sm:w-56")
                .mark("sort")
            )
            problems = ui.switch("Problems only", value=bool(prefs["problems"])).mark("problems-only")
        summary = ui.label().classes("text-sm muted").mark("summary")
        banner = ui.column().classes("w-full")
        grid = ui.element("div").classes("w-full grid gap-4 grid-cols-1 md:grid-cols-2 xl:grid-cols-3").mark("cards")
        holders: dict[str, tuple[ui.html, int, str | None]] = {}
        shown: list[str] = []
        seen: dict[str, Any] = {"now": None}

        def chosen() -> list[PairState]:
            states = [s for s in dash.states.values() if matches(s, query.value or "")]
            if problems.value:
                states = [s for s in states if has_problem(s)]
            return sort_states(states, sort.value or "name")

        def draw_summary() -> None:
            total = len(dash.states)
            trouble = sum(1 for s in dash.states.values() if has_problem(s))
            when = (
                format_time(datetime.fromtimestamp(dash.refreshed_at, UTC), self.tz, seconds=True)
                if (dash.refreshed_at)
                else "not yet"
            )
            summary.text = (
                f"{total} pair{'s' if total != 1 else ''} · {trouble} with problems · refreshed {when} · "
                f"{dash.source.describe()} · times are candle closes, {self.tz or 'UTC'}"
            )
            banner.clear()
            if dash.source_error:
                with banner, ui.row().classes("w-full items-center gap-2 p-3 rounded bg-red-50 text-red-900"):
                    ui.icon("cloud_off")
                    ui.label(f"Cannot read the pairs: {dash.source_error}").classes("break-any")

        def draw_all() -> None:
            states = chosen()
            grid.clear()
            holders.clear()
            shown[:] = [s.key for s in states]
            with grid:
                for state in states:
                    holders[state.key] = (self.card(state), dash.revisions.get(state.key, 0), self.tz)
                if not states:
                    self.empty_overview(bool(dash.states))
            draw_summary()

        def tick() -> None:
            now = (dash.revision, dash.source_error, self.tz)
            if now == seen["now"]:
                return
            seen["now"] = now
            if [s.key for s in chosen()] != shown:
                draw_all()
                return
            for key in shown:
                holder, revision, tz = holders[key]
                if dash.revisions.get(key, 0) != revision or tz != self.tz:
                    holder.set_content(card_html(dash.states[key], self.tz))  # one update, no new elements
                    holders[key] = (holder, dash.revisions.get(key, 0), self.tz)
            draw_summary()

        def changed() -> None:
            self.storage["overview"] = {"query": query.value or "", "sort": sort.value, "problems": problems.value}
            draw_all()

        for control in (query, sort, problems):
            control.on_value_change(changed)
        seen["now"] = (dash.revision, dash.source_error, self.tz)
        draw_all()
        ui.timer(0.5, tick)

    def empty_overview(self, filtered: bool) -> None:
        with ui.card().classes("w-full col-span-full items-center text-center p-8 gap-2"):
            ui.icon("search_off" if filtered else "add_chart", size="xl").classes("muted")
            if filtered:
                ui.label("No pair matches the filter").classes("text-lg")
                return
            ui.label("No pairs yet").classes("text-lg font-semibold")
            for line in empty_hints(self.dashboard.source, self.auth.enabled, self.can_manage()):
                ui.label(line).classes("break-any")
            if self.can_manage():
                ui.button("New pair", icon="add", on_click=lambda: ui.navigate.to("/new"))

    def card(self, s: PairState) -> ui.html:
        """One pair's card (see view.card_html): price, forecast, skill against persistence, model, problems."""
        return ui.html(card_html(s, self.tz), sanitize=False).classes("w-full").mark("pair-card", f"card-{s.name}")

    # --- a pair's page -------------------------------------------------------------------------------------------

    async def pair_page(self, namespace: str, name: str) -> None:
        dash = self.dashboard
        key = f"{namespace}/{name}"
        await wait_loaded(dash, 3.0)
        if key not in dash.states:
            with ui.card().classes("w-full max-w-xl"):
                ui.label(f"No pair {key}").classes("text-lg font-semibold")
                ui.label("It may have been deleted, or it lives in a namespace this dashboard does not read.")
                ui.link("Back to the pairs", "/")
            return
        header = ui.column().classes("w-full gap-2")
        with ui.card().classes("w-full"):
            ui.label("Price and forecast").classes("text-lg font-semibold")
            chart = ui.echart({}).classes("w-full h-80 sm:h-96").mark("price-chart")
            chart_note = ui.label().classes("text-xs muted")
        model_box = ui.column().classes("w-full gap-4")
        seen: dict[str, Any] = {"revision": -1, "model": None, "tz": self.tz}

        def draw_top() -> None:
            state = dash.states.get(key)
            if state is None:
                return
            header.clear()
            with header:
                self.pair_header(state)
            decimals = price_decimals(state.last_close)
            candles = dash.candles.get(key)
            if candles is not None and state.pair is not None:
                chart.options.clear()
                chart.options.update(
                    candle_chart(
                        candles, state.forecast_times, state.forecast, self.tz, decimals, state.pair.spec.interval
                    )
                )
                chart.update()
                chart_note.text = (
                    f"{len(candles)} candles, the last closing {format_time(state.last_close_time, self.tz)}; the "
                    "dashed line is the served model's forecast after it. Each candle is labelled by the time it "
                    f"closes, in {self.tz or 'UTC'}."
                )
            else:
                chart_note.text = "No candles to draw: " + (state.candle_error or "none were loaded yet")

        async def draw_model() -> None:
            state = dash.states.get(key)
            if state is None:
                return
            model_box.clear()
            with model_box:
                await self.model_sections(key, state)

        async def tick() -> None:
            state = dash.states.get(key)
            if state is None:
                return
            if dash.revisions.get(key, 0) != seen["revision"] or seen["tz"] != self.tz:
                seen["revision"] = dash.revisions.get(key, 0)
                draw_top()
            model_id = (state.served_version, state.promoted_version, state.newest_version, self.tz, state.status)
            if model_id != seen["model"] or seen["tz"] != self.tz:
                seen["model"], seen["tz"] = model_id, self.tz
                await draw_model()

        await tick()
        ui.timer(1.0, tick)

    def pair_header(self, s: PairState) -> None:
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
            with ui.row().classes("w-full items-start gap-2 no-wrap text-negative").mark("pair-error"):
                ui.icon("error_outline").classes("mt-1")
                ui.label(error).classes("break-any")
        if self.can_manage() and s.pair is not None:
            with ui.row().classes("gap-2"):
                ui.button("Edit", icon="edit", on_click=lambda: ui.navigate.to(f"/edit/{s.namespace}/{s.name}")).props(
                    "outline no-caps"
                ).mark("edit")
                ui.button("Delete", icon="delete", on_click=lambda: self.confirm_delete(s.key)).props(
                    "outline color=negative no-caps"
                ).mark("delete")

    async def model_sections(self, key: str, state: PairState) -> None:
        dash = self.dashboard
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
        with ui.card().classes("w-full"):
            with ui.row().classes("w-full items-center justify-between"):
                ui.label("Skill on held-out data").classes("text-lg font-semibold")
                if version:
                    ui.label(f"version {version}").classes("text-sm muted")
            rows = skill_rows(meta)
            if rows:
                self.skill_table(rows)
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
        with ui.card().classes("w-full"):
            ui.label("Backtest on the test split").classes("text-lg font-semibold")
            backtest_box = ui.column().classes("w-full gap-2").mark("backtest")
        with ui.card().classes("w-full"):
            ui.label("Versions").classes("text-lg font-semibold")
            self.versions_table(state, history, history_error)
        with ui.element("div").classes("w-full grid gap-4 grid-cols-1 lg:grid-cols-2"):
            with ui.card().classes("w-full"):
                ui.label("Last training run").classes("text-lg font-semibold")
                self.training(state, history)
            if record is not None and record.pair is not None:
                with ui.card().classes("w-full"):
                    ui.label("Settings").classes("text-lg font-semibold")
                    self.settings(record.pair)
        with backtest_box:
            spinner = ui.row().classes("items-center gap-2 muted")
            with spinner:
                ui.spinner(size="sm")
                ui.label("Running the served model over the test windows…")
        try:
            result = await dash.backtest(key)
        except Exception as exc:
            backtest_box.clear()
            with backtest_box, ui.row().classes("items-start gap-2 no-wrap text-negative").mark("backtest-error"):
                ui.icon("error_outline").classes("mt-1")
                ui.label(f"No backtest: {describe_error(exc)}").classes("break-any")
            return
        backtest_box.clear()
        with backtest_box:
            self.backtest(result, decimals, state.interval)

    def skill_table(self, rows: list[Any]) -> None:
        columns = [{"name": "name", "label": "Forecaster", "field": "name", "align": "left"}]
        for split in ("validation", "test"):
            short = "Val" if split == "validation" else "Test"
            columns += [
                {"name": f"{split}_mae", "label": f"{short} MAE", "field": f"{split}_mae"},
                {"name": f"{split}_ratio", "label": f"{short} ratio", "field": f"{split}_ratio"},
                {"name": f"{split}_direction", "label": f"{short} direction", "field": f"{split}_direction"},
                {"name": f"{split}_p", "label": f"{short} DM p", "field": f"{split}_p"},
            ]
        table_rows = [{"name": row.name, **row.cells} for row in rows]
        ui.table(columns=columns, rows=table_rows, row_key="name").props("flat dense wrap-cells").classes(
            "w-full tabular"
        ).mark("skill-table")

    def backtest(self, result: Backtest, decimals: int, interval: str) -> None:
        ok = result.agrees
        ratio = format_ratio(result.ratio)
        recorded = format_ratio(result.recorded_ratio)
        with ui.row().classes("w-full gap-6"):
            stat("Windows", f"{result.n:,}")
            stat("Model MAE", format_price(result.mae, decimals))
            stat("Persistence MAE", format_price(result.persistence_mae, decimals))
            stat("MAE ratio (now)", ratio, "font-semibold")
            stat("MAE ratio (at training)", recorded)
            direction = result.direction
            stat("Direction", "—" if direction is None else f"{direction.accuracy:.1%}")
        if ok is True:
            text = f"Recomputed now from the served version {result.version}: matches the number recorded at training."
            ui.label(text).classes("text-sm text-positive").mark("backtest-agrees")
        elif ok is False:
            ui.label(
                f"The recomputed ratio {ratio} differs from the recorded {recorded}: the candles read now differ from "
                "those the trainer used (a different source, or corrected exchange data)."
            ).classes("text-sm text-warning").mark("backtest-differs")
        with ui.element("div").classes("w-full grid gap-2 grid-cols-1 lg:grid-cols-3"):
            with ui.column().classes("w-full gap-0 lg:col-span-2"):
                ui.label("Actual close, the model's forecast and persistence's").classes("caps")
                ui.echart(backtest_chart(result, self.tz, decimals, interval)).classes("w-full h-72").mark(
                    "backtest-chart"
                )
            with ui.column().classes("w-full gap-0"):
                ui.label("Cumulative absolute error (lower is better)").classes("caps")
                ui.echart(error_chart(result, self.tz, decimals, interval)).classes("w-full h-72").mark("error-chart")
        when = ""
        if result.times:
            when = f"{format_time(result.times[0], self.tz)} to {format_time(result.times[-1], self.tz)}"
        ui.label(f"One-step forecasts for {when}: data the model never saw while training or early stopping.").classes(
            "text-xs muted"
        )

    def versions_table(self, state: PairState, history: dict[str, Readable], error: str | None) -> None:
        if error:
            ui.label(error).classes("text-negative text-sm break-any")
        if not history:
            if not error:
                why = "no version was published yet" if self.dashboard.store else "start with --store"
                ui.label(f"No version history: {why}").classes("muted")
            return
        pinned = state.pair.spec.serving.pinned_version if state.pair else None
        rows = version_rows(
            history, state.promoted_version, state.served_version, pinned, self.tz, state.promoted_versions
        )
        columns = [
            {"name": "version", "label": "Version", "field": "version", "align": "left"},
            {"name": "marks", "label": "", "field": "marks", "align": "left"},
            {"name": "created", "label": "Created", "field": "created", "align": "left"},
            {"name": "promoted", "label": "Promoted", "field": "promoted"},
            {"name": "validation", "label": "Val ratio", "field": "validation"},
            {"name": "test", "label": "Test ratio", "field": "test"},
            {"name": "direction", "label": "Direction (test)", "field": "direction"},
        ]
        table_rows = [
            {
                "version": r.version,
                "marks": " · ".join(r.marks),
                "created": r.created,
                "promoted": "yes" if r.promoted else "no",
                "reason": r.reason,
                "validation": r.validation_ratio,
                "test": r.test_ratio,
                "direction": r.direction,
            }
            for r in rows
        ]
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

    def training(self, state: PairState, history: dict[str, Readable]) -> None:
        status = state.status
        last = status.last_training if status else None
        if last is not None and (last.phase or last.job):
            tone: Tone = {"Succeeded": "positive", "Failed": "negative", "Running": "info", "Pending": "info"}.get(
                last.phase or "", "neutral"
            )  # type: ignore[assignment]
            with ui.row().classes("items-center gap-2"):
                badge(last.phase or "unknown", tone)
                ui.label(f"Job {last.job}" if last.job else "").classes("text-sm")
            ui.label(
                f"started {format_time(last.started_at, self.tz)} · finished {format_time(last.finished_at, self.tz)}"
            ).classes("text-sm muted")
            if last.message:
                ui.label(last.message).classes("text-sm break-any").mark("training-message")
        trained = next((c for c in status.conditions if c.type == "Trained"), None) if status else None
        if trained is not None:
            ui.label(f"{trained.reason}: {trained.message}").classes("text-sm break-any").mark("trained-condition")
        newest = state.newest_version
        meta = history.get(newest) if newest else None
        if meta is not None:
            promoted = bool(state.newest_promoted)
            known = meta if isinstance(meta, ModelMetadata) else None
            with ui.row().classes("items-center gap-2"):
                badge("Promoted" if promoted else "Not promoted", "positive" if promoted else "warning")
                created = format_time(known.created_at if known else None, self.tz)
                ui.label(f"version {newest} · {created}").classes("text-sm")
            ui.label(promotion_reason(meta, promoted)).classes("text-sm break-any").mark("promotion-reason")
            if known is not None:
                training = known.training
                took = f" in {training.total_seconds:.0f} s" if training.total_seconds is not None else ""
                ui.label(
                    f"{training.epochs} epochs (best {training.best_epoch}){took} on {known.source} candles"
                ).classes("text-sm muted")
        elif last is None and trained is None:
            ui.label("No training run recorded yet.").classes("muted")

    def settings(self, pair: CurrencyPair) -> None:
        spec = pair.spec
        try:
            upcoming = "suspended" if spec.suspend else format_time(next_run(spec.schedule, datetime.now(UTC)), self.tz)
        except Exception:
            upcoming = "—"
        model = spec.model
        items = [
            ("Schedule", f"{spec.schedule} (next: {upcoming})"),
            ("Lookback", f"{spec.lookback_days} days of {spec.interval} candles"),
            ("Model", f"LSTM, {model.layers} layer(s) of {model.hidden_size} units"),
            ("Window", f"{model.window} candles in, {model.horizon} forecast"),
            ("Training", f"lr {model.learning_rate:g}, batch {model.batch_size}, ≤ {model.max_epochs} epochs"),
            ("Promotion bar", f"validation MAE ≤ {spec.promotion.max_relative_mae:g} times persistence's"),
            ("Serving", f"{spec.serving.runtime}, {spec.serving.min_replicas} replica(s)"),
            ("Pinned version", spec.serving.pinned_version or "none (serve the promoted version)"),
        ]
        with ui.grid(columns="auto 1fr").classes("w-full gap-x-4 gap-y-1 text-sm"):
            for label, value in items:
                ui.label(label).classes("muted")
                ui.label(value).classes("break-any")

    def confirm_delete(self, key: str) -> None:
        record = self.dashboard.records.get(key)
        if record is None:
            return
        with ui.dialog() as dialog, ui.card().classes("max-w-md"):
            ui.label(f"Delete {record.key}?").classes("text-lg font-semibold")
            what = (
                "the CurrencyPair resource and its CronJob and InferenceService"
                if (self.dashboard.source.kind == "kubernetes")
                else f"the pair file {record.path}"
            )
            ui.label(f"This removes {what}. Models already in the store stay.")

            async def delete() -> None:
                if not self.can_manage():
                    ui.notify("Log in to delete pairs", type="negative")
                    return
                try:
                    await self.dashboard.source.delete(record)
                except MakeUsRichError as exc:
                    ui.notify(str(exc), type="negative", multi_line=True)
                    return
                dialog.close()
                ui.notify(f"Deleted {record.key}", type="positive")
                self.dashboard.wake()
                ui.navigate.to("/")

            with ui.row().classes("w-full justify-end gap-2"):
                ui.button("Cancel", on_click=dialog.close).props("flat no-caps")
                ui.button("Delete", icon="delete", on_click=delete).props("color=negative no-caps").mark(
                    "confirm-delete"
                )
        dialog.open()

    # --- the pair form -------------------------------------------------------------------------------------------

    def gate(self) -> bool:
        """True when this tab may manage pairs; otherwise shows why not (and the login form, if there is one)."""
        if self.can_manage():
            return True
        if self.auth.enabled:
            self.login_form(self.refresh_page)
        else:
            self.read_only()
        return False

    def refresh_page(self) -> None:
        if self.frame is not None:
            self.frame.refresh()

    async def new_pair(self) -> None:
        if self.gate():
            self.pair_form(None)

    async def edit_pair(self, namespace: str, name: str) -> None:
        if not self.gate():
            return
        await wait_loaded(self.dashboard, 3.0)
        record = self.dashboard.records.get(f"{namespace}/{name}")
        if record is None or record.pair is None:
            with ui.card().classes("w-full max-w-xl"):
                ui.label(f"Cannot edit {namespace}/{name}").classes("text-lg font-semibold")
                ui.label(record.problem if record and record.problem else "There is no such pair.").classes("break-any")
                ui.link("Back to the pairs", "/")
            return
        self.pair_form(record)

    def pair_form(self, record: PairRecord | None) -> None:
        dash = self.dashboard
        creating = record is None
        namespace = dash.source.fixed_namespace or "default"
        values = initial_values(record.pair if record else None, namespace)
        inputs: dict[str, Any] = {}
        ui.label("New pair" if creating else f"Edit {record.key if record else ''}").classes("text-2xl font-semibold")
        general = ui.column().classes("w-full")
        groups: dict[str, ui.element] = {}
        with ui.element("div").classes("w-full grid gap-4 grid-cols-1 lg:grid-cols-3"):
            for field in FIELDS:
                if field.group not in groups:
                    with ui.card().classes("w-full gap-2"):
                        ui.label(field.group).classes("text-lg font-semibold")
                        groups[field.group] = ui.column().classes("w-full gap-1")
                with groups[field.group]:
                    value = values.get(field.path)
                    element: Any
                    if field.kind == "select":
                        element = ui.select(list(field.options), value=value, label=field.label)
                    elif field.kind == "bool":
                        element = ui.switch(field.label, value=bool(value))
                    elif field.kind in ("int", "float"):
                        element = ui.number(field.label, value=value, precision=0 if field.kind == "int" else None)
                    else:
                        element = ui.input(field.label, value="" if value is None else str(value))
                    if field.kind != "bool":
                        element.props("outlined dense").classes("w-full")
                        if field.hint:
                            element.props["hint"] = field.hint
                    fixed = (not creating and field.path in ("metadata.name", "metadata.namespace")) or (
                        field.path == "metadata.namespace" and dash.source.fixed_namespace is not None
                    )
                    if fixed:
                        element.disable()
                    element.mark(f"field-{field.path}")
                    inputs[field.path] = element

        async def save() -> None:
            if not self.can_manage():
                ui.notify("Log in to change pairs", type="negative")
                return
            form = {path: element.value for path, element in inputs.items()}
            pair, errors = validate_form(form)
            for path, element in inputs.items():
                if hasattr(element, "error"):
                    element.error = errors.get(path)
            general.clear()
            if errors.get(""):
                with general:
                    ui.label(errors[""]).classes("text-negative break-any").mark("form-error")
            if pair is None:
                ui.notify("Some fields need fixing", type="warning")
                return
            try:
                await dash.source.save(pair, create=creating, previous=record)
            except MakeUsRichError as exc:
                with general:
                    ui.label(str(exc)).classes("text-negative break-any").mark("form-error")
                ui.notify("Not saved", type="negative")
                return
            ui.notify(f"Saved {pair.namespace}/{pair.name}", type="positive")
            dash.wake()
            await asyncio.sleep(0)
            ui.navigate.to(f"/pair/{pair.namespace}/{pair.name}" if not creating else "/")

        where = "as a CurrencyPair resource" if dash.source.kind == "kubernetes" else "as a pair file"
        with ui.row().classes("w-full items-center gap-2"):
            ui.button("Create" if creating else "Save", icon="save", on_click=save).props("no-caps").mark("save")
            back = "/" if creating or record is None else f"/pair/{record.namespace}/{record.name}"
            ui.button("Cancel", on_click=lambda: ui.navigate.to(back)).props("flat no-caps")
            ui.label(f"Saved {where}; the spec is checked by the same schema as the CRD.").classes("text-xs muted")

    # --- login ---------------------------------------------------------------------------------------------------

    async def login(self, next: str = "/") -> None:
        target = next if next.startswith("/") and not next.startswith("//") else "/"
        if not self.auth.enabled:
            self.read_only()
            return
        self.login_form(lambda: ui.navigate.to(target))

    def login_form(self, after: Callable[[], Any]) -> None:
        with ui.card().classes("w-full max-w-sm mx-auto gap-3"):
            ui.label("Log in to manage pairs").classes("text-lg font-semibold")
            password = (
                ui.input("Password", password=True, password_toggle_button=True)
                .props("outlined autofocus")
                .classes("w-full")
                .mark("password")
            )
            button = ui.button("Log in", icon="login").props("no-caps").classes("w-full").mark("submit-login")

        async def submit() -> None:
            client = ui.context.client.ip or "unknown"  # behind a trusted proxy, X-Forwarded-For (uvicorn)
            wait = self.pages.throttle.begin(client)  # counted now, decided before the await below
            if wait > 0:
                password.error = f"Too many failed logins; try again in {wait:.0f} s"
                return
            stored = self.auth.password_hash
            assert stored is not None
            button.disable()
            ok = False
            try:
                ok = await self.dashboard.offload(lambda: verify_password(password.value or "", stored))
            finally:
                self.pages.throttle.finished(client, ok)
                button.enable()
            if not ok:
                password.error = "Wrong password"
                return
            self.storage["auth"] = self.pages.session_token
            password.error = None
            self.render_nav()
            ui.notify("Logged in", type="positive")
            after()

        button.on_click(submit)
        password.on("keydown.enter", submit)


def make_root(pages: Pages) -> Callable[[], Any]:
    """The function NiceGUI calls for every page load."""

    def root() -> None:
        pages.root()

    return root
