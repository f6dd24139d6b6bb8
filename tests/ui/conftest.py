"""Fixtures for the dashboard's tests: the real app in NiceGUI's user simulation, pair folders. (The Kubernetes API
emulator is the shared `kube` fixture of tests/fixtures/kube_emulator.py.)

`dashboard` opens the app exactly as `makeusrich ui` builds it (create_app + ui.run), but in NiceGUI's user
simulation: no browser, pages driven through the `User` object. It is built here rather than with NiceGUI's
`user` fixture because the app must be created after NiceGUI resets its globals and before its startup runs.
The model server and trained stores are the real ones from tests/fixtures (plugins of the root conftest).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from nicegui import app, core, ui
from nicegui.functions.download import download
from nicegui.functions.navigate import Navigate
from nicegui.functions.notify import notify
from nicegui.storage import Storage
from nicegui.testing.general import nicegui_reset_globals, prepare_simulation
from nicegui.testing.user import User
from nicegui.testing.user_interaction import UserInteraction

from makeusrich.pair import CurrencyPair
from makeusrich.pair_sources import PairSource, pair_yaml
from makeusrich.ui.app import create_app
from makeusrich.ui.auth import AuthConfig, hash_password
from makeusrich.ui.frame import TZ_EVENT
from makeusrich.ui.settings import Options, UIConfig
from makeusrich.ui.state import Dashboard
from tests.fixtures.models import TrainedStore
from tests.fixtures.waiting import eventually

VIEWER_TZ = "Europe/Paris"
PASSWORD = "correct horse battery"
FAST = Options(refresh_seconds=0.3, chart_candles=120, serving_timeout=3.0)
READ_ONLY = AuthConfig(password_hash=None, storage_secret="test-secret", secret_from_env=True)


@pytest.fixture(scope="session", autouse=True)
def nicegui_storage() -> Iterator[None]:
    """NiceGUI's per-browser storage in a temporary folder, not ./.nicegui (what NiceGUI's plugin does)."""
    folder = Path(tempfile.mkdtemp(prefix="makeusrich-ui-storage-"))
    Storage.path = folder
    app.storage = Storage()
    yield
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def login_auth() -> AuthConfig:
    return AuthConfig(password_hash=hash_password(PASSWORD), storage_secret="test-secret", secret_from_env=True)


def write_pair(folder: Path, pair: CurrencyPair) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{pair.name}.yaml"
    path.write_text(pair_yaml(pair))
    return path


@pytest.fixture
def pairs_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "pairs"
    folder.mkdir()
    return folder


@asynccontextmanager
async def simulate(config: UIConfig, auth: AuthConfig, source: PairSource | None = None) -> AsyncIterator[User]:
    """The app as `makeusrich ui` makes it, served in NiceGUI's user simulation; yields its simulated user."""
    with nicegui_reset_globals():
        os.environ["NICEGUI_USER_SIMULATION"] = "true"
        try:
            prepare_simulation()
            root = create_app(config, auth, source)
            ui.run(root, storage_secret=auth.storage_secret)
            failure: BaseException | None = None
            async with (
                core.app.router.lifespan_context(core.app),
                httpx.AsyncClient(transport=httpx.ASGITransport(core.app), base_url="http://test") as client,
            ):
                user = User(client)
                try:
                    yield user
                except BaseException as exc:  # NiceGUI's lifespan has no finally: let it shut down, then raise
                    failure = exc
            if failure is not None:
                raise failure
        finally:
            os.environ.pop("NICEGUI_USER_SIMULATION", None)
            ui.navigate = Navigate()
            ui.notify = notify
            ui.download = download


Open = Callable[..., AbstractAsyncContextManager[User]]


@pytest.fixture
def dashboard(caplog: pytest.LogCaptureFixture) -> Iterator[Open]:
    """`async with dashboard(pairs_dir=..., store=..., server_url=..., auth=...) as user:` opens the app.

    Like NiceGUI's `user` fixture, the test fails when the app logged an ERROR (an exception in a page)."""

    def open_app(
        *,
        pairs_dir: Path | None = None,
        store: str | None = None,
        server_url: str = "http://127.0.0.1:9",
        source: str = "sample",
        auth: AuthConfig = READ_ONLY,
        pair_source: PairSource | None = None,
        options: Options = FAST,
    ) -> AbstractAsyncContextManager[User]:
        config = UIConfig(
            pairs_dir=str(pairs_dir or "pairs"),
            store_url=store,
            server_url=server_url,
            source=source,
            refresh_seconds=options.refresh_seconds,
            chart_candles=options.chart_candles,
            serving_timeout=options.serving_timeout,
        )
        return simulate(config, auth, pair_source)

    yield open_app
    errors = [r for r in caplog.get_records("call") if r.levelname == "ERROR"]
    if errors:
        pytest.fail(f"the app logged errors: {[r.getMessage() for r in errors]}", pytrace=False)


def report_time_zone(user: User, tz: str = VIEWER_TZ) -> None:
    """What the page's script does in a browser: send the browser's time zone to the server."""
    assert user.client is not None
    UserInteraction(user, {user.client.layout}, None).trigger(TZ_EVENT, tz)


def running_dashboard() -> Dashboard:
    """The Dashboard of the app now simulated (to wait for refreshes instead of sleeping)."""
    found: Dashboard = app.state.makeusrich_dashboard
    return found


async def refreshed(dashboard: Dashboard) -> None:
    """Wait for one whole refresh that started after this call."""
    dashboard.wake()
    start = dashboard.refreshed_at or 0.0
    await eventually(
        lambda: (dashboard.refreshed_at or 0.0) > start, what="one whole refresh of the dashboard", timeout=10
    )


def copy_store(template: TrainedStore, root: Path) -> TrainedStore:
    shutil.copytree(template.root, root)
    return replace(template, root=root)
