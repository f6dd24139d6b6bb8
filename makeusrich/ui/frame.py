"""What every page of a tab sits in: the header with its navigation and theme switch, the sub-page frame, and
the per-tab state the pages read (time zone, login).

NiceGUI calls the root once per browser tab; a `Tab` holds what that tab knows, and the pages (one module each)
draw into its frame. Pages only read the shared `Dashboard`: a timer per page redraws what changed since it
last looked, so no page waits on the network and no browser causes requests of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from nicegui import app, ui
from nicegui.events import GenericEventArguments

from makeusrich.ui.auth import HASH_ENV, AuthConfig, Throttle
from makeusrich.ui.format import zone
from makeusrich.ui.state import Dashboard

STYLESHEET = Path(__file__).parent / "static" / "dashboard.css"
TZ_SCRIPT = "Intl.DateTimeFormat().resolvedOptions().timeZone"
TZ_EVENT = "makeusrich_time_zone"
EDITING_OFF = f"Set {HASH_ENV} (makeusrich ui --hash-password) to manage pairs here"


class Pages:
    """What every tab shares: the dashboard, the login settings and the throttle on failed logins."""

    def __init__(self, dashboard: Dashboard, auth: AuthConfig, title: str = "Make Us Rich") -> None:
        self.dashboard = dashboard
        self.auth = auth
        self.title = title
        self.throttle = Throttle()


class Tab:
    """One browser tab: its header, its time zone, whether it logged in, and the frame its pages draw in."""

    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.dashboard = pages.dashboard
        self.auth = pages.auth
        # Taken while the page's request is current: event handlers run outside it.
        self.storage: dict[str, Any] = app.storage.user
        self.tz: str | None = self.storage.get("tz")
        self.frame: ui.sub_pages | None = None
        self.nav: ui.row | None = None

    def can_manage(self) -> bool:
        return self.auth.enabled and self.storage.get("auth") == self.auth.session_token

    def build(self, routes: Mapping[str, Callable[..., Any]]) -> None:
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
            self.frame = ui.sub_pages(dict(routes)).classes("w-full")
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

        def button(text: str, icon: str, action: Callable[[], Any], marker: str) -> None:
            ui.button(text, icon=icon, on_click=action).props("flat color=white no-caps").mark(marker)

        with self.nav:
            if self.can_manage():
                button("New pair", "add", lambda: ui.navigate.to("/new"), "new-pair")
                button("Log out", "logout", self.logout, "logout")
            elif self.auth.enabled:
                button("Log in", "login", lambda: ui.navigate.to("/login"), "login")
            else:
                with ui.chip("Read-only", icon="visibility").props("outline color=white dense").mark("read-only"):
                    ui.tooltip(EDITING_OFF)

    def logout(self) -> None:
        self.storage.pop("auth", None)
        self.render_nav()
        ui.notify("Logged out")
        ui.navigate.to("/")

    def refresh_page(self) -> None:
        if self.frame is not None:
            self.frame.refresh()
