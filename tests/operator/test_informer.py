"""The operator's informers against the API emulator over HTTP: a listing first (told to nobody: the pairs' own
events reconcile them), then every change with the pair it belongs to; a watch that breaks resumes, one too old to
resume lists again and reports what vanished meanwhile, and a kind the cluster does not have counts as listed and
empty until it appears."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from makeusrich.kube import CRONJOBS, ISVCS, Credentials, KubeClient
from makeusrich.operator import informer as informer_module
from makeusrich.operator.informer import Informer
from makeusrich.operator.objects import MANAGED_BY, MANAGER, PAIR_LABEL
from tests.fixtures.kube_emulator import Emulator, emulator, register_resources
from tests.fixtures.waiting import eventually

NAMESPACE = "default"
SELECTOR = f"{MANAGED_BY}={MANAGER},{PAIR_LABEL}"


def cronjob(name: str, pair: str | None = "btc", schedule: str = "0 * * * *") -> dict[str, Any]:
    labels = {MANAGED_BY: MANAGER, **({PAIR_LABEL: pair} if pair else {})}
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
        "spec": {"schedule": schedule},
    }


class Seen:
    """What an informer told of, in order."""

    def __init__(self) -> None:
        self.changes: list[tuple[str, str, tuple[str, str]]] = []

    def __call__(self, kind: str, body: dict[str, Any], key: tuple[str, str]) -> None:
        self.changes.append((kind, body["metadata"]["name"], key))


def key_of(obj: dict[str, Any]) -> tuple[str, str] | None:
    meta = obj.get("metadata") or {}
    pair = (meta.get("labels") or {}).get(PAIR_LABEL)
    return (meta.get("namespace") or "", pair) if pair else None


@pytest_asyncio.fixture
async def api(kube: Emulator) -> AsyncIterator[KubeClient]:
    client = KubeClient(lambda: Credentials(str(kube.url).rstrip("/")))
    yield client
    await client.aclose()


async def running(informer: Informer) -> asyncio.Task[None]:
    task = asyncio.get_running_loop().create_task(informer.run())
    await asyncio.wait_for(informer.listed.wait(), timeout=30)
    return task


def names(informer: Informer) -> dict[tuple[str, str], list[str]]:
    return {key: sorted(item["metadata"]["name"] for item in items) for key, items in informer.index.items()}


async def test_it_lists_then_tells_every_change_with_its_pair(kube: Emulator, api: KubeClient) -> None:
    await api.create(CRONJOBS, NAMESPACE, cronjob("btc-trainer"))
    await api.create(CRONJOBS, NAMESPACE, cronjob("someone-elses", pair=None))  # not ours: no pair label
    seen = Seen()
    informer = Informer(api, CRONJOBS, None, SELECTOR, key_of, dict, seen)
    task = await running(informer)
    try:
        assert names(informer) == {(NAMESPACE, "btc"): ["btc-trainer"]} and seen.changes == []
        item = next(iter(informer.index[(NAMESPACE, "btc")]))
        assert item["kind"] == "CronJob" and item["apiVersion"] == "batch/v1"  # as a watch would give it

        await api.create(CRONJOBS, NAMESPACE, cronjob("eth-trainer", pair="eth"))
        await api.patch(CRONJOBS, NAMESPACE, "btc-trainer", {"spec": {"schedule": "5 * * * *"}})
        await api.delete(CRONJOBS, NAMESPACE, "eth-trainer")
        await eventually(lambda: len(seen.changes) == 3)
        assert seen.changes == [
            ("ADDED", "eth-trainer", (NAMESPACE, "eth")),
            ("MODIFIED", "btc-trainer", (NAMESPACE, "btc")),
            ("DELETED", "eth-trainer", (NAMESPACE, "eth")),
        ]
        assert names(informer) == {(NAMESPACE, "btc"): ["btc-trainer"]}
        assert next(iter(informer.index[(NAMESPACE, "btc")]))["spec"]["schedule"] == "5 * * * *"
    finally:
        task.cancel()


async def test_a_broken_watch_resumes_and_one_too_old_lists_again(kube: Emulator, api: KubeClient) -> None:
    await api.create(CRONJOBS, NAMESPACE, cronjob("btc-trainer"))
    await api.create(CRONJOBS, NAMESPACE, cronjob("eth-trainer", pair="eth"))
    seen = Seen()
    informer = Informer(api, CRONJOBS, NAMESPACE, SELECTOR, key_of, dict, seen)
    task = await running(informer)
    try:
        await kube.drop_watches()  # a restarted API server, a broken connection
        await api.create(CRONJOBS, NAMESPACE, cronjob("sol-trainer", pair="sol"))
        await eventually(lambda: (NAMESPACE, "sol") in informer.index)

        # The next watch is answered 410 (its version is too old) after a deletion no watch told of.
        kube.forget(CRONJOBS, NAMESPACE, "eth-trainer")
        kube.fail("GET", "/cronjobs$", 410)
        await kube.drop_watches()
        await eventually(lambda: ("DELETED", "eth-trainer", (NAMESPACE, "eth")) in seen.changes)
        assert sorted(key[1] for key in informer.index) == ["btc", "sol"]
    finally:
        task.cancel()


async def test_a_kind_the_cluster_lacks_is_listed_empty_until_it_appears(
    api: KubeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(informer_module, "ABSENT_RETRY_S", 0.05)
    async with emulator(kserve=False) as kube:
        client = KubeClient(lambda: Credentials(str(kube.url).rstrip("/")))
        seen = Seen()
        informer = Informer(client, ISVCS, None, SELECTOR, key_of, dict, seen)
        task = await running(informer)  # listed, though there is nothing to list
        try:
            assert len(informer.index) == 0
            register_resources(kube, kserve=True)  # KServe is installed
            isvc = {**cronjob("btc"), "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService"}
            await client.create(ISVCS, NAMESPACE, isvc)
            await eventually(lambda: (NAMESPACE, "btc") in informer.index)
        finally:
            task.cancel()
            await client.aclose()
