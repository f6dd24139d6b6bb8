"""A real browser on the real app: `makeusrich ui` in a subprocess, Debian's chromium headless through selenium.

The test reads what a person sees (rendered text, drawn charts, layout width on a phone). The dashboard runs with
its default store (./.makeusrich/store in its working folder), as after `make run`. Chromium is told never to
reach the network; the page needs nothing but the app itself. The README's screenshots are made by
`make screenshots` (docs/screenshots.py), never by a test; a test here checks they are not older than the pages.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from makeusrich.scoring import decision
from makeusrich.store import BacktestResult, FoldResult, PairStore, RatioInterval, pair_store, write_backtest
from tests.fixtures.model_server import ROOT, RunningServer
from tests.fixtures.models import small_pair
from tests.fixtures.waiting import eventually_sync
from tests.ui.browser import SCREENSHOTS, RunningUI, chromium, start_ui, stop, ui_fingerprint
from tests.ui.conftest import write_pair


def body_text(driver: WebDriver) -> str:
    return str(driver.find_element(By.TAG_NAME, "body").text)


def wait_for_text(driver: WebDriver, *needles: str, timeout: float = 30.0) -> str:
    """Until the page's text holds every needle; returns that text. The failure names what is still missing."""

    def shown() -> str:
        text = body_text(driver)
        missing = [needle for needle in needles if needle not in text]
        assert not missing, f"{missing} missing from the page, which shows: {text[-1500:]!r}"
        return text

    return eventually_sync(
        shown,
        what=f"the page to show {list(needles)}",
        timeout=timeout,
        interval=0.1,
        ignoring=(NoSuchElementException, StaleElementReferenceException),  # the page is being redrawn
    )


def drawn_charts(driver: WebDriver) -> int:
    """How many of the page's first three canvases are drawn at a readable size (not collapsed)."""
    canvases = driver.find_elements(By.CSS_SELECTOR, "canvas")[:3]
    return sum(1 for c in canvases if c.size["width"] > 200 and c.size["height"] > 150)


def overflows(driver: WebDriver) -> bool:
    """Whether the page is wider than the window (a horizontal scrollbar on a phone)."""
    return bool(driver.execute_script("return document.documentElement.scrollWidth > window.innerWidth + 1"))


def publish_walk_forward(store: PairStore) -> None:
    """A stored walk-forward beside the served version, as `makeusrich backtest --publish` leaves one: two folds
    made of the version's own test scores (the page shows what is stored; the numbers are the backtest's job)."""
    latest = store.latest()
    assert latest is not None
    meta = store.model_metadata(latest.version)
    test = meta.metrics.test
    assert test.ranges is not None
    folds = [
        FoldResult(
            fold=k, cutoff=f"2022-0{k}-01T00:00:00Z", trained_from="2021-01-01T00:00:00Z",
            forecast_to=f"2022-0{k + 1}-01T00:00:00Z", epochs=3, train_seconds=1.0, point=test.model,
            ranges=test.ranges,
        )
        for k in (1, 2)
    ]  # fmt: skip
    pooled = test.ranges.model_copy(
        update={"interval_ratios": {"climatology": RatioInterval(ratio=0.9, low=0.8, high=1.0)}}
    )
    write_backtest(
        store,
        latest.version,
        BacktestResult(
            pair=meta.pair, model=meta.spec, source="sample", symbol=meta.symbol, interval=meta.interval,
            lookback_days=60, step_days=30, folds=folds, pooled_point=test.model, pooled_ranges=pooled, seconds=2,
        ),
    )  # fmt: skip


@pytest.fixture
def running_ui(model_server: RunningServer, tmp_path: Path) -> Iterator[RunningUI]:
    store = model_server.store
    assert store is not None
    shutil.copytree(store.root, tmp_path / ".makeusrich" / "store")  # where `make run` leaves a model
    publish_walk_forward(pair_store(f"file://{tmp_path / '.makeusrich' / 'store'}", "default", store.pair.name))
    pairs = tmp_path / "pairs"  # the default pairs folder
    write_pair(pairs, store.pair)
    write_pair(pairs, small_pair("eth-usdt", currency="eth"))  # the bundled candles hold no ETH: an error card
    args = ["--server-url", model_server.url, "--source", "sample"]
    ui = start_ui([*args, "--refresh-seconds", "2"], tmp_path)
    yield ui
    stop(ui.process)


@pytest.mark.slow
def test_overview_and_pair_page_in_chromium(running_ui: RunningUI, model_server: RunningServer) -> None:
    store = model_server.store
    assert store is not None
    recorded = f"{store.outcome.metadata.metrics.test.model.rel_mae:.3f}"
    traded = store.outcome.metadata.metrics.test.decision
    assert traded is not None
    after_fees = decision.headline(traded, "test split")  # with each rule's interval against holding
    driver = chromium()
    try:
        driver.get(running_ui.url)
        text = wait_for_text(driver, "22,029.16", "CEST")
        lower = text.lower()
        assert "btc/usdt" in lower and "eth/usdt" in lower
        assert "last close · 2022-06-15 03:00 cest" in lower  # 01:00 UTC, in the browser's zone
        assert "ready" in lower and "mae ratio test" in lower and recorded in text
        assert f"LSTM {store.version}" in text
        assert "the bundled sample holds btcusdt 1h candles only" in lower  # ETH's problem, on its card
        assert "2 pairs · 1 with problems" in text and "times are candle closes, Europe/Paris" in text
        assert "90%: " in text and "Stale" in text  # the range on the card; sample candles are old, and say so
        assert after_fees in text, text  # the answer after fees
        cards = driver.find_elements(By.CSS_SELECTOR, ".pair-card")
        assert len(cards) == 2 and all(card.is_displayed() for card in cards)
        assert "model store" not in lower  # the default store is found, not refused

        driver.find_element(By.CSS_SELECTOR, 'a[href="/pair/default/btc-usdt"]').click()  # no reload: SPA navigation
        text = wait_for_text(driver, "matches the number recorded at training", timeout=60)
        assert driver.current_url.endswith("/pair/default/btc-usdt")
        for heading in ("Price and forecast", "Skill on held-out data", "Backtest on the test split", "Versions"):
            assert heading in text
        assert "served · promoted" in text and "LSTM (this model)" in text and recorded in text
        eventually_sync(
            lambda: drawn_charts(driver) == 3,
            what="three charts drawn at a readable size",
            timeout=20,
            interval=0.1,
            ignoring=(StaleElementReferenceException,),
        )
        assert "Each candle is labelled by the time it closes" in text
        assert "on the price: on the test split its error is" in text  # the edge, in words
        assert "Forecast ranges" in text and "EWMA volatility (RiskMetrics)" in text and "range held" in text
        assert "Walk-forward backtest" in text and "2 retrainings replayed" in text and "pooled" in text
        assert "interval score over each naive range's, with 95% intervals: Climatology 0.900 [0.800, 1.000]." in text
        assert "Would following it have made money?" in text and after_fees + "." in text
        assert "vs holding (95%)" in text and "risk target on EWMA" in text  # the table, every rule and twin
        wait_for_text(driver, "WHAT 1 HELD ON THE TEST SPLIT BECAME, AFTER FEES", timeout=60)  # the equity curves

        driver.set_window_size(390, 844)  # a phone
        driver.get(running_ui.url)
        wait_for_text(driver, "22,029.16")
        assert not overflows(driver)
        driver.get(f"{running_ui.url}/pair/default/btc-usdt")
        wait_for_text(driver, "Backtest on the test split", timeout=60)
        assert not overflows(driver)
        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        assert errors == [], errors  # including Content-Security-Policy violations, which Chromium reports so
    finally:
        driver.quit()
    # Served by the real uvicorn: security headers; Secure cookies only once a trusted proxy says TLS, and no proxy
    # is trusted by default, loopback included (tests/ui/test_security.py names one).
    plain = httpx.get(running_ui.url)
    assert plain.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in plain.headers["content-security-policy"]
    assert "secure" not in plain.headers["set-cookie"].lower()
    claimed = httpx.get(running_ui.url, headers={"x-forwarded-proto": "https"})  # from 127.0.0.1: not believed
    assert "secure" not in claimed.headers["set-cookie"].lower()
    assert "Traceback" not in running_ui.log(), running_ui.log()[-3000:]


def test_the_readme_screenshots_show_the_current_pages() -> None:
    """docs/screenshots.json records which dashboard code `make screenshots` ran; a change to the pages must come
    with new pictures. Tests never write them: a clean clone stays clean after `make test`."""
    record = json.loads((ROOT / "docs" / "screenshots.json").read_text())
    assert record["images"] == SCREENSHOTS and all((ROOT / image).is_file() for image in SCREENSHOTS)
    assert record["uiFingerprint"] == ui_fingerprint(), (
        "the dashboard's code changed since the README's screenshots were made: run `make screenshots` and commit docs/"
    )
