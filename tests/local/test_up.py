"""`makeusrich up` end to end: from an empty folder, with its default store and pairs folder, as a user runs it.

Everything is real: the runner and the `makeusrich train`, `serve` and `ui` processes it starts, the ONNX model
it publishes, chromium looking at the dashboard. Binance is unreachable on purpose (tests/local/up.py), so the
offline path runs: the bundled sample for BTC/USDT 1h, and an error card for a pair it does not cover. Only the
training is shortened, through the pair files.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import signal
import socket
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import yaml

from makeusrich.contract import FIELDS, INPUT_NAME, iso_z
from makeusrich.market import clean_candles, read_sample
from makeusrich.serving.loader import load_artifact, store_sources
from makeusrich.store import LocalStore, PairStore, TrackFiles, TrackSummary, Why, read_run_state
from makeusrich.store.track_schema import checked_rows
from makeusrich.v2client import V2Client
from tests.fixtures.fake_binance import FakeBinance
from tests.fixtures.live import live_decision
from tests.fixtures.models import TrainedStore, small_pair
from tests.fixtures.s3server import S3Server
from tests.fixtures.shell import ROOT, clean_env, command, makeusrich
from tests.fixtures.waiting import eventually_sync
from tests.local.up import START_TIMEOUT, Up, assert_store_consistent, offline_env, wait_group_gone
from tests.ui.browser import chromium
from tests.ui.test_browser import wait_for_text


def write_pair(folder: Path, name: str, **spec: object) -> Path:
    """A pair file that trains in seconds (a tiny LSTM on 60 days) with lenient point and coverage bars."""
    document = small_pair(name, **spec).model_dump(mode="json", by_alias=True, exclude_none=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def served_forecast(url: str, name: str, window: np.ndarray) -> np.ndarray:
    async def ask() -> np.ndarray:
        async with V2Client(url) as client:
            return await client.infer(name, window)

    return asyncio.run(ask())


def test_up_trains_serves_shows_picks_up_pairs_stops_and_restarts(tmp_path: Path) -> None:
    folder = tmp_path / "laptop"
    pairs = folder / "pairs"  # the default pairs folder, given the user's own shortened pair file
    pairs.mkdir(parents=True)
    write_pair(pairs, "btc-usdt")
    up = Up.start(folder)
    try:
        up.wait_for("Dashboard:   http://127.0.0.1:")
        up.wait_ready("btc-usdt")
        up.wait_for("btc-usdt: LSTM version ")  # said once the run's state is recorded (served a moment before)
        text = up.output()
        assert "btc-usdt: training (no model yet)" in text
        baseline = text.index("btc-usdt: baseline version ")  # served before the LSTM trains
        assert baseline < text.index("btc-usdt: epoch 1/2")
        assert "offline sample data, ends 2022-06-15" in text  # Binance unreachable: said in one line
        assert "btc-usdt: epoch 1/2, validation loss " in text  # progress on the terminal

        # The forecast served is the stored ONNX model's own, on the same candles.
        store = PairStore(LocalStore(folder / ".makeusrich" / "store"), "default", "btc-usdt")
        latest = store.latest()
        assert latest is not None
        meta = store.model_metadata(latest.version)
        candles, _ = clean_candles(read_sample("BTCUSDT", "1h"), "1h")
        window = candles[list(FIELDS)].to_numpy(np.float32)[-meta.window :][None]
        session = ort.InferenceSession(store.read_model(latest.version), providers=["CPUExecutionProvider"])
        expected = session.run(None, {INPUT_NAME: window})[0]
        eventually_sync(  # the server reloads on its own poll: wait until it serves the promoted version
            lambda: (
                f"/versions/{latest.version}/"
                in httpx.get(f"{up.serving}/v2/models/btc-usdt", timeout=5).json()["parameters"]["storage_uri"]
            ),
            what=f"version {latest.version} served",
            timeout=START_TIMEOUT,
        )
        np.testing.assert_allclose(served_forecast(up.serving, "btc-usdt", window), expected, rtol=1e-6)
        run = read_run_state(store)
        assert run is not None and run.state == "succeeded" and run.promoted == (run.version == latest.version)
        assert meta.kind == ("lstm" if run.promoted else "baseline")  # a refused LSTM leaves the baseline served
        assert run.source == "sample" and run.epoch == run.max_epochs == 2
        track = httpx.get(f"{up.track}/healthz", timeout=5).json()  # offline candles: nothing to record
        assert track["status"] == "ok" and "default/btc-usdt" in track["offline"], track
        assert (store.prefix + "runs/" + str(run.log)) in store.objects.list(store.prefix + "runs/")

        # A pair file dropped in while running is trained and served; one with no offline data fails on its own.
        write_pair(pairs, "btc-fast", model={"window": 12})
        write_pair(pairs, "eth-usdt", currency="eth")
        up.wait_ready("btc-fast")
        up.wait_for("eth-usdt: training failed: ")
        assert "ETHUSDT 1h has no offline data" in up.output()

        driver = chromium()
        try:
            driver.get(up.dashboard)
            body = wait_for_text(driver, "BTC/USDT", "offline sample data, ends 2022-06-15", "btc-fast", "eth-usdt")
            assert "MAE RATIO TEST" in body and "no offline data" in body  # labels are capitals (CSS)
            recorded = f"{meta.metrics.test.model.rel_mae:.3f}"
            assert recorded in body  # the card shows the served model's measured skill
            driver.get(f"{up.dashboard}/pair/default/eth-usdt")  # the failed run's reason and last log lines
            wait_for_text(driver, "Last training run", "Failed", "no offline data", "makeusrich train: cannot reach")
        finally:
            driver.quit()

        (pairs / "eth-usdt.yaml").unlink()  # a deleted pair file: no longer trained, its records stay
        up.wait_for("eth-usdt: its file is gone; no longer trained (its models stay in the store)")
        code, took = up.interrupt()
        assert code == 0, up.output()[-3000:]
        assert took < 10.0
        assert assert_store_consistent(folder / ".makeusrich" / "store") == ["btc-fast", "btc-usdt"]
        versions = {name: store_of(folder, name).versions() for name in ("btc-usdt", "btc-fast")}

        # A restart serves at once from the stored models and trains nothing (the next schedule is tomorrow).
        again = Up.start(folder, name="restart")
        try:
            again.wait_ready("btc-usdt")
            again.wait_ready("btc-fast")
            text = again.wait_for("btc-fast: next training")
            again.wait_for("btc-usdt: next training")
            assert "training (" not in again.output()
            assert {name: store_of(folder, name).versions() for name in versions} == versions
            code, _ = again.interrupt()
            assert code == 0, text[-3000:]
        finally:
            again.kill()
    finally:
        up.kill()


def store_of(folder: Path, name: str) -> PairStore:
    return PairStore(LocalStore(folder / ".makeusrich" / "store"), "default", name)


def test_pairs_of_one_name_in_two_namespaces_and_one_outside_default_are_each_themselves(
    tmp_path: Path, fake_binance: FakeBinance
) -> None:
    """default/btc-x, team-a/btc-x and team-b/solo under one `up`, with a loopback Binance whose one-minute candles
    keep closing: each is served under its own model name, and each one's track record holds forecasts of its own
    versions only, scored as its candles close. (Before, `up` served only the default namespace, and team-a/btc-x
    recorded default/btc-x's forecasts as its own.)"""
    now_ms = int(time.time() * 1000)
    fake_binance.add_synthetic("BTCUSDT", "1m", count=3200, now_ms=now_ms + 30 * 60_000)  # closes for 30 minutes
    folder = tmp_path / "laptop"
    pairs = folder / "pairs"
    pairs.mkdir(parents=True)
    spec = {"interval": "1m", "lookbackDays": 2}
    for namespace, name in (("default", "btc-x"), ("team-a", "btc-x"), ("team-b", "solo")):
        document = small_pair(name, namespace, **spec).model_dump(mode="json", by_alias=True, exclude_none=True)
        (pairs / f"{namespace}.{name}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    up = Up.start(folder, env={"BINANCE_API_URL": fake_binance.url})
    served = {"default/btc-x": "btc-x", "team-a/btc-x": "team-a.btc-x", "team-b/solo": "team-b.solo"}
    root = folder / ".makeusrich" / "store"
    try:
        up.wait_for("Dashboard:   http://127.0.0.1:")
        for model in served.values():
            eventually_sync(
                lambda model=model: httpx.get(f"{up.serving}/v2/models/{model}/ready", timeout=5).status_code == 200,
                what=f"{model} served",
                timeout=START_TIMEOUT,
                context=lambda: up.output()[-3000:],
            )
        assert httpx.get(f"{up.serving}/v2/models", timeout=5).json()["models"] == sorted(served.values())
        for key, model in served.items():  # each name serves that pair's own store, whatever its version is called
            parameters = httpx.get(f"{up.serving}/v2/models/{model}", timeout=5).json()["parameters"]
            assert parameters["namespace"] == key.split("/")[0] and f"/{key}/versions/" in parameters["storage_uri"]

        def own_scored_rows(key: str) -> bool:
            namespace, name = key.split("/")
            store = PairStore(LocalStore(root), namespace, name)
            track = TrackFiles(store)
            rows = [checked_rows(track.read(month), month) for month in track.months()]
            if not rows:
                return False
            versions = set(pd.concat(rows)["version"].dropna())
            assert versions <= set(store.versions()), (key, versions)  # names may repeat across pairs: see below
            scored = pd.concat(rows)["actual"].notna().sum()
            return bool(scored)

        for key in served:
            eventually_sync(
                lambda key=key: own_scored_rows(key),
                what=f"{key}'s own forecasts recorded and scored",
                timeout=START_TIMEOUT,
                context=lambda: up.output()[-3000:],
            )
        metrics = httpx.get(f"{up.track}/metrics", timeout=5).text
        for key in served:
            namespace, name = key.split("/")
            assert f'namespace="{namespace}",pair="{name}",window="24h"' in metrics
        page = httpx.get(f"{up.dashboard}/pair/team-a/btc-x", timeout=10)
        assert page.status_code == 200
        env = clean_env(BINANCE_API_URL=fake_binance.url, MAKEUSRICH_SERVING_URL=up.serving)
        asked = makeusrich("predict", "-f", str(pairs / "team-a.btc-x.yaml"), "--json", env=env)
        assert asked.returncode == 0, asked.stderr
        assert json.loads(asked.stdout)["forecast"][0]["model_version"] in versions_of(root, "team-a/btc-x")
        code, _ = up.interrupt()
        assert code == 0, up.output()[-3000:]
    finally:
        up.kill()


def versions_of(root: Path, key: str) -> set[str]:
    namespace, name = key.split("/")
    return set(PairStore(LocalStore(root), namespace, name).versions())


def test_a_runner_killed_outright_leaves_no_child_behind(tmp_path: Path) -> None:
    """SIGKILL cannot be caught: the children end anyway (PR_SET_PDEATHSIG), training included."""
    (tmp_path / "pairs").mkdir()
    write_pair(tmp_path / "pairs", "btc-usdt")
    up = Up.start(tmp_path)
    try:
        up.wait_for("btc-usdt: epoch 1/2")  # a training runs now, beside the server and the dashboard
        up.process.send_signal(signal.SIGKILL)
        up.process.wait(timeout=10)
        wait_group_gone(up.process.pid, 10)
        assert assert_store_consistent(tmp_path / ".makeusrich" / "store") in ([], ["btc-usdt"])
    finally:
        up.kill()


def test_the_first_run_without_a_pairs_folder_seeds_the_bundled_pair(tmp_path: Path) -> None:
    up = Up.start(tmp_path, "--max-epochs", "1", "--lookback-days", "80")
    try:
        up.wait_for("Dashboard:   http://127.0.0.1:")
        text = up.wait_for("btc-usdt: training (no model yet)")
        assert f"Created {tmp_path / 'pairs'} with the bundled btc-usdt.yaml" in text
        bundled = (ROOT / "manifests" / "examples" / "btc-usdt.yaml").read_bytes()
        assert (tmp_path / "pairs" / "btc-usdt.yaml").read_bytes() == bundled
        code, _ = up.interrupt()
        assert code == 0
        run = read_run_state(store_of(tmp_path, "btc-usdt"))
        assert run is not None and run.state == "interrupted"  # stopped half-way: said so, nothing published
        assert assert_store_consistent(tmp_path / ".makeusrich" / "store") == []
    finally:
        up.kill()


@pytest.mark.parametrize("flag", ["--port", "--serving-port", "--track-port"])
def test_a_busy_port_is_one_sentence_naming_the_flag(tmp_path: Path, flag: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = makeusrich("up", flag, str(port), cwd=tmp_path, env=offline_env())
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"makeusrich up: cannot listen on 127.0.0.1:{port}: Address already in use; pick another {flag} or stop "
        "what uses it"
    ]
    assert not (tmp_path / "pairs").exists()  # nothing was started or written


def test_a_training_killed_at_random_points_never_breaks_the_served_model(tmp_path: Path) -> None:
    """SIGKILL `makeusrich train` (what `up` and the CronJob run) at random moments over a store that serves a
    model: whatever the moment, latest.json names a complete version and the model server loads it."""
    pair_file = write_pair(tmp_path, "btc-usdt")
    root = tmp_path / "store"
    args = ("train", "-f", str(pair_file), "--store", str(root), "--source", "sample")
    began = time.monotonic()
    first = makeusrich(*args, env=clean_env())
    assert first.returncode == 0, first.stderr[-3000:]
    full = time.monotonic() - began  # the kills below fall anywhere in a run as long as this one
    chance = random.Random(20261201)
    for _ in range(4):
        process = subprocess.Popen(
            command(*args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=clean_env()
        )
        try:
            process.wait(timeout=chance.uniform(0.5, full))
        except subprocess.TimeoutExpired:
            process.kill()
        process.wait()
        assert assert_store_consistent(root) == ["btc-usdt"]
        (source,) = store_sources(str(root), "default", ["btc-usdt"])
        candidate = source.current()
        assert candidate is not None
        served = load_artifact(source.fetch(candidate))  # every check the model server makes before serving
        assert served.version == candidate.version
    metadata = json.loads((root / "default" / "btc-usdt" / "latest.json").read_text())
    assert metadata["version"]


def test_up_with_an_s3_store(tmp_path: Path, s3_server: S3Server) -> None:
    """The same run against a real S3 server: models, run records and logs in the bucket, server logs local."""
    (tmp_path / "pairs").mkdir()
    write_pair(tmp_path / "pairs", "btc-usdt")
    up = Up.start(tmp_path, "--store", "s3://up-bucket/laptop", env=s3_server.env())
    try:
        up.wait_ready("btc-usdt")
        up.wait_for("btc-usdt: next training")
        client = s3_server.client()
        keys = {
            o.object_name for o in client.list_objects("up-bucket", prefix="laptop/default/btc-usdt/", recursive=True)
        }
        assert "laptop/default/btc-usdt/latest.json" in keys and "laptop/default/btc-usdt/runs/state.json" in keys
        assert any(key.endswith(".log") for key in keys)
        assert (tmp_path / ".makeusrich" / "logs" / "serve.log").is_file()
        code, _ = up.interrupt()
        assert code == 0
    finally:
        up.kill()


def laptop_retraining_when_degraded(tmp_path: Path, template: TrainedStore) -> tuple[Path, PairStore]:
    """A folder for `up` whose store serves the template's versions and whose btc-usdt retrains when Degraded."""
    folder = tmp_path / "laptop"
    shutil.copytree(template.root, folder / ".makeusrich" / "store")
    (folder / "pairs").mkdir(parents=True)
    write_pair(folder / "pairs", "btc-usdt", promotion={"retrainWhenDegraded": True})
    return folder, store_of(folder, "btc-usdt")


def write_degraded(store: PairStore, decision: str, version: str) -> str:
    """A live record of `version` whose `decision` fired now, written as the tracker writes it (offline, up's
    tracker records nothing); when it fired."""
    since = iso_z(datetime.now(UTC))
    fired = live_decision(decision, 3e5, on=True, since=since, forecasts=40, served=None, other=None)
    summary = TrackSummary(
        pair="btc-usdt",
        namespace="default",
        interval="1h",
        updated_at=since,
        version=version,
        live_since=since,
        decisions=[fired],
    )
    TrackFiles(store).write_summary(summary)
    return since


def test_up_says_a_rollback_and_retrains_a_pair_that_turns_degraded_once(
    tmp_path: Path, trained_store_template: TrainedStore
) -> None:
    """retrainWhenDegraded works in `up` as in the operator: one run when the live record turns Degraded, not one
    per scan. Offline, up's tracker records nothing, so the record is written here, as the tracker writes it."""
    folder, store = laptop_retraining_when_degraded(tmp_path, trained_store_template)
    served, baseline = trained_store_template.version, trained_store_template.outcome.first
    assert baseline is not None
    up = Up.start(folder)
    try:
        up.wait_for("btc-usdt: next training")  # served from the store, nothing due
        store.rollback(baseline.version, served, Why("makeusrich track", "worse than the baseline on live hours"))
        up.wait_for(f"btc-usdt: rolled back from {served} to {baseline.version} by makeusrich track (worse than")
        since = write_degraded(store, "degraded-point", baseline.version)
        up.wait_for(f"btc-usdt: training (Degraded since {since}: since version {baseline.version} went live")
        eventually_sync(
            lambda: (state := read_run_state(store)) is not None and state.state in ("succeeded", "failed"),
            what="the degraded run to end",
            timeout=START_TIMEOUT,
        )
        # said in a scan after the run ended: btc-usdt is planned first
        write_pair(folder / "pairs", "btc-late", suspend=True)
        up.wait_for("btc-late: suspended (spec.suspend); not trained")
        assert up.output().count("training (Degraded since") == 1  # one run for the episode
        code, _ = up.interrupt()
        assert code == 0, up.output()[-3000:]
    finally:
        up.kill()


def test_up_recalibrates_first_when_the_live_ranges_turn_too_narrow(
    tmp_path: Path, trained_store_template: TrainedStore
) -> None:
    """A record Degraded because the served ranges miss more closes than they promise (RangesTooNarrow) runs
    `makeusrich train --recalibrate-first`, as the operator's Degraded Job does. Offline, the bundled sample holds no
    hour after the ones that tuned the served LSTM, so the recalibration refuses, says why in the run's log, and the
    run trains instead (the record is written here, as the tracker writes it)."""
    folder, store = laptop_retraining_when_degraded(tmp_path, trained_store_template)
    served = trained_store_template.version
    up = Up.start(folder)
    try:
        up.wait_for("btc-usdt: next training")  # served from the store, nothing due
        since = write_degraded(store, "degraded-coverage", served)
        up.wait_for(f"btc-usdt: training (Degraded since {since}: since version {served} went live")
        eventually_sync(
            lambda: (state := read_run_state(store)) is not None and state.state in ("succeeded", "failed"),
            what="the run to end",
            timeout=START_TIMEOUT,
        )
        state = read_run_state(store)
        assert state is not None and state.log is not None
        log = store.objects.get(f"{store.prefix}runs/{state.log}").decode()
        refused = log.index("info recalibration refused; training instead pair=btc-usdt why=only 0 hours closed after")
        assert log.index("info training starts pair=btc-usdt", refused) > refused, log  # new margins first, then
        assert state.state == "succeeded", state  # and then it trained
        code, _ = up.interrupt()
        assert code == 0, up.output()[-3000:]
    finally:
        up.kill()
