"""Run `makeusrich up` (or `make run`) as a user does, in its own process group as a terminal would, and watch it.

Binance is made unreachable on purpose: BINANCE_API_URL points at a loopback port nothing listens on, which is
what a laptop without network meets (the connection is refused), so the runs take the offline path whatever
network the test machine has.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from makeusrich.store import PairStore, open_store
from tests.fixtures.model_server import free_port
from tests.fixtures.shell import clean_env
from tests.fixtures.shell import command as makeusrich_command
from tests.fixtures.waiting import eventually_sync, still_running

START_TIMEOUT = 240.0  # a first training of the shortened default pair included
STOP_LIMIT = 10.0  # Ctrl-C must end everything within this


def offline_env() -> dict[str, str]:
    return clean_env(BINANCE_API_URL=f"http://127.0.0.1:{free_port()}/api")


@dataclass
class Up:
    """One running `makeusrich up` and its terminal output."""

    process: subprocess.Popen[bytes]
    log: Path
    dashboard: str
    serving: str
    track: str

    @classmethod
    def start(
        cls,
        folder: Path,
        *args: str,
        command: list[str] | None = None,
        name: str = "up",
        env: dict[str, str] | None = None,
    ) -> Up:
        """`makeusrich up ARGS` on free ports; or `command` (`make run`), which uses the default ports."""
        port, serving_port, track_port = (
            (free_port(), free_port(), free_port()) if command is None else (8081, 8080, 8082)
        )
        log = folder / f"{name}.log"
        if command is None:
            command = makeusrich_command("up", "--port", str(port), "--serving-port", str(serving_port))
            command += ["--track-port", str(track_port), *args]
        with log.open("ab") as out:
            process = subprocess.Popen(
                command,
                cwd=folder,
                env={**offline_env(), **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        urls = (f"http://127.0.0.1:{p}" for p in (port, serving_port, track_port))
        return cls(process, log, *urls)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, needle: str, timeout: float = START_TIMEOUT) -> str:
        """Until the terminal shows `needle`; fails with the output if the runner exits first."""

        def shown() -> str:
            text = self.output()
            if needle in text:
                return text
            still_running(self.process, "makeusrich up", self.output)
            return ""

        return eventually_sync(
            shown,
            what=f"{needle!r} on the terminal",
            timeout=timeout,
            interval=0.1,
            context=lambda: self.output()[-4000:],
        )

    def wait_ready(self, pair: str, timeout: float = START_TIMEOUT) -> None:
        """Until the v2 endpoint serves `pair`."""

        def ready() -> bool:
            still_running(self.process, "makeusrich up", self.output)
            return httpx.get(f"{self.serving}/v2/models/{pair}/ready", timeout=2.0).status_code == 200

        eventually_sync(
            ready,
            what=f"{pair} served at {self.serving}",
            timeout=timeout,
            interval=0.2,
            ignoring=(httpx.TransportError,),
            context=lambda: self.output()[-4000:],
        )

    def interrupt(self) -> tuple[int, float]:
        """Ctrl-C: SIGINT to the whole process group, as a terminal sends it. Returns the exit status and how long
        the group took to end (every child included)."""
        began = time.monotonic()
        os.killpg(self.process.pid, signal.SIGINT)
        code = self.process.wait(timeout=STOP_LIMIT + 20)
        wait_group_gone(self.process.pid, STOP_LIMIT + 20)
        return code, time.monotonic() - began

    def kill(self) -> None:
        """Whatever is left, for a test that failed half-way."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs (a zombie does not count: it has ended)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def wait_group_gone(pgid: int, timeout: float) -> None:
    """Until no process of the group runs any more."""
    eventually_sync(lambda: not group_alive(pgid), what=f"every process of group {pgid} to end", timeout=timeout)


def assert_store_consistent(root: Path) -> list[str]:
    """Every latest.json names a complete version whose files match their recorded sha256; returns the pairs."""
    objects = open_store(str(root))
    pairs = []
    for latest_key in objects.list(""):
        if not latest_key.endswith("/latest.json"):
            continue
        namespace, name, _ = latest_key.split("/")
        store = PairStore(objects, namespace, name)
        latest = store.latest()
        assert latest is not None
        meta = store.model_metadata(latest.version)
        for path, info in meta.files.items():
            store.read_file(latest.version, path, info.sha256)
        assert meta.files[store.model_path()].sha256 == latest.model_sha256
        pairs.append(name)
    return sorted(pairs)
