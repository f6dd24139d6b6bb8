"""A real browser on the real app: `makeusrich ui` in a subprocess, Debian's chromium headless through selenium.

The test reads what a person sees (rendered text, drawn charts, layout width on a phone) and saves the README's
screenshots to docs/. Chromium is told never to reach the network; the page needs nothing but the app itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.fixtures.model_server import ROOT, RunningServer
from tests.fixtures.models import small_pair
from tests.ui.browser import RunningUI, chromium, start_ui, stop
from tests.ui.conftest import write_pair

DOCS = ROOT / "docs"

def body_text(driver: WebDriver) -> str:
    return str(driver.find_element(By.TAG_NAME, "body").text)


def wait_for_text(driver: WebDriver, *needles: str, timeout: float = 30.0) -> str:
    WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: all(n in body_text(d) for n in needles))
    return body_text(driver)


def full_page_screenshot(driver: WebDriver, path: Path, width: int = 1280) -> None:
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    chrome = int(driver.execute_script("return window.outerHeight - window.innerHeight"))
    driver.set_window_size(width, max(900, height + chrome))
    time.sleep(0.5)  # let the charts resize to the new window
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    driver.set_window_size(width, 900)


def overflows(driver: WebDriver) -> bool:
    """Whether the page is wider than the window (a horizontal scrollbar on a phone)."""
    return bool(driver.execute_script("return document.documentElement.scrollWidth > window.innerWidth + 1"))


@pytest.fixture
def running_ui(model_server: RunningServer, tmp_path: Path) -> Iterator[RunningUI]:
    store = model_server.store
    assert store is not None
    pairs = tmp_path / "pairs"
    write_pair(pairs, store.pair)
    write_pair(pairs, small_pair("eth-usdt", currency="eth"))  # the bundled candles hold no ETH: an error card
    args = ["--pairs-dir", "pairs", "--store", store.url, "--server-url", model_server.url, "--source", "sample"]
    ui = start_ui([*args, "--refresh-seconds", "2"], tmp_path)
    yield ui
    stop(ui.process)


@pytest.mark.slow
def test_overview_and_pair_page_in_chromium(running_ui: RunningUI, model_server: RunningServer) -> None:
    store = model_server.store
    assert store is not None
    recorded = f"{store.outcome.metadata['metrics']['test']['model']['rel_mae']:.3f}"
    driver = chromium()
    try:
        driver.get(running_ui.url)
        text = wait_for_text(driver, "22,029.16", "CEST")
        lower = text.lower()
        assert "btc/usdt" in lower and "eth/usdt" in lower
        assert "last close · 2022-06-15 03:00 cest" in lower  # 01:00 UTC, in the browser's zone
        assert "ready" in lower and "mae ratio test" in lower and recorded in text
        assert f"model {store.version}" in text
        assert "the bundled sample holds btcusdt 1h candles only" in lower  # ETH's problem, on its card
        assert "2 pairs · 1 with problems" in text
        cards = driver.find_elements(By.CSS_SELECTOR, ".pair-card")
        assert len(cards) == 2 and all(card.is_displayed() for card in cards)
        full_page_screenshot(driver, DOCS / "overview.png")

        driver.find_element(By.CSS_SELECTOR, 'a[href="/pair/default/btc-usdt"]').click()  # no reload: SPA navigation
        text = wait_for_text(driver, "matches the number recorded at training", timeout=60)
        assert driver.current_url.endswith("/pair/default/btc-usdt")
        for heading in ("Price and forecast", "Skill on held-out data", "Backtest on the test split", "Versions"):
            assert heading in text
        assert "served · promoted" in text and "LSTM (this model)" in text and recorded in text
        WebDriverWait(driver, 20).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "canvas")) >= 3)
        canvases = driver.find_elements(By.CSS_SELECTOR, "canvas")
        assert all(c.size["width"] > 200 and c.size["height"] > 150 for c in canvases[:3])  # drawn, not collapsed
        full_page_screenshot(driver, DOCS / "pair.png")

        driver.set_window_size(390, 844)  # a phone
        driver.get(running_ui.url)
        wait_for_text(driver, "22,029.16")
        assert not overflows(driver)
        driver.get(f"{running_ui.url}/pair/default/btc-usdt")
        wait_for_text(driver, "Backtest on the test split", timeout=60)
        assert not overflows(driver)
        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        assert errors == [], errors
    finally:
        driver.quit()
    assert "Traceback" not in running_ui.log(), running_ui.log()[-3000:]
