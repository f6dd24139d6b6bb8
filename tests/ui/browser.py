"""Helpers to run the real dashboard in a subprocess and look at it with Debian's chromium, headless.

Used by tests/ui/test_browser.py and bench/ui_bench.py. Chromium gets a fresh profile and flags that keep it off
the network (no background updates, sync or component downloads); selenium gets the driver's path, so its
manager downloads nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

from tests.fixtures.model_server import ROOT, free_port
from tests.fixtures.shell import command as makeusrich_command
from tests.fixtures.waiting import eventually_sync, still_running

# What docs/screenshots.py makes, and the code whose look they show.
SCREENSHOTS = ["docs/overview.png", "docs/pair.png"]
UI_CODE = ROOT / "makeusrich" / "ui"


def ui_fingerprint() -> str:
    """sha256 over the dashboard's code: when it changes, the README's screenshots may show an old page."""
    digest = hashlib.sha256()
    for path in sorted(p for p in UI_CODE.rglob("*") if p.is_file() and p.suffix in (".py", ".css", ".js")):
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)


@dataclass
class RunningUI:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_ui(args: list[str], folder: Path, timeout: float = 60.0) -> RunningUI:
    """`python -m makeusrich.cli ui ...` on a free loopback port, once /healthz says the first refresh is done."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "NICEGUI_"))}
    env.update(PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    log_path = folder / "ui.log"
    command = makeusrich_command("ui", "--host", "127.0.0.1", "--port", str(port), *args)
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=folder, env=env)
    ui = RunningUI(f"http://127.0.0.1:{port}", process, log_path)

    def loaded() -> bool:
        still_running(process, "makeusrich ui", ui.log)
        return bool(httpx.get(f"{ui.url}/healthz", timeout=1.0).json().get("loaded"))

    try:
        eventually_sync(
            loaded,
            what=f"{ui.url}/healthz to say the first refresh is done",
            timeout=timeout,
            interval=0.1,
            ignoring=(httpx.TransportError, ValueError),
            context=lambda: ui.log()[-3000:],
        )
    except BaseException:
        stop(process)
        raise
    return ui


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def chromium(tz: str = "Europe/Paris") -> WebDriver:
    """Headless chromium with its own profile, in a time zone of our choosing, that logs console errors."""
    assert shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER), "install Debian's chromium and chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tempfile.mkdtemp(prefix='makeusrich-chromium-')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(CHROMEDRIVER, env={**os.environ, "TZ": tz})
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_window_size(1280, 900)
    return driver
