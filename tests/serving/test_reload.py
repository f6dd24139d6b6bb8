"""Hot reload: a newly promoted version replaces the served one while clients keep sending requests, none of
which fails; a version that cannot be served is refused, said so in the metadata, and the old one keeps serving."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from makeusrich.store import pair_store
from makeusrich.v2client import ModelNotReadyError, V2Client
from tests.fixtures.model_server import RunningServer
from tests.fixtures.models import TrainedStore
from tests.fixtures.waiting import describe, eventually, eventually_sync
from tests.serving.helpers import (
    endless_model,
    next_version,
    point_latest_at,
    publish_as,
    publish_model,
    real_windows,
    reference,
    scaled_model,
)

PAIR = "btc-usdt"


def start(start_model_server: Callable[..., RunningServer], trained: TrainedStore, *pairs: str) -> RunningServer:
    """A server polling every 0.1 s, over REST and gRPC: for the given pairs, or for every pair of the namespace
    when none."""
    selection = ["--pairs", ",".join(pairs)] if pairs else []
    return start_model_server("--store", trained.url, *selection, "--poll-seconds", "0.1", store=trained, grpc=True)


def wait_for(server: RunningServer, name: str, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Until the model metadata of `name` passes `check` (the server polls the store every 0.1 s)."""

    def metadata() -> dict[str, Any]:
        meta: dict[str, Any] = httpx.get(f"{server.url}/v2/models/{name}").json()
        assert check(meta), f"the metadata is {meta}"
        return meta

    return eventually_sync(metadata, what=f"{name}'s metadata with {describe(check)}", context=server.log)


async def test_reload_under_concurrent_requests_fails_no_request(
    start_model_server: Callable[..., RunningServer], trained_store: TrainedStore
) -> None:
    server = start(start_model_server, trained_store)
    store = trained_store.store()
    old_version = trained_store.version
    old_model = store.read_model(old_version)
    new_model = scaled_model(old_model, 1.25)
    windows = real_windows(24, 64, seed=3)
    expected = {old_version: reference(old_model, windows)}
    seen: list[list[str]] = [[] for _ in range(8)]
    stop = asyncio.Event()

    async def client(i: int) -> None:
        # Clients 0-5 send one window (answered on the event loop), 6-7 send 64 (answered in worker threads,
        # so they are in flight while the watcher swaps versions). The odd ones ask over gRPC.
        async with V2Client(server.grpc_url if i % 2 else server.url, timeout=10) as v2:
            k = 0
            while not stop.is_set():
                batch = windows if i >= 6 else windows[(i * 11 + k) % 64 : (i * 11 + k) % 64 + 1]
                result = await v2.infer_result(PAIR, batch)  # any failed request raises and fails the test
                assert result.model_version is not None
                want = expected[result.model_version]
                start_row = 0 if i >= 6 else (i * 11 + k) % 64
                assert np.array_equal(result.forecast, want[start_row : start_row + len(batch)])
                seen[i].append(result.model_version)
                k += 1

    tasks = [asyncio.create_task(client(i)) for i in range(8)]

    def clients_running() -> bool:
        """Inside a wait: a client that failed ends it at once, with the client's exception."""
        for task in tasks:
            if task.done():
                raise RuntimeError("a client stopped before it was told to") from task.exception()
        return True

    try:
        await eventually(lambda: clients_running() and all(seen), what="an answer to every client", timeout=20)
        new_version = next_version(store)
        expected[new_version] = reference(new_model, windows)  # known before any client can be answered by it
        assert await asyncio.to_thread(publish_model, store, new_model, old_version) == new_version
        await eventually(
            lambda: clients_running() and sum(s.count(new_version) for s in seen) >= 100,
            what="100 answers from the new version",
            timeout=20,
            context=server.log,
        )
    finally:
        stop.set()
        await asyncio.gather(*tasks)

    for versions in seen:
        assert versions[0] == old_version and versions[-1] == new_version
        switch = versions.index(new_version)
        assert set(versions[switch:]) == {new_version}, "a client got the old version after the new one"
    assert sum(s.count(new_version) for s in seen) >= 100 and sum(s.count(old_version) for s in seen) >= 8
    meta = httpx.get(f"{server.url}/v2/models/{PAIR}").json()
    assert meta["versions"] == [new_version] and meta["parameters"]["served_version"] == new_version
    assert server.alive() and "serving version " + new_version in server.log()


def test_unservable_versions_are_refused_and_the_old_one_keeps_serving(
    start_model_server: Callable[..., RunningServer], trained_store: TrainedStore
) -> None:
    server = start(start_model_server, trained_store)  # every pair of the namespace
    store = trained_store.store()
    good = trained_store.version
    windows = real_windows(24, 4)
    expected = reference(store.read_model(good), windows)
    url = f"{server.url}/v2/models/{PAIR}"

    def assert_still_serving_the_good_one() -> None:
        response = httpx.post(
            f"{url}/infer",
            json={
                "inputs": [
                    {"name": "candles", "shape": [4, 24, 5], "datatype": "FP32", "data": windows.ravel().tolist()}
                ]
            },
        )
        assert response.status_code == 200 and response.json()["model_version"] == good
        assert np.array_equal(np.asarray(response.json()["outputs"][0]["data"], np.float32).reshape(4, 1), expected)
        assert httpx.get(f"{url}/ready").status_code == 200

    # 1. not an ONNX file (uploaded intact: its checksum is right)
    garbage = publish_model(store, b"\x08\x07garbage" * 50, good, offset=1)
    meta = wait_for(server, PAIR, lambda m: m["parameters"].get("refused_version") == garbage)
    assert meta["versions"] == [good] and "is not a loadable ONNX model" in meta["parameters"]["refused_reason"]
    assert meta["parameters"]["refused_at"].endswith("Z")
    assert_still_serving_the_good_one()

    # 2. damaged after promotion: the bytes no longer match the recorded sha256
    damaged = publish_model(store, scaled_model(store.read_model(good), 1.1), good, promote=False, offset=2)
    path = trained_store.root / store.version_prefix(damaged) / store.model_path()
    path.write_bytes(path.read_bytes()[:-4] + b"\x00\x00\x00\x00")
    point_latest_at(store, damaged, store.metadata(damaged)["files"][store.model_path()]["sha256"])
    meta = wait_for(server, PAIR, lambda m: m["parameters"].get("refused_version") == damaged)
    assert "does not match its recorded sha256" in meta["parameters"]["refused_reason"]
    assert_still_serving_the_good_one()

    # 3. loads, but answers a flat window with a negative price: fails the smoke inference
    negative = publish_model(store, scaled_model(store.read_model(good), -1.0), good, offset=3)
    meta = wait_for(server, PAIR, lambda m: m["parameters"].get("refused_version") == negative)
    assert "expected 1 finite positive prices" in meta["parameters"]["refused_reason"]
    assert_still_serving_the_good_one()

    log = server.log()
    for version in (garbage, damaged, negative):
        assert f"refused version {version} of {PAIR}, still serving {good}" in log
    # 4. a good version after the refusals is served, and the refusal is no longer reported
    fixed = publish_model(store, scaled_model(store.read_model(good), 1.0), good, offset=4)
    meta = wait_for(server, PAIR, lambda m: m["versions"] == [fixed])
    assert "refused_version" not in meta["parameters"]
    # 5. serving every pair of the namespace (no --pairs): a pair promoted later is picked up
    publish_as(trained_store.url, PAIR, ["sol-usdt"])
    eventually_sync(
        lambda: httpx.get(f"{server.url}/v2/models").json()["models"] == [PAIR, "sol-usdt"],
        what="sol-usdt among the served models",
        context=server.log,
    )
    eventually_sync(  # listed as soon as it is found, ready once its version passed the checks
        lambda: httpx.get(f"{server.url}/v2/models/sol-usdt/ready").status_code == 200,
        what="sol-usdt ready",
        context=server.log,
    )
    assert server.alive()


def test_a_pair_without_a_model_is_not_ready_until_one_is_promoted(
    start_model_server: Callable[..., RunningServer], trained_store: TrainedStore
) -> None:
    server = start(start_model_server, trained_store, PAIR, "eth-usdt")
    assert httpx.get(f"{server.url}/v2/models/{PAIR}/ready").status_code == 200
    not_ready = httpx.get(f"{server.url}/v2/models/eth-usdt/ready")
    assert not_ready.status_code == 503
    infer = httpx.post(
        f"{server.url}/v2/models/eth-usdt/infer",
        json={"inputs": [{"name": "candles", "shape": [1, 24, 5], "datatype": "FP32", "data": [1.0] * 120}]},
    )
    assert infer.status_code == 503 and "eth-usdt" in infer.json()["error"]
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 503  # Triton: every model must be ready
    meta = httpx.get(f"{server.url}/v2/models/eth-usdt").json()
    assert meta["versions"] == [] and meta["inputs"] == []

    async def over_grpc() -> tuple[bool, bool, str]:
        async with V2Client(server.grpc_url, timeout=10) as v2:
            try:
                await v2.infer("eth-usdt", real_windows(24, 1))
            except ModelNotReadyError as exc:
                refusal = str(exc)
            return await v2.ready(), await v2.model_ready("eth-usdt"), refusal

    assert asyncio.run(over_grpc()) == (
        False,
        False,
        f"model 'eth-usdt' at {server.grpc_url} is not ready (no promoted version loaded yet)",
    )

    publish_as(trained_store.url, PAIR, ["eth-usdt"])
    wait_for(server, "eth-usdt", lambda m: m["versions"] == [trained_store.version])
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200

    async def served_over_grpc() -> str | None:
        async with V2Client(server.grpc_url, timeout=10) as v2:
            return (await v2.infer_result("eth-usdt", real_windows(24, 1))).model_version

    assert asyncio.run(served_over_grpc()) == trained_store.version


def test_a_rollback_to_the_served_version_clears_the_refusal(
    start_model_server: Callable[..., RunningServer], trained_store: TrainedStore
) -> None:
    """latest.json restored byte for byte (an operator undoing a bad promotion): the badge must go too."""
    server = start(start_model_server, trained_store, PAIR)
    store = trained_store.store()
    served_latest = store.objects.get(store.prefix + "latest.json")
    broken = publish_model(store, scaled_model(store.read_model(trained_store.version), -1.0), trained_store.version)
    wait_for(server, PAIR, lambda m: m["parameters"].get("refused_version") == broken)
    store.objects.put(store.prefix + "latest.json", served_latest)
    meta = wait_for(server, PAIR, lambda m: "refused_version" not in m["parameters"])
    assert meta["versions"] == [trained_store.version]


def test_a_check_that_never_ends_is_refused_in_time_and_holds_back_no_other_pair(
    start_model_server: Callable[..., RunningServer], trained_store: TrainedStore, tmp_path: Path
) -> None:
    """A version whose smoke inference never ends (a Loop of 9e18 steps) is refused after --check-seconds while
    another pair's new version is served meanwhile; a model file that is a FIFO is refused at once; and a server
    restarted while latest.json names the endless version answers /v2/health/live during its checks. (Before,
    the watcher checked pairs one after another and the check never ended: no other pair's version loaded, and a
    restarted server never answered.)"""
    publish_as(trained_store.url, PAIR, ["sol-usdt"])
    store, other = trained_store.store(), pair_store(trained_store.url, "default", "sol-usdt")
    good = trained_store.version
    checks = ["--check-seconds", "8", "--poll-seconds", "0.2"]
    server = start_model_server("--store", trained_store.url, *checks, store=trained_store)
    fifo = publish_model(store, scaled_model(store.read_model(good), 1.05), good, promote=False)
    model_path = trained_store.root / store.version_prefix(fifo) / store.model_path()
    model_path.unlink()
    os.mkfifo(model_path)
    point_latest_at(store, fifo, store.metadata(fifo)["files"][store.model_path()]["sha256"])
    meta = wait_for(server, PAIR, lambda m: m["parameters"].get("refused_version") == fifo)
    assert "is not a regular file" in meta["parameters"]["refused_reason"]

    endless = publish_model(store, endless_model(store.read_model(good)), good, offset=2, record=False)
    newer = publish_model(other, scaled_model(other.read_model(good), 1.1), good)
    served_while_checking = wait_for(server, "sol-usdt", lambda m: m["versions"] == [newer])
    checking = httpx.get(f"{server.url}/v2/models/{PAIR}").json()["parameters"]
    assert checking.get("refused_version") != endless  # its check is still running
    assert served_while_checking["parameters"]["served_version"] == newer
    meta = wait_for(server, PAIR, lambda m: m["parameters"].get("refused_version") == endless)
    assert "did not end within 8 s (--check-seconds)" in meta["parameters"]["refused_reason"]
    assert meta["versions"] == [good]  # the old version serves on
    server.stop()

    restarted = start_model_server("--store", trained_store.url, *checks, store=trained_store, until_loaded=False)
    assert httpx.get(f"{restarted.url}/v2/health/live").status_code == 200
    assert httpx.get(f"{restarted.url}/v2/health/ready").status_code == 503  # its first checks are still running
    assert '"message": "models loaded"' not in restarted.log()
    meta = wait_for(restarted, PAIR, lambda m: m["parameters"].get("refused_version") == endless)
    assert meta["versions"] == [] and "did not end within 8 s" in meta["parameters"]["refused_reason"]
