"""`makeusrich track --workers 2` as a user starts it: the workers fork before any thread or event loop, the
parent serves /healthz over what they report, and SIGTERM stops them all."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx

from makeusrich.pair_sources import pair_yaml
from tests.fixtures.model_server import free_port
from tests.fixtures.models import small_pair
from tests.fixtures.shell import ROOT, command
from tests.fixtures.waiting import eventually_sync, still_running


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def test_workers_report_to_one_health_endpoint_and_stop_with_the_parent(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    for name in ("btc-usdt", "btc-usdt-d"):  # one for each worker (see test_tracker's shard check)
        (pairs / f"{name}.yaml").write_text(pair_yaml(small_pair(name)))
    port = free_port()
    args = ["track", "--workers", "2", "--source", "sample", "--pairs-dir", str(pairs)]
    args += ["--store", str(tmp_path / "store"), "--port", str(port)]
    log_path = tmp_path / "track.log"
    log = log_path.open("wb")
    process = subprocess.Popen(command(*args), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:

        def healthy() -> dict[str, Any]:
            still_running(process, "makeusrich track", log_path.read_text)
            answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            assert answer.status_code == 200, f"{answer.status_code}: {answer.text[:300]}"
            found: dict[str, Any] = answer.json()
            return found

        body = eventually_sync(
            healthy,
            what="the tracker's /healthz to answer 200",
            timeout=60,
            interval=0.1,
            ignoring=(httpx.TransportError,),
            context=log_path.read_text,
        )
        assert body["pairs"] == 2 and body["offline"] == ["default/btc-usdt", "default/btc-usdt-d"]
        workers = children(process.pid)
        assert len(workers) == 1  # the parent tracks the first share itself
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        for pid in workers:  # no worker outlives the tracker
            assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
