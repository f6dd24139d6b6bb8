"""The dashboard application: configuration, sources, the shared refresh loop, and `run_ui`.

`create_app` wires everything into NiceGUI's global app (pages, /healthz, startup and shutdown) and returns the
root page function; `run_ui` then serves it. Tests call `create_app` inside NiceGUI's user simulation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from nicegui import app, run, ui
from starlette.middleware.sessions import SessionMiddleware

from makeusrich.market import CandleFeed, Source
from makeusrich.net import check_free
from makeusrich.pair_sources import PairSource
from makeusrich.ui.auth import AuthConfig, auth_from_env
from makeusrich.ui.frame import STYLESHEET, Pages
from makeusrich.ui.root import make_root
from makeusrich.ui.security import SecurityHeaders
from makeusrich.ui.settings import UIConfig
from makeusrich.ui.state import Dashboard

log = logging.getLogger("makeusrich")


async def io_offload(call: Callable[[], Any]) -> Any:
    """Run blocking work in NiceGUI's I/O thread pool; io_bound answers None when the app is stopping."""
    box = await run.io_bound(lambda: (call(),))
    if box is None:
        raise asyncio.CancelledError("the app is shutting down")
    return box[0]


def build_source(config: UIConfig) -> PairSource:
    return config.pair_source(config.store_url, agent="makeusrich-ui", offload=io_offload)


def create_app(config: UIConfig, auth: AuthConfig, source: PairSource | None = None) -> Callable[[], Any]:
    """Register the dashboard with NiceGUI's app and return the root page function for `ui.run`."""
    source = source or build_source(config)
    feed = CandleFeed(Source.parse(config.source), api_url=config.api_url, max_retries=config.binance_retries)
    dashboard = Dashboard(source, feed, config.options, offload=io_offload)
    pages = Pages(dashboard, auth, config.title)
    app.on_startup(dashboard.start)
    app.on_shutdown(dashboard.stop)
    # The session cookie's middleware, then ours around it, so that ours sees (and marks Secure) the cookie it sets.
    # NiceGUI adds no session middleware of its own when the app has one.
    app.add_middleware(SessionMiddleware, secret_key=auth.storage_secret)
    app.add_middleware(SecurityHeaders, secure_cookies=config.secure_cookies)
    ui.add_css(STYLESHEET.read_text(), shared=True)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        """Liveness and readiness: answers once the app runs; `loaded` says the first refresh finished, `errors`
        what each card with a problem says first (for monitoring and scripts)."""
        return {
            "ok": True,
            "loaded": dashboard.loaded.is_set(),
            "pairs": len(dashboard.states),
            "refreshedAt": dashboard.refreshed_at,
            "sourceError": dashboard.source_error,
            "errors": {key: state.errors[0] for key, state in dashboard.states.items() if state.errors},
        }

    app.state.makeusrich_dashboard = dashboard
    return make_root(pages)


def run_ui(config: UIConfig, auth: AuthConfig | None = None) -> None:
    """Serve the dashboard until interrupted."""
    auth = auth or auth_from_env()
    check_free(config.host, config.port)  # before announcing anything; uvicorn binds it again below
    source = build_source(config)
    root = create_app(config, auth, source)
    login = "login enabled" if auth.enabled else "read-only (no MAKEUSRICH_UI_PASSWORD_HASH)"
    models = f"models from {config.store_url}" if config.store_url else "no model store"
    log.info("dashboard on http://%s:%d: %s, %s, %s", config.host, config.port, source.describe(), models, login)
    ui.run(
        root,
        host=config.host,
        port=config.port,
        title=config.title,
        favicon="📈",
        dark=None,
        reload=False,
        show=False,
        storage_secret=auth.storage_secret,
        show_welcome_message=False,
        uvicorn_logging_level=config.log_level,
        proxy_headers=bool(config.trusted_proxies),  # no proxy is trusted unless one is named
        forwarded_allow_ips=config.trusted_proxies or None,
    )
