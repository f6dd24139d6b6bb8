"""The dashboard's pages in NiceGUI's user simulation, against a real model server and real trained stores."""

from __future__ import annotations

import asyncio
import gzip
import html
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from nicegui import ui
from nicegui.testing.user import User

from makeusrich.market import read_candle_csv, sample_path
from makeusrich.pair import load_pair
from makeusrich.scoring import decision
from makeusrich.store import TrackFiles, TrackSummary, Why
from makeusrich.store.track_schema import empty_rows, month_of
from makeusrich.track.rows import append_rows, forecast_rows, gap_rows, score_rows
from makeusrich.track.summary import summarize
from makeusrich.ui.auth import AuthConfig, hash_password
from makeusrich.ui.format import format_price, price_decimals
from makeusrich.v2client import V2Client
from tests.fixtures.model_server import RunningServer
from tests.fixtures.models import TrainedStore, small_pair
from tests.serving.helpers import next_version
from tests.ui.conftest import (
    PASSWORD,
    Open,
    copy_store,
    refreshed,
    report_time_zone,
    running_dashboard,
    write_pair,
)

LEVELS = (0.05, 0.25, 0.5, 0.75, 0.95)
LAST_CLOSE = 22029.16  # the bundled sample's last candle (2022-06-15 00:00 UTC)
# A cheap scrypt cost so that logging in takes no time in tests; production hashes use auth.N.
FAST_LOGIN = AuthConfig(hash_password(PASSWORD, n=1024, r=8, p=1), "test-secret", True)


def texts(element: ui.element) -> str:
    """What a person reads in an element: the text of an HTML card, or every label under other elements."""
    if isinstance(element, ui.html):
        return html.unescape(re.sub(r"\s*<[^>]+>\s*", " | ", element.content))
    found = [getattr(e, "text", "") for e in element.descendants()]
    return " | ".join(t for t in found if t)


def card(user: User, key: str) -> str:
    """The text of the card of pair `key` (namespace/name)."""
    found = [e for e in user.find(marker="pair-card").elements if f'data-pair="{key}"' in getattr(e, "content", "")]
    assert len(found) == 1, f"expected one card for {key}, found {len(found)}"
    return texts(found[0])


async def login(user: User) -> None:
    await user.open("/login")
    await user.should_see(marker="password", retries=20)
    user.find(marker="password").type(PASSWORD)
    user.find(marker="submit-login").click()
    await user.should_see(marker="new-pair", retries=40)


async def test_overview_card_shows_price_forecast_and_honest_skill(
    dashboard: Open, model_server: RunningServer, pairs_dir: Path
) -> None:
    store = model_server.store
    assert store is not None
    write_pair(pairs_dir, store.pair)
    metadata = store.outcome.metadata
    async with V2Client(model_server.url) as client:  # what the card must show, asked independently
        meta = await client.model_metadata(store.pair.name)
    async with dashboard(pairs_dir=pairs_dir, store=store.url, server_url=model_server.url) as user:
        await user.open("/")
        report_time_zone(user)  # as the browser does once connected
        await user.should_see("Ready", retries=60)
        shown = card(user, "default/btc-usdt")
        assert "BTC/USDT" in shown and "btc-usdt · 1h" in shown
        assert format_price(LAST_CLOSE, price_decimals(LAST_CLOSE)) == "22,029.16"
        assert "22,029.16" in shown
        state = running_dashboard().states["default/btc-usdt"]
        assert state.served_version == meta.version == store.version
        assert len(state.forecast) == 1 and state.forecast[0] > 0
        assert format_price(state.forecast[0], 2) in shown
        assert f"{(state.forecast[0] / LAST_CLOSE - 1) * 100:+.3f}%" in shown
        test, validation = metadata.metrics.test.model, metadata.metrics.validation.model
        assert f"{test.rel_mae:.3f}" in shown and f"{validation.rel_mae:.3f}" in shown
        direction = test.directional
        assert direction is not None
        assert f"{direction.accuracy * 100:.1f}% ({direction.wilson_low * 100:.1f}-" in shown
        assert f"LSTM {store.version}" in shown
        # The browser said Europe/Paris: the last candle closed at 01:00 UTC, 03:00 in Paris in June.
        await user.should_see("last close · 2022-06-15 03:00 CEST", retries=30)
        assert "⚠" not in shown  # no error on the card


async def test_overview_filters_and_sorts(dashboard: Open, model_server: RunningServer, pairs_dir: Path) -> None:
    store = model_server.store
    assert store is not None
    write_pair(pairs_dir, store.pair)
    write_pair(pairs_dir, small_pair("eth-usdt", currency="eth"))  # the sample has no ETH candles
    async with dashboard(pairs_dir=pairs_dir, store=store.url, server_url=model_server.url) as user:
        await user.open("/")
        await user.should_see("ETH/USDT", retries=60)
        await user.should_see("BTC/USDT")
        user.find(marker="filter").type("eth")
        await user.should_not_see("BTC/USDT")
        await user.should_see("ETH/USDT")
        user.find(marker="filter").clear()
        user.find(marker="problems-only").click()
        await user.should_see("ETH/USDT", retries=20)
        await user.should_not_see("BTC/USDT", retries=20)
        # The ETH card's problem is on the ETH card only.
        eth = card(user, "default/eth-usdt")
        assert "BTCUSDT 1h candles only" in eth


async def test_server_down_shows_on_the_card_and_the_rest_still_works(
    dashboard: Open, trained_store: TrainedStore, pairs_dir: Path
) -> None:
    write_pair(pairs_dir, trained_store.pair)
    async with dashboard(pairs_dir=pairs_dir, store=trained_store.url, server_url="http://127.0.0.1:9") as user:
        await user.open("/")
        await user.should_see("Serving down", retries=60)
        shown = card(user, "default/btc-usdt")
        assert "⚠ the model server at http://127.0.0.1:9 is unreachable" in shown
        assert "22,029.16" in shown  # candles and the store still answer
        assert f"{trained_store.outcome.metadata.metrics.test.model.rel_mae:.3f}" in shown
        await user.should_see("1 with problems")
        await user.open("/pair/default/btc-usdt")
        await user.should_see(marker="backtest-error", retries=60)
        await user.should_see("No backtest: the backtest needs the model server")
        await user.should_see(marker="skill-table")  # the recorded skill still shows


async def test_pair_page_shows_chart_skill_backtest_and_versions(
    dashboard: Open, model_server: RunningServer, pairs_dir: Path
) -> None:
    store = model_server.store
    assert store is not None
    write_pair(pairs_dir, store.pair)
    recorded = store.outcome.metadata.metrics.test.model.rel_mae
    assert recorded is not None
    async with dashboard(pairs_dir=pairs_dir, store=store.url, server_url=model_server.url) as user:
        await user.open("/pair/default/btc-usdt")
        await user.should_see(marker="pair-title", retries=60)
        await user.should_see(marker="backtest-agrees", retries=100)
        chart = user.find(marker="price-chart").elements.pop()
        assert isinstance(chart, ui.echart)
        series = {s["name"]: s for s in chart.options["series"]}
        assert len(series["Candles"]["data"]) == 120
        assert series["Candles"]["data"][-1][1] == pytest.approx(LAST_CLOSE)
        forecast = [x for x in series["Forecast"]["data"] if x is not None]
        assert len(forecast) == 2 and forecast[0] == pytest.approx(LAST_CLOSE)  # from the last close, one ahead
        assert len(chart.options["xAxis"]["data"]) == 121
        skill = user.find(marker="skill-table").elements.pop()
        assert isinstance(skill, ui.table)
        names = [row["name"] for row in skill.rows]
        assert names[0] == "LSTM (this model)" and "Persistence (next = last close)" in names
        assert skill.rows[0]["test_ratio"] == f"{recorded:.3f}"
        backtest = running_dashboard()._backtests[("default/btc-usdt", store.version)].result()
        assert backtest.n == store.outcome.metadata.data.windows["test"]
        assert backtest.ratio == pytest.approx(recorded, rel=1e-4)
        versions = user.find(marker="versions-table").elements.pop()
        assert isinstance(versions, ui.table)
        assert versions.rows[0]["version"] == store.version
        assert versions.rows[0]["marks"] == "served · promoted"
        # would following it have made money: the recorded rules, and their equity curves recomputed now
        traded = store.outcome.metadata.metrics.test.decision
        assert traded is not None and backtest.decisions is not None and backtest.decision_agrees
        rules = user.find(marker="after-fees-table").elements.pop()
        assert isinstance(rules, ui.table)
        assert [row["rule"] for row in rules.rows] == [decision.RULE_NAMES[r] for r in decision.RULES]
        hold = math.expm1(traded.rules["buy-and-hold"].total_log_return)
        assert rules.rows[4]["return"] == decision.percent(hold) and rules.rows[4]["vs_holding"] == "—"
        relative, low, high = (decision.percent(x) for x in traded.against_twin["risk-target"].relative)
        assert rules.rows[2]["vs_twin"].startswith(f"{relative} [{low}, {high}], p ")
        await user.should_see(marker="equity-chart", retries=60)
        equity = user.find(marker="equity-chart").elements.pop()
        assert isinstance(equity, ui.echart)
        curves = {s["name"]: s["data"] for s in equity.options["series"]}
        assert set(curves) == set(decision.RULE_NAMES.values()) and curves["cash"][-1] == 1.0
        assert curves["holding"][-1] == pytest.approx(hold + 1, rel=1e-3)
        await user.should_see(marker="promotion-reason")
        await user.should_see("test MAE is")  # the point rule's note, in every promotion reason
        await user.should_not_see(marker="edit")  # read-only by default


async def test_a_damaged_version_and_an_interrupted_promotion_show_as_what_they_are(
    dashboard: Open, trained_store: TrainedStore, pairs_dir: Path
) -> None:
    """One metadata.json of binary garbage, and one that is JSON but breaks the contract, mark those versions
    damaged, and the table and last-run panel stay. A run killed between metadata.json and latest.json decided to
    promote, but never did: not "Promoted: yes"."""
    store = trained_store.store()
    good = trained_store.version
    meta = store.metadata(good)
    base = {**meta, "promotion": {**meta["promotion"], "promoted": True, "reason": "validation MAE is 0.99"}}
    files = {path: store.read_file(good, path) for path in meta["files"]}
    crashed, damaged, malformed = next_version(store, 1), next_version(store, 2), next_version(store, 3)
    store.publish(crashed, files, {**base, "version": crashed}, promote=False)  # as if killed before latest.json
    store.publish(damaged, files, {**base, "version": damaged}, promote=False)
    store.objects.put(store.version_prefix(damaged) + "metadata.json", bytes(range(256)) * 4)
    store.publish(malformed, files, {**base, "version": malformed, "window": "wide"}, promote=False)
    write_pair(pairs_dir, trained_store.pair)
    async with dashboard(pairs_dir=pairs_dir, store=trained_store.url) as user:
        await user.open("/pair/default/btc-usdt")
        await user.should_see(marker="versions-table", retries=60)
        rows = {row["version"]: row for row in user.find(marker="versions-table").elements.pop().rows}
        baseline = trained_store.outcome.first
        assert baseline is not None and set(rows) == {baseline.version, good, crashed, damaged, malformed}
        assert rows[good]["promoted"] == "yes" and "promoted" in rows[good]["marks"]
        assert rows[crashed]["promoted"] == "no" and "never promoted" in rows[crashed]["reason"]
        assert rows[damaged]["marks"] == "damaged" and "is not valid JSON" in rows[damaged]["reason"]
        assert rows[malformed]["marks"] == "damaged" and "is malformed: window:" in rows[malformed]["reason"]
        assert "UnicodeDecodeError" not in str(rows)
        await user.should_see(marker="promotion-reason")


async def test_empty_overview_and_unknown_pair_say_so(dashboard: Open, pairs_dir: Path) -> None:
    async with dashboard(pairs_dir=pairs_dir) as user:
        await user.open("/pair/default/nope")
        await user.should_see("No pair default/nope", retries=40)
        await user.open("/")
        await user.should_see("No pairs yet", retries=40)
        await user.should_see(f"Add a CurrencyPair file to {pairs_dir}")
        await user.should_see("Editing here is off: set MAKEUSRICH_UI_PASSWORD_HASH")  # no login is configured
        await user.should_not_see("once logged in")


async def test_read_only_without_a_password(dashboard: Open, trained_store: TrainedStore, pairs_dir: Path) -> None:
    write_pair(pairs_dir, trained_store.pair)
    async with dashboard(pairs_dir=pairs_dir, store=trained_store.url) as user:
        await user.open("/")
        await user.should_see(marker="read-only", retries=20)
        await user.should_not_see(marker="login")
        await user.should_not_see(marker="new-pair")
        await user.open("/new")
        await user.should_see("This dashboard is read-only", retries=20)
        await user.should_not_see(marker="save")
        await user.open("/edit/default/btc-usdt")
        await user.should_see("This dashboard is read-only", retries=20)
        await user.open("/login")
        await user.should_see("This dashboard is read-only", retries=20)


async def test_login_enables_management_and_a_wrong_password_does_not(
    dashboard: Open, trained_store: TrainedStore, pairs_dir: Path
) -> None:
    write_pair(pairs_dir, trained_store.pair)
    async with dashboard(pairs_dir=pairs_dir, store=trained_store.url, auth=FAST_LOGIN) as user:
        await user.open("/new")
        await user.should_see(marker="password", retries=40)  # sent to the login first
        user.find(marker="password").type("wrong password")
        user.find(marker="submit-login").click()
        await user.should_see("Wrong password", retries=40)
        await user.should_not_see(marker="new-pair")
        user.find(marker="password").clear().type(PASSWORD)
        user.find(marker="submit-login").click()
        await user.should_see(marker="new-pair", retries=40)
        await user.open("/pair/default/btc-usdt")
        await user.should_see(marker="edit", retries=60)
        user.find(marker="logout").click()
        await user.should_see(marker="login", retries=20)
        await user.should_see(marker="filter", retries=40)  # back on the overview
        await user.open("/new")
        await user.should_see(marker="password", retries=40)


async def test_form_shows_validation_messages_from_the_spec(
    dashboard: Open, trained_store: TrainedStore, pairs_dir: Path
) -> None:
    async with dashboard(pairs_dir=pairs_dir, store=trained_store.url, auth=FAST_LOGIN) as user:
        await login(user)
        await user.open("/new")
        await user.should_see(marker="save", retries=40)
        user.find(marker="field-metadata.name").type("Bad_Name")
        user.find(marker="field-spec.currency").type("b")
        user.find(marker="field-spec.compare").type("usdt")
        user.find(marker="field-spec.schedule").clear().type("* *")
        window = user.find(marker="field-spec.model.window").elements.pop()
        window.value = 3
        user.find(marker="save").click()
        await user.should_see("Some fields need fixing", retries=20)
        fields = {m: user.find(marker=f"field-{m}").elements.pop() for m in ("metadata.name", "spec.currency")}
        assert "lower-case letters, digits and '-'" in str(fields["metadata.name"].error)
        assert "2 to 20 lower-case letters or digits" in str(fields["spec.currency"].error)
        assert "must have 5 fields" in str(user.find(marker="field-spec.schedule").elements.pop().error)
        assert "greater than or equal to 8" in str(window.error)
        assert user.find(marker="field-spec.compare").elements.pop().error is None
        assert list(pairs_dir.iterdir()) == []  # nothing was written


async def test_create_edit_and_delete_a_pair_file(
    dashboard: Open, trained_store: TrainedStore, pairs_dir: Path
) -> None:
    write_pair(pairs_dir, trained_store.pair)
    async with dashboard(pairs_dir=pairs_dir, store=trained_store.url, auth=FAST_LOGIN) as user:
        await login(user)
        await user.open("/new")
        await user.should_see(marker="save", retries=40)
        user.find(marker="field-metadata.name").type("eth-usdt")
        user.find(marker="field-spec.currency").type("ETH")  # lower-cased as the spec wants
        user.find(marker="field-spec.compare").type("usdt")
        user.find(marker="field-spec.lookbackDays").elements.pop().value = 90
        user.find(marker="save").click()
        await user.should_see(marker="filter", retries=60)  # back on the overview
        created = load_pair(pairs_dir / "eth-usdt.yaml")
        assert created.spec.currency == "eth" and created.spec.lookback_days == 90 and created.spec.model.window == 120
        await user.should_see("ETH/USDT", retries=60)

        # A name that exists already is refused, and says so.
        await user.open("/new")
        await user.should_see(marker="save", retries=40)
        user.find(marker="field-metadata.name").type("btc-usdt")
        user.find(marker="field-spec.currency").type("btc")
        user.find(marker="field-spec.compare").type("usdt")
        user.find(marker="save").click()
        await user.should_see(marker="form-error", retries=40)
        await user.should_see("a pair named btc-usdt already exists")

        await user.open("/edit/default/eth-usdt")
        await user.should_see(marker="save", retries=60)
        assert not user.find(marker="field-metadata.name").elements.pop().enabled  # names are fixed
        user.find(marker="field-spec.suspend").click()
        user.find(marker="field-spec.serving.pinnedVersion").type("20260101T000000Z")
        user.find(marker="save").click()
        await user.should_see(marker="pair-title", retries=60)  # the form sends you to the pair's page
        edited = load_pair(pairs_dir / "eth-usdt.yaml")
        assert edited.spec.suspend is True and edited.spec.serving.pinned_version == "20260101T000000Z"
        assert edited.spec.lookback_days == 90
        await user.should_see("Suspended", retries=60)
        await user.should_see("Pinned")

        await user.open("/pair/default/eth-usdt")
        await user.should_see(marker="delete", retries=60)
        user.find(marker="delete").click()
        await user.should_see(marker="confirm-delete", retries=20)
        user.find(marker="confirm-delete").click()
        await user.should_see("Deleted default/eth-usdt", retries=40)
        assert not (pairs_dir / "eth-usdt.yaml").exists()
        assert (pairs_dir / "btc-usdt.yaml").exists()
        await refreshed(running_dashboard())
        assert "default/eth-usdt" not in running_dashboard().states


def sample_lines(count: int) -> list[str]:
    with gzip.open(sample_path(), "rt") as handle:
        lines = handle.read().splitlines()
    return [lines[0], *lines[-count:]]


@pytest.mark.slow
async def test_live_updates_on_new_candles_and_new_model_versions(
    dashboard: Open,
    trained_store_template: TrainedStore,
    start_model_server: object,
    pairs_dir: Path,
    tmp_path: Path,
) -> None:
    store = copy_store(trained_store_template, tmp_path / "store")
    server: RunningServer = start_model_server("--store", store.url, "--poll-seconds", "0.5")  # type: ignore[operator]
    write_pair(pairs_dir, store.pair)
    lines = sample_lines(400)
    candles = tmp_path / "candles.csv"
    candles.write_text("\n".join(lines[:-1]) + "\n")  # every candle but the last one
    async with dashboard(pairs_dir=pairs_dir, store=store.url, server_url=server.url, source=f"file:{candles}") as user:
        await user.open("/")
        await user.should_see("Ready", retries=60)
        dash = running_dashboard()
        before = dash.states["default/btc-usdt"]
        assert before.last_close == pytest.approx(22136.41)
        await user.should_see("22,136.41")
        with candles.open("a") as handle:  # the next candle closes
            handle.write(lines[-1] + "\n")
        await user.should_see("22,029.16", retries=60)
        after = dash.states["default/btc-usdt"]
        assert after.forecast != before.forecast  # a new forecast for the new candle, without a reload

        newer = await asyncio.to_thread(store.train_again)
        assert newer.promoted
        await user.should_see(f"LSTM {newer.version}", retries=200)
        assert dash.states["default/btc-usdt"].served_version == newer.version


def write_track_record(store: TrainedStore, hours: int = 60) -> TrackSummary:
    """A track record for the stored version, written with the tracker's own row functions: `hours` scored
    hourly forecasts on the bundled candles' last days, one origin of them a gap."""
    candles = read_candle_csv(sample_path()).tail(hours + 1).reset_index(drop=True)
    hour = pd.Timedelta(hours=1)
    closes = candles["close"].to_numpy(dtype=float)
    origins = list(candles["open_time"] + hour)
    rows = empty_rows()
    done = (origins[-1] + pd.Timedelta(minutes=5)).to_pydatetime()
    for k in range(hours):
        if k == hours // 2:
            part = gap_rows(origins[k], hour, 1, store.version, "the model server did not answer", closes[k], done)
        else:
            guess = closes[k] + 0.3 * (closes[k + 1] - closes[k])
            q = np.array([[guess * f for f in (0.99, 0.995, 1.0, 1.005, 1.01)]])
            part = forecast_rows(origins[k], hour, store.version, closes[k], [guess], q, LEVELS, done)
        rows = append_rows(rows, part)
    rows, _ = score_rows(rows, pd.Series(closes[1:], index=origins[1:]), done)
    summary = summarize(rows, store.pair.name, store.pair.namespace, "1h", done)
    pair_store = store.store()
    for month in sorted({month_of(o) for o in rows["origin"]}):
        TrackFiles(pair_store).write(month, rows[rows["origin"].map(month_of) == month].reset_index(drop=True))
    TrackFiles(pair_store).write_summary(summary)
    return summary


async def test_the_card_and_the_pair_page_show_the_live_track_record(
    dashboard: Open, trained_store: TrainedStore, pairs_dir: Path
) -> None:
    summary = write_track_record(trained_store)
    month = summary.window("30d")
    assert month is not None and month.point is not None and (month.made, month.missed) == (59, 1)
    baseline = trained_store.outcome.first
    assert baseline is not None
    why = Why("makeusrich track", "worse than the baseline on the same live hours")
    trained_store.store().rollback(baseline.version, trained_store.version, why)
    write_pair(pairs_dir, trained_store.pair)
    async with dashboard(pairs_dir=pairs_dir, store=trained_store.url, server_url="http://127.0.0.1:9") as user:
        await user.open("/")
        await user.should_see("Live 30 d", retries=60)
        text = card(user, "default/btc-usdt")
        assert f"Live 30 d: MAE ratio {month.point.rel_mae:.3f} on 59 forecasts" in text
        assert "1 missed" in text and "90% range held" in text and "Rolled back" in text
        await user.open("/pair/default/btc-usdt")
        await user.should_see(marker="track-decisions", retries=60)
        decisions = user.find(marker="track-decisions").elements.pop()
        assert isinstance(decisions, ui.table)
        assert [row["decision"] for row in decisions.rows] == [d.decision for d in summary.decisions]
        assert all(" of 216,000 (" in row["evidence"] for row in decisions.rows)
        changes = user.find(marker="changes-table").elements.pop()
        assert isinstance(changes, ui.table)
        newest = changes.rows[0]
        assert newest["action"] == "rolled back" and newest["by"] == "makeusrich track"
        assert newest["change"] == f"{trained_store.version} → {baseline.version}" and newest["reason"] == why.reason
        await user.should_see(marker="track-windows", retries=60)
        table = user.find(marker="track-windows").elements.pop()
        assert isinstance(table, ui.table)
        by_window = {row["window"]: row for row in table.rows}
        assert by_window["last 30 days"]["made"] == "59" and by_window["last 30 days"]["missed"] == "1"
        assert by_window["since this version"]["mae_ratio"] == f"{month.point.rel_mae:.3f}"
        chart = user.find(marker="track-chart").elements.pop()
        assert isinstance(chart, ui.echart)
        series = {s["name"]: s["data"] for s in chart.options["series"]}
        assert len(series["Served forecast"]) == 60 and series["Served forecast"][30] is None  # the gap: a hole
        assert series["Actual close"][-1] == pytest.approx(LAST_CLOSE)
        await user.should_see("1 missed origin(s) are holes in the line")
