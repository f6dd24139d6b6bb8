"""The overview: one card per pair, with a filter, a sort, and a summary line that names what is wrong."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

from nicegui import ui

from makeusrich.pair_sources import PairSource
from makeusrich.ui.auth import HASH_ENV
from makeusrich.ui.badges import SORTS, has_problem, matches, sort_states
from makeusrich.ui.card import PairState
from makeusrich.ui.card_html import card_html
from makeusrich.ui.format import format_time
from makeusrich.ui.frame import Tab
from makeusrich.ui.state import wait_loaded


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


def page(tab: Tab) -> Awaitable[None] | None:
    """Drawn at once when the data is there, so the cards travel with the page's HTML (no extra round trip);
    only right after the dashboard starts does it wait for the first refresh."""
    if tab.dashboard.loaded.is_set():
        draw(tab)
        return None

    async def later() -> None:
        await wait_loaded(tab.dashboard, 2.0)
        draw(tab)

    return later()


def card(tab: Tab, s: PairState) -> ui.html:
    """One pair's card (see view.card_html): price, forecast, skill against persistence, model, problems."""
    return ui.html(card_html(s, tab.tz), sanitize=False).classes("w-full").mark("pair-card", f"card-{s.name}")


def empty(tab: Tab, filtered: bool) -> None:
    with ui.card().classes("w-full col-span-full items-center text-center p-8 gap-2"):
        ui.icon("search_off" if filtered else "add_chart", size="xl").classes("muted")
        if filtered:
            ui.label("No pair matches the filter").classes("text-lg")
            return
        ui.label("No pairs yet").classes("text-lg font-semibold")
        for line in empty_hints(tab.dashboard.source, tab.auth.enabled, tab.can_manage()):
            ui.label(line).classes("break-any")
        if tab.can_manage():
            ui.button("New pair", icon="add", on_click=lambda: ui.navigate.to("/new"))


def draw(tab: Tab) -> None:
    dash = tab.dashboard
    prefs: dict[str, Any] = {"query": "", "sort": "name", "problems": False}
    prefs.update(tab.storage.get("overview") or {})
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
            format_time(datetime.fromtimestamp(dash.refreshed_at, UTC), tab.tz, seconds=True)
            if dash.refreshed_at
            else "not yet"
        )
        summary.text = (
            f"{total} pair{'s' if total != 1 else ''} · {trouble} with problems · refreshed {when} · "
            f"{dash.source.describe()} · times are candle closes, {tab.tz or 'UTC'}"
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
                holders[state.key] = (card(tab, state), dash.revisions.get(state.key, 0), tab.tz)
            if not states:
                empty(tab, bool(dash.states))
        draw_summary()

    def tick() -> None:
        now = (dash.revision, dash.source_error, tab.tz)
        if now == seen["now"]:
            return
        seen["now"] = now
        if [s.key for s in chosen()] != shown:
            draw_all()
            return
        for key in shown:
            holder, revision, tz = holders[key]
            if dash.revisions.get(key, 0) != revision or tz != tab.tz:
                holder.set_content(card_html(dash.states[key], tab.tz))  # one update, no new elements
                holders[key] = (holder, dash.revisions.get(key, 0), tab.tz)
        draw_summary()

    def changed() -> None:
        tab.storage["overview"] = {"query": query.value or "", "sort": sort.value, "problems": problems.value}
        draw_all()

    for control in (query, sort, problems):
        control.on_value_change(changed)
    seen["now"] = (dash.revision, dash.source_error, tab.tz)
    draw_all()
    ui.timer(0.5, tick)
