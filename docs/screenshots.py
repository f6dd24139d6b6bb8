"""Make the README's screenshots (docs/overview.png, docs/pair.png) from the real default setup.

What `make run` gives a new user without network: `makeusrich up` in an empty folder, which seeds the bundled
pair `btc-usdt.yaml`, trains it with its default settings on the bundled candles, serves it and shows it on the
dashboard, all on loopback in a temporary folder. Debian's chromium (headless, in UTC) takes the pictures.
It records a fingerprint of the dashboard's code in docs/screenshots.json: a test fails when the pages changed
and the pictures were not made again.

    make screenshots          (or: PYTHONPATH=. .venv/bin/python docs/screenshots.py [--store DIR])

`--store DIR` skips the training: `makeusrich up` restarts on a copy of a store that `make run` already filled
(./.makeusrich/store) and serves it at once.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script: make `tests.*` importable

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from tests.local.up import Up  # noqa: E402
from tests.ui.browser import SCREENSHOTS, chromium, ui_fingerprint  # noqa: E402

PAIR = REPO / "manifests" / "examples" / "btc-usdt.yaml"
DOCS = REPO / "docs"


def wait_for_text(driver: WebDriver, *needles: str, timeout: float = 120.0) -> None:
    """Until the page shows every needle (as rendered: some labels are upper-cased by CSS)."""

    def shown(d: WebDriver) -> bool:
        text = str(d.find_element(By.TAG_NAME, "body").text).lower()
        return all(n.lower() in text for n in needles)

    WebDriverWait(driver, timeout, poll_frequency=0.2).until(shown)


def full_page(driver: WebDriver, path: Path, width: int = 1280) -> None:
    """The whole page at a desktop width, once the charts have redrawn at the new size."""
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    chrome = int(driver.execute_script("return window.outerHeight - window.innerHeight"))
    driver.set_window_size(width, max(900, height + chrome))
    time.sleep(1.0)  # ECharts redraws on resize after a debounce; there is no event to wait on
    driver.save_screenshot(str(path))
    driver.set_window_size(width, 900)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=None, help="serve this trained store instead of training")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="makeusrich-screenshots-"))
    if args.store is not None:  # what a restart of `makeusrich up` finds: it serves at once
        shutil.copytree(args.store.resolve(), folder / ".makeusrich" / "store")
    else:
        print(f"makeusrich up trains {PAIR.name} with its default settings on the bundled candles (about two minutes)")
    up = Up.start(folder, name="up")
    driver = chromium(tz="UTC")
    try:
        up.wait_for("Dashboard:   http://", timeout=900)
        up.wait_ready("btc-usdt", timeout=900)
        if args.store is None:  # the settled state: the LSTM trained and judged (served, or refused by the gates)
            up.wait_for("btc-usdt: LSTM version ", timeout=900)
        driver.get(up.dashboard)
        wait_for_text(driver, "BTC/USDT", "Ready", "Forecast next close", "MAE ratio test", "offline sample data")
        WebDriverWait(driver, 120, poll_frequency=0.2).until(  # the card has caught up with the LSTM's outcome
            lambda d: "training:" not in str(d.find_element(By.TAG_NAME, "body").text).lower()
        )
        full_page(driver, DOCS / "overview.png")
        driver.find_element(By.CSS_SELECTOR, 'a[href="/pair/default/btc-usdt"]').click()
        wait_for_text(driver, "Backtest on the test split", "recorded at training")
        WebDriverWait(driver, 60).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "canvas")) >= 3)
        full_page(driver, DOCS / "pair.png")
    finally:
        driver.quit()
        up.interrupt()
    record = {
        "command": "make screenshots",
        "made": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "pair": str(PAIR.relative_to(REPO)),
        "images": SCREENSHOTS,
        "uiFingerprint": ui_fingerprint(),
    }
    (DOCS / "screenshots.json").write_text(json.dumps(record, indent=2) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    print(f"wrote {', '.join(SCREENSHOTS)} and docs/screenshots.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
