"""`makeusrich track --workers 2` as a user starts it: the workers fork before any thread or event loop, the
parent serves /healthz over what they report, and SIGTERM stops them all."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from makeusrich.errors import MakeUsRichError
from makeusrich.pair_sources import pair_yaml
from tests.fixtures.model_server import free_port
from tests.fixtures.models import small_pair
from tests.fixtures.shell import ROOT, command, makeusrich
from tests.fixtures.waiting import eventually_sync, still_running


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def health(process: subprocess.Popen[bytes], port: int, log_path: Path) -> dict[str, Any]:
    """The tracker's /healthz once it answers 200 (while its process runs)."""

    def healthy() -> dict[str, Any]:
        still_running(process, "makeusrich track", log_path.read_text)
        answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
        assert answer.status_code == 200, f"{answer.status_code}: {answer.text[:300]}"
        found: dict[str, Any] = answer.json()
        return found

    return eventually_sync(
        healthy,
        what="the tracker's /healthz to answer 200",
        timeout=60,
        interval=0.1,
        ignoring=(httpx.TransportError,),
        context=log_path.read_text,
    )


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
        body = health(process, port, log_path)
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


def test_two_replicas_each_track_and_report_their_own_share(tmp_path: Path) -> None:
    """`--replicas 2 --replica N`, as the chart's StatefulSet runs them (there the ordinal comes from the pod's
    name): each replica's /healthz counts only the pairs whose key hashes to it."""
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    for name in ("btc-usdt", "btc-usdt-d"):  # one for each replica (see test_tracker's shard check)
        (pairs / f"{name}.yaml").write_text(pair_yaml(small_pair(name)))
    processes, logs = [], []
    try:
        for replica in (0, 1):
            port = free_port()
            args = ["track", "--replicas", "2", "--replica", str(replica), "--source", "sample"]
            args += ["--pairs-dir", str(pairs), "--store", str(tmp_path / "store"), "--port", str(port)]
            log_path = tmp_path / f"track-{replica}.log"
            logs.append(log_path.open("wb"))
            process = subprocess.Popen(command(*args), stdout=logs[-1], stderr=subprocess.STDOUT, cwd=ROOT)
            processes.append((process, port, log_path))
        bodies = [health(process, port, log_path) for process, port, log_path in processes]
        assert [(b["pairs"], b["offline"]) for b in bodies] == [(1, ["default/btc-usdt"]), (1, ["default/btc-usdt-d"])]
        assert "replica 1 of 2" in processes[1][2].read_text()
        for process, _, _ in processes:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
    finally:
        for process, _, _ in processes:
            if process.poll() is None:
                process.kill()
        for log in logs:
            log.close()


def test_a_replica_needs_its_ordinal() -> None:
    from makeusrich.track.settings import TrackSettings

    settings = TrackSettings(replicas=3)
    assert settings.ordinal("makeusrich-tracker-2") == 2
    with pytest.raises(MakeUsRichError, match=r"give --replica .* \(this host is 'laptop'\)"):
        settings.ordinal("laptop")
    with pytest.raises(MakeUsRichError, match="replica 3 of --replicas 3: ordinals run from 0 to 2"):
        settings.ordinal("makeusrich-tracker-3")
    assert TrackSettings().ordinal("laptop") == 0  # one replica tracks every pair
    done = makeusrich("track", "--replicas", "2", "--replica", "5", "--once", "--source", "sample")
    assert done.returncode == 1 and "replica 5 of --replicas 2" in done.stderr and "Traceback" not in done.stderr
