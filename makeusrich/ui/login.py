"""The login page and form, and what a read-only dashboard says instead."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nicegui import ui

from makeusrich.ui.auth import HASH_ENV, verify_password
from makeusrich.ui.components import notice
from makeusrich.ui.frame import Tab


def read_only() -> None:
    notice(
        "This dashboard is read-only",
        f"Managing pairs needs a login. Start the dashboard with {HASH_ENV} set (make one with "
        "`makeusrich ui --hash-password`), then log in.",
    )


async def page(tab: Tab, next: str = "/") -> None:
    target = next if next.startswith("/") and not next.startswith("//") else "/"
    if not tab.auth.enabled:
        read_only()
        return
    form(tab, lambda: ui.navigate.to(target))


def form(tab: Tab, after: Callable[[], Any]) -> None:
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
        throttle = tab.pages.throttle
        wait = throttle.begin(client)  # counted now, decided before the await below
        if wait > 0:
            password.error = f"Too many failed logins; try again in {wait:.0f} s"
            return
        stored = tab.auth.password_hash
        assert stored is not None
        button.disable()
        ok = False
        try:
            ok = await tab.dashboard.offload(lambda: verify_password(password.value or "", stored))
        finally:
            throttle.finished(client, ok)
            button.enable()
        if not ok:
            password.error = "Wrong password"
            return
        tab.storage["auth"] = tab.auth.session_token
        password.error = None
        tab.render_nav()
        ui.notify("Logged in", type="positive")
        after()

    button.on_click(submit)
    password.on("keydown.enter", submit)


def gate(tab: Tab) -> bool:
    """True when this tab may manage pairs; otherwise shows why not (and the login form, if there is one)."""
    if tab.can_manage():
        return True
    if tab.auth.enabled:
        form(tab, tab.refresh_page)
    else:
        read_only()
    return False
