"""End to end: the real operator (kopf) against the API emulator over HTTP, and a real S3 store (SeaweedFS).

The emulator has no controllers, so each test plays their part by hand: it marks Jobs running, succeeded or
failed, writes a failed pod's status, and reports the InferenceService ready, as the Job controller, the kubelet
and KServe would. Models are published into the store with the store's own code (a real trained model's files
and metadata), exactly as the trainer does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest

from makeusrich.operator import handlers
from makeusrich.operator.objects import PAIR_LABEL
from makeusrich.pair import parse_pair_text
from makeusrich.store import TrackFiles, TrackSummary, Why, pair_store
from makeusrich.store.track_schema import empty_rows
from makeusrich.track.rows import append_rows, forecast_rows, score_rows
from makeusrich.track.summary import summarize
from tests.fixtures.kube_emulator import (
    CRONJOBS,
    EVENTS,
    ISVCS,
    JOBS,
    NAMESPACE,
    PAIRS,
    PODS,
    Emulator,
    emulator,
    write_kubeconfig,
)
from tests.fixtures.models import TrainedStore
from tests.fixtures.s3server import S3Server
from tests.fixtures.waiting import eventually
from tests.operator.conftest import RunningOperator, start_operator
from tests.test_pair import crd_validator

NAME = "btc-usdt"
V1, V2, V3 = "20260101T000000Z", "20260102T000000Z", "20260103T000000Z"
LEVELS = (0.05, 0.25, 0.5, 0.75, 0.95)
PAIRS_PATH = f"/apis/makeusrich.io/v1alpha1/namespaces/{NAMESPACE}/currencypairs"
Publish = Callable[..., Awaitable[dict[str, Any]]]


def pair_doc(name: str = NAME, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "makeusrich.io/v1alpha1",
        "kind": "CurrencyPair",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"currency": "btc", "compare": "usdt", **spec},
    }


async def create_pair(kube: Emulator, doc: dict[str, Any]) -> dict[str, Any]:
    crd_validator().validate(doc)  # what the tests create, the API server would accept
    async with kube.post(PAIRS_PATH, json=doc) as response:
        assert response.status == 201, await response.text()
        created: dict[str, Any] = await response.json()
        return created


async def patch_spec(kube: Emulator, spec: dict[str, Any], name: str = NAME) -> None:
    async with kube.patch(
        f"{PAIRS_PATH}/{name}", json={"spec": spec}, headers={"Content-Type": "application/merge-patch+json"}
    ) as response:
        assert response.status == 200, await response.text()


async def patch_object(kube: Emulator, path: str, body: dict[str, Any]) -> None:
    async with kube.patch(path, json=body, headers={"Content-Type": "application/merge-patch+json"}) as response:
        assert response.status == 200, await response.text()


def status(kube: Emulator, name: str = NAME) -> dict[str, Any]:
    return dict((kube.get(PAIRS, NAMESPACE, name) or {}).get("status") or {})


def condition(kube: Emulator, kind: str, name: str = NAME) -> tuple[str, str, str]:
    for item in status(kube, name).get("conditions", []):
        if item["type"] == kind:
            return item["status"], item["reason"], item["message"]
    return ("", "", "")


def storage_uri(kube: Emulator, name: str = NAME) -> str | None:
    isvc = kube.get(ISVCS, NAMESPACE, name)
    return isvc["spec"]["predictor"]["model"]["storageUri"] if isvc else None


def events_for(kube: Emulator, name: str = NAME) -> list[tuple[str, str, str]]:
    found = []
    for event_name in kube.names(EVENTS, NAMESPACE):
        event = kube.get(EVENTS, NAMESPACE, event_name) or {}
        if event.get("involvedObject", {}).get("name") == name:
            found.append((event["type"], event["reason"], event["message"]))
    return found


def now() -> str:
    return "2026-11-26T15:00:00Z"


RUNNING = {"startTime": "2026-11-26T15:00:00Z", "active": 1}
SUCCEEDED = {
    "startTime": "2026-11-26T15:00:00Z",
    "completionTime": "2026-11-26T15:10:00Z",
    "active": None,
    "succeeded": 1,
    "conditions": [
        {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": "2026-11-26T15:10:00Z"},
        {"type": "Complete", "status": "True", "lastTransitionTime": "2026-11-26T15:10:00Z"},
    ],
}
FAILED = {
    "startTime": "2026-11-26T15:00:00Z",
    "active": None,
    "failed": 2,
    "conditions": [
        {
            "type": "Failed",
            "status": "True",
            "reason": "BackoffLimitExceeded",
            "message": "Job has reached the specified backoff limit",
            "lastTransitionTime": "2026-11-26T15:05:00Z",
        }
    ],
}


@pytest.fixture
def publish(trained_store_template: TrainedStore, operator_settings: Any) -> Publish:
    """Publish a version of a pair into the operator's S3 store, with a real trained model's files and
    metadata, through PairStore.publish as the trainer does (promote: write latest.json)."""
    source = trained_store_template.store()
    meta = source.metadata(trained_store_template.version)
    files = {path: source.read_file(trained_store_template.version, path) for path in meta["files"]}
    template = trained_store_template.pair.name

    async def run(version: str, name: str = NAME, promote: bool = True) -> dict[str, Any]:
        def blocking() -> dict[str, Any]:
            store = pair_store(operator_settings.store_url, NAMESPACE, name)
            renamed = {path.replace(template, name, 1): data for path, data in files.items()}
            metadata = {k: v for k, v in meta.items() if k not in ("files", "storageUri")}
            return store.publish(version, renamed, {**metadata, "pair": name, "version": version}, promote)

        return await asyncio.to_thread(blocking)

    return run


async def first_job(kube: Emulator) -> str:
    names: list[str] = await eventually(lambda: kube.names(JOBS, NAMESPACE))
    assert len(names) == 1
    return names[0]


# --- the scenarios ---------------------------------------------------------------------------------------------


async def test_a_new_pair_gets_its_trainer_and_a_first_job(kube: Emulator, operator: RunningOperator) -> None:
    created = await create_pair(kube, pair_doc(schedule="0 */6 * * *", lookbackDays=90))
    uid = created["metadata"]["uid"]
    cron = await eventually(lambda: kube.get(CRONJOBS, NAMESPACE, f"{NAME}-trainer"))
    job_name = await first_job(kube)
    job = kube.get(JOBS, NAMESPACE, job_name)
    assert job is not None and job_name.startswith(f"{NAME}-trainer-initial-")
    owner = {
        "apiVersion": "makeusrich.io/v1alpha1",
        "kind": "CurrencyPair",
        "name": NAME,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
    for child in (cron, job):
        assert child["metadata"]["ownerReferences"] == [owner]
        assert child["metadata"]["labels"][PAIR_LABEL] == NAME
    assert cron["spec"]["schedule"] == "0 */6 * * *" and cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert cron["spec"]["suspend"] is False
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["makeusrich", "train", "--source", "binance"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    pair = parse_pair_text(env["MAKEUSRICH_PAIR"], "env")
    assert (pair.name, pair.spec.lookback_days, pair.spec.schedule) == (NAME, 90, "0 */6 * * *")
    assert env["MAKEUSRICH_STORE"] == operator.settings.store_url

    await eventually(lambda: condition(kube, "Trained")[:2] == ("False", "Training"))
    assert status(kube)["observedGeneration"] == 1 and status(kube)["symbol"] == "BTCUSDT"
    assert status(kube)["lastTraining"] == {"job": job_name, "phase": "Pending", "failures": 0}
    assert condition(kube, "Valid")[:2] == ("True", "SpecValid")
    assert condition(kube, "Ready")[:2] == ("False", "NoModel")
    crd_validator().validate(kube.get(PAIRS, NAMESPACE, NAME))  # the status fits the CRD's schema
    await eventually(lambda: any(reason == "Applied" for _, reason, _ in events_for(kube)))
    assert "finalizers" not in kube.get(PAIRS, NAMESPACE, NAME)["metadata"]  # type: ignore[index]


async def test_a_finished_job_and_a_promoted_version_are_served(
    kube: Emulator, operator: RunningOperator, publish: Publish
) -> None:
    created = await create_pair(kube, pair_doc(serving={"runtime": "kserve-tritonserver", "minReplicas": 2}))
    job = await first_job(kube)
    await kube.set_status(JOBS, NAMESPACE, job, RUNNING)
    await eventually(lambda: status(kube).get("lastTraining", {}).get("phase") == "Running")

    stored = await publish(V1)
    await kube.set_status(JOBS, NAMESPACE, job, SUCCEEDED)
    await eventually(lambda: storage_uri(kube) == stored["storageUri"])
    isvc = kube.get(ISVCS, NAMESPACE, NAME)
    assert isvc is not None
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    assert isvc["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
    predictor = isvc["spec"]["predictor"]
    assert predictor["minReplicas"] == 2 and predictor["serviceAccountName"] == "makeusrich-storage"
    assert predictor["model"] == {
        "modelFormat": {"name": "onnx"},
        "protocolVersion": "v2",
        "runtime": "kserve-tritonserver",
        "storageUri": stored["storageUri"],
    }
    await eventually(lambda: status(kube).get("lastTraining", {}).get("phase") == "Succeeded")
    model = status(kube)["model"]
    assert model["version"] == V1 and model["storageUri"] == stored["storageUri"]
    assert model["skill"] == stored["metrics"]["test"]["model"]["relMae"]
    assert model["metrics"]["validation"]["relMae"] == stored["metrics"]["validation"]["model"]["relMae"]
    assert model["trainedAt"] == stored["createdAt"]
    assert condition(kube, "Trained")[:2] == ("True", "Promoted")
    assert condition(kube, "Serving")[:2] == ("False", "Deploying")

    # KServe reports the predictor ready: the pair's serving status and Ready follow.
    await kube.set_status(
        ISVCS,
        NAMESPACE,
        NAME,
        {
            "url": f"http://{NAME}.{NAMESPACE}.example.com",
            "observedGeneration": isvc["metadata"]["generation"],
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now()}],
        },
    )
    await eventually(lambda: condition(kube, "Ready")[:2] == ("True", "Ready"))
    assert status(kube)["serving"] == {"version": V1, "url": f"http://{NAME}.{NAMESPACE}.example.com", "ready": True}
    crd_validator().validate(kube.get(PAIRS, NAMESPACE, NAME))
    reasons = await eventually(lambda: {r for _, r, _ in events_for(kube)} >= {"Applied", "Promoted", "Ready"})
    assert reasons


async def test_spec_changes_patch_the_cronjob_and_drift_is_repaired(kube: Emulator, operator: RunningOperator) -> None:
    await create_pair(kube, pair_doc())
    cron_name = f"{NAME}-trainer"
    await eventually(lambda: kube.get(CRONJOBS, NAMESPACE, cron_name))
    await patch_spec(kube, {"schedule": "30 2 * * 1"})

    def rescheduled() -> bool:
        cron = kube.get(CRONJOBS, NAMESPACE, cron_name) or {}
        container = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        pair_env = next(e["value"] for e in container["env"] if e["name"] == "MAKEUSRICH_PAIR")
        return bool(
            cron["spec"]["schedule"] == "30 2 * * 1" and json.loads(pair_env)["spec"]["schedule"] == "30 2 * * 1"
        )

    await eventually(rescheduled)
    await eventually(lambda: status(kube).get("observedGeneration") == 2)

    await patch_spec(kube, {"suspend": True})
    await eventually(lambda: (kube.get(CRONJOBS, NAMESPACE, cron_name) or {})["spec"]["suspend"] is True)
    # Someone resumes the CronJob by hand while the pair says suspended: the operator puts it back.
    cron_path = f"/apis/batch/v1/namespaces/{NAMESPACE}/cronjobs/{cron_name}"
    await patch_object(kube, cron_path, {"spec": {"suspend": False}})
    await eventually(lambda: (kube.get(CRONJOBS, NAMESPACE, cron_name) or {})["spec"]["suspend"] is True)
    # And a deleted CronJob comes back.
    async with kube.delete(cron_path) as response:
        assert response.status == 200
    await eventually(lambda: kube.get(CRONJOBS, NAMESPACE, cron_name))
    assert len(kube.names(JOBS, NAMESPACE)) == 1  # no second first Job for any of this


async def test_new_versions_are_found_without_job_events_and_pins_roll_back(
    kube: Emulator, operator: RunningOperator, publish: Publish, operator_settings: Any
) -> None:
    await create_pair(kube, pair_doc(trainOnCreate=False))
    await eventually(lambda: kube.get(CRONJOBS, NAMESPACE, f"{NAME}-trainer"))
    assert kube.names(JOBS, NAMESPACE) == []
    first = await publish(V1)  # a trainer run the operator never saw: only the periodic reconcile notices
    await eventually(lambda: storage_uri(kube) == first["storageUri"])
    second = await publish(V2)
    await eventually(lambda: storage_uri(kube) == second["storageUri"])
    await eventually(lambda: status(kube)["model"]["version"] == V2)  # the status is patched after the children

    await patch_spec(kube, {"serving": {"pinnedVersion": V1}})
    await eventually(lambda: storage_uri(kube) == first["storageUri"])
    await eventually(lambda: condition(kube, "Trained")[:2] == ("True", "Pinned"))
    assert status(kube)["model"]["version"] == V1

    await patch_spec(kube, {"serving": {"pinnedVersion": V3}})  # not in the store: keep serving V1
    await eventually(lambda: condition(kube, "Serving")[:2] == ("False", "PinnedVersionMissing"))
    assert storage_uri(kube) == first["storageUri"]
    assert V3 in condition(kube, "Serving")[2]

    await patch_spec(kube, {"serving": {"pinnedVersion": None}})
    await eventually(lambda: storage_uri(kube) == second["storageUri"])
    await eventually(lambda: condition(kube, "Trained")[:2] == ("True", "Promoted"))
    # Events are posted after the status that caused them, by kopf's own task: wait for them, not for the status.
    await eventually(lambda: {"ModelChanged", "PinnedVersionMissing"} <= {r for _, r, _ in events_for(kube)})

    # the tracker's evidence rolls V2 back (as makeusrich.track.rollback writes it): the operator follows, says so
    store = pair_store(operator_settings.store_url, NAMESPACE, NAME)
    await asyncio.to_thread(store.rollback, V1, V2, Why("makeusrich track", "worse than V1 on the same live hours"))
    await eventually(lambda: storage_uri(kube) == first["storageUri"])
    await eventually(lambda: status(kube)["model"].get("change", {}).get("action") == "rolled-back")
    assert [c["version"] for c in status(kube)["model"]["history"]][:2] == [V1, V2]
    rolled = f"version {V2} rolled back to {V1} by makeusrich track: worse than V1 on the same live hours"
    await eventually(lambda: ("Warning", "RolledBack", rolled) in events_for(kube))


async def test_a_moved_store_is_served_from_where_it_is_now(
    kube: Emulator, operator: RunningOperator, publish: Publish, operator_settings: Any
) -> None:
    """latest.json written before the store was copied names the old place; serving uses the store's own."""
    stored = await publish(V1)
    store = pair_store(operator_settings.store_url, NAMESPACE, NAME)
    key = store.prefix + "latest.json"
    latest = json.loads(await asyncio.to_thread(store.objects.get, key))
    moved = {**latest, "storageUri": f"s3://old-bucket/{NAMESPACE}/{NAME}/versions/{V1}/"}
    await asyncio.to_thread(store.objects.put, key, json.dumps(moved).encode())
    await create_pair(kube, pair_doc(trainOnCreate=False))
    await eventually(lambda: storage_uri(kube) is not None)
    assert storage_uri(kube) == stored["storageUri"]
    await eventually(lambda: status(kube).get("model", {}).get("storageUri") == stored["storageUri"])


async def test_a_failed_job_says_why_and_the_model_stays(
    kube: Emulator, operator: RunningOperator, publish: Publish
) -> None:
    await create_pair(kube, pair_doc())
    job = await first_job(kube)
    served = await publish(V1)
    await kube.set_status(JOBS, NAMESPACE, job, SUCCEEDED)
    await eventually(lambda: storage_uri(kube) == served["storageUri"])
    # Creation times have second resolution, and the next Job must be the newer one: wait for the next second.
    first_created = (kube.get(JOBS, NAMESPACE, job) or {})["metadata"]["creationTimestamp"]
    await eventually(
        lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") > first_created,
        what=f"a creation time later than the first Job's ({first_created})",
    )

    # The CronJob's next run (made here by hand, with the labels of the CronJob's jobTemplate) fails.
    cron = kube.get(CRONJOBS, NAMESPACE, f"{NAME}-trainer")
    assert cron is not None
    scheduled = f"{NAME}-trainer-29410000"
    template = cron["spec"]["jobTemplate"]
    async with kube.post(
        f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs",
        json={"metadata": {"name": scheduled, "labels": template["metadata"]["labels"]}, "spec": template["spec"]},
    ) as response:
        assert response.status == 201
    pod = f"{scheduled}-x7k2p"
    async with kube.post(
        f"/api/v1/namespaces/{NAMESPACE}/pods",
        json={
            "metadata": {"name": pod, "labels": {"job-name": scheduled}},
            "spec": template["spec"]["template"]["spec"],
        },
    ) as response:
        assert response.status == 201
    last_words = "makeusrich train: Binance answered 418 (IP banned); wait or use another egress IP"
    terminated = {"exitCode": 1, "reason": "Error", "message": f"INFO fetching candles\n{last_words}\n"}
    await kube.set_status(
        PODS, NAMESPACE, pod, {"containerStatuses": [{"name": "trainer", "state": {"terminated": terminated}}]}
    )
    await kube.set_status(JOBS, NAMESPACE, scheduled, FAILED)

    await eventually(lambda: condition(kube, "Trained")[:2] == ("False", "TrainingFailed"))
    message = condition(kube, "Trained")[2]
    assert f"training Job {scheduled} failed (BackoffLimitExceeded" in message
    assert f"pod {pod}: Error (exit code 1): {last_words}" in message
    assert message.endswith(f"still serving version {V1}")
    last = status(kube)["lastTraining"]
    assert (last["job"], last["phase"], last["finishedAt"]) == (scheduled, "Failed", "2026-11-26T15:05:00Z")
    assert last["failures"] == 1  # after the first Job's success: the tracker's training-failing alert waits for 2
    assert storage_uri(kube) == served["storageUri"] and status(kube)["model"]["version"] == V1
    await eventually(lambda: ("Warning", "TrainingFailed") in [(t, r) for t, r, _ in events_for(kube)])


async def test_an_invalid_spec_is_reported_and_makes_no_children(kube: Emulator, operator: RunningOperator) -> None:
    # The CRD's pattern lets five fields through; only the operator knows this date never comes.
    await create_pair(kube, pair_doc(schedule="0 0 30 2 *"))
    await eventually(lambda: condition(kube, "Valid")[:2] == ("False", "InvalidSpec"))
    assert "spec.schedule" in condition(kube, "Valid")[2] and "never fires" in condition(kube, "Valid")[2]
    assert condition(kube, "Ready")[:2] == ("False", "InvalidSpec")
    await operator.whole_periodic_round()  # and still nothing is made
    assert kube.names(CRONJOBS) == [] and kube.names(JOBS) == [] and kube.names(ISVCS) == []
    await eventually(lambda: ("Warning", "InvalidSpec") in [(t, r) for t, r, _ in events_for(kube)])

    await patch_spec(kube, {"schedule": "0 0 28 2 *"})
    await eventually(lambda: condition(kube, "Valid")[:2] == ("True", "SpecValid"))
    await eventually(lambda: kube.get(CRONJOBS, NAMESPACE, f"{NAME}-trainer"))
    assert status(kube)["observedGeneration"] == 2
    await first_job(kube)  # the pair never trained: now that it is valid, it gets its first Job


async def test_deleting_a_pair_leaves_the_store_and_children_are_owned(
    kube: Emulator, operator: RunningOperator, publish: Publish
) -> None:
    created = await create_pair(kube, pair_doc())
    uid = created["metadata"]["uid"]
    stored = await publish(V1)
    await eventually(lambda: storage_uri(kube) == stored["storageUri"])
    children = [
        kube.get(CRONJOBS, NAMESPACE, f"{NAME}-trainer"),
        kube.get(JOBS, NAMESPACE, await first_job(kube)),
        kube.get(ISVCS, NAMESPACE, NAME),
    ]
    async with kube.delete(f"{PAIRS_PATH}/{NAME}") as response:
        assert response.status == 200
    assert kube.get(PAIRS, NAMESPACE, NAME) is None  # gone at once: no finalizer holds it
    for child in children:
        assert child is not None
        refs = child["metadata"]["ownerReferences"]
        # What Kubernetes' garbage collector needs to delete the child with its pair.
        assert [(r["uid"], r["kind"], r["controller"], r["blockOwnerDeletion"]) for r in refs] == [
            (uid, "CurrencyPair", True, True)
        ]
    await operator.whole_periodic_round()
    store = await asyncio.to_thread(pair_store, operator.settings.store_url, NAMESPACE, NAME)
    latest = await asyncio.to_thread(store.latest)
    assert latest is not None and latest.version == V1
    assert await asyncio.to_thread(store.versions) == [V1]
    assert kube.get(PAIRS, NAMESPACE, NAME) is None


async def test_api_errors_are_retried_until_everything_converges(
    kube: Emulator, operator: RunningOperator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handlers, "RETRY_DELAY_S", 0.3)
    cron_name = f"{NAME}-trainer"
    # An earlier attempt created the CronJob but its answer was lost (and it is out of date by now).
    async with kube.post(
        f"/apis/batch/v1/namespaces/{NAMESPACE}/cronjobs",
        json={"metadata": {"name": cron_name, "labels": {"other": "x"}}, "spec": {"schedule": "1 1 * * *"}},
    ) as response:
        assert response.status == 201
    kube.fail("POST", "/cronjobs$", 500, times=8)  # longer than one round of client retries
    kube.fail("GET", f"/cronjobs/{cron_name}$", 503, times=2)
    kube.fail("POST", "/jobs$", 429, times=2, retry_after="0")
    kube.fail("PATCH", f"/currencypairs/{NAME}/status$", 409, times=2)
    await create_pair(kube, pair_doc())

    def converged() -> bool:
        cron = kube.get(CRONJOBS, NAMESPACE, cron_name) or {}
        return bool(
            cron.get("spec", {}).get("schedule") == "0 0 * * *"
            and cron["metadata"]["labels"].get(PAIR_LABEL) == NAME
            and condition(kube, "Trained")[:2] == ("False", "Training")
        )

    await eventually(converged, timeout=20)
    assert len(kube.names(JOBS, NAMESPACE)) == 1 and kube.names(CRONJOBS, NAMESPACE) == [cron_name]
    assert all(fault.times == 0 for fault in kube.faults)
    # The operator writes the pair's status only: no state of kopf's in its annotations, no patch of the pair.
    assert (kube.get(PAIRS, NAMESPACE, NAME) or {})["metadata"].get("annotations", {}) == {}
    pair_patches = [r for r in kube.requests if r.method.value == "PATCH" and r.url.path.endswith(f"/{NAME}")]
    assert pair_patches == []


async def test_a_restart_and_dropped_watches_make_no_duplicates(
    kube: Emulator, operator: RunningOperator, publish: Publish
) -> None:
    await create_pair(kube, pair_doc())
    stored = await publish(V1)
    await eventually(lambda: storage_uri(kube) == stored["storageUri"])
    await eventually(lambda: condition(kube, "Serving")[:2] == ("False", "Deploying"))
    await operator.stop()
    before = len(kube.requests)
    again = await start_operator(operator.settings)
    try:
        await again.whole_periodic_round()  # after the resume handlers
        writes = [r for r in kube.requests[before:] if r.method.value in ("POST", "PATCH", "PUT", "DELETE")]
        # Resuming re-checks everything and finds it in place: kopf notes the resume, nothing else is written.
        assert all(r.url.path == f"{PAIRS_PATH}/{NAME}" for r in writes), [r.url.path for r in writes]
        assert len(kube.names(JOBS)) == 1 and len(kube.names(CRONJOBS)) == 1 and len(kube.names(ISVCS)) == 1

        await kube.drop_watches()
        await patch_spec(kube, {"schedule": "15 3 * * *"})
        await eventually(
            lambda: (kube.get(CRONJOBS, NAMESPACE, f"{NAME}-trainer") or {})["spec"]["schedule"] == "15 3 * * *"
        )
    finally:
        await again.stop()


async def test_serving_waits_for_kserve_and_store_outages_are_reported(
    kubeconfig: Any, operator_settings: Any, publish: Publish, s3_env: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with emulator(kserve=False) as kube:  # a cluster without KServe
        write_kubeconfig(kubeconfig, str(kube.url).rstrip("/"))
        monkeypatch.setenv("S3_ENDPOINT", "http://127.0.0.1:9")  # nothing answers there
        running = await start_operator(operator_settings)
        try:
            await create_pair(kube, pair_doc())
            await eventually(lambda: condition(kube, "Trained")[:2] == ("Unknown", "StoreError"))
            assert "cannot read the model store" in condition(kube, "Trained")[2]
            assert kube.get(CRONJOBS, NAMESPACE, f"{NAME}-trainer") is not None  # the rest goes on

            monkeypatch.setenv("S3_ENDPOINT", s3_env.endpoint)  # the store is back
            await publish(V1)
            await eventually(lambda: condition(kube, "Trained")[:2] == ("True", "Promoted"))
            await eventually(lambda: condition(kube, "Serving")[:2] == ("False", "ServingNotApplied"))
            assert "is KServe installed?" in condition(kube, "Serving")[2]
        finally:
            await running.stop()


def track_record(worse: bool, n: int = 200, narrow: bool = False) -> TrackSummary:
    """A served version's track record of `n` hourly forecasts, scored: `worse` ones call every move the wrong
    way (twice persistence's error), the others get half way (half its error); `narrow` ones give ranges a
    twentieth as wide, which miss nearly every close. Built with the tracker's own functions, as `makeusrich track`
    would write it."""
    rng = np.random.default_rng(7)
    prices = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n + 1)))
    start, hour = pd.Timestamp("2026-11-20T00:00Z"), pd.Timedelta(hours=1)
    done = (start + n * hour).to_pydatetime()
    parts = []
    for k in range(n):
        last, actual = float(prices[k]), float(prices[k + 1])
        forecast = last + (actual - last) * (-1.0 if worse else 0.5)
        width = 0.05 if narrow else 1.0
        q = np.array([[forecast * (1 + width * f) for f in (-0.02, -0.01, 0.0, 0.01, 0.02)]])
        parts.append(forecast_rows(start + k * hour, hour, V1, last, [forecast], q, LEVELS, done))
    rows = append_rows(empty_rows(), pd.concat(parts, ignore_index=True))
    closes = pd.Series(prices[1:], index=[start + (k + 1) * hour for k in range(n)])
    rows, _ = score_rows(rows, closes, done)
    return summarize(rows, NAME, NAMESPACE, "1h", done)


async def test_ranges_too_narrow_on_live_hours_start_a_run_that_recalibrates_first(
    kube: Emulator, operator: RunningOperator, publish: Publish, operator_settings: Any
) -> None:
    await create_pair(kube, pair_doc(trainOnCreate=False, promotion={"retrainWhenDegraded": True}))
    await publish(V1)
    await eventually(lambda: status(kube).get("model", {}).get("version") == V1)
    store = pair_store(operator_settings.store_url, NAMESPACE, NAME)
    await asyncio.to_thread(TrackFiles(store).write_summary, track_record(worse=False, narrow=True))
    await eventually(lambda: condition(kube, "Degraded")[:2] == ("True", "RangesTooNarrow"))
    jobs = await eventually(lambda: [n for n in kube.names(JOBS, NAMESPACE) if "-trainer-degraded-" in n])
    job = kube.get(JOBS, NAMESPACE, jobs[0]) or {}
    assert job["spec"]["template"]["spec"]["containers"][0]["command"][-1] == "--recalibrate-first"


async def test_the_live_record_reaches_the_status_and_degraded_retrains_once(
    kube: Emulator, operator: RunningOperator, publish: Publish, operator_settings: Any
) -> None:
    await create_pair(kube, pair_doc(trainOnCreate=False, promotion={"retrainWhenDegraded": True}))
    await publish(V1)
    await eventually(lambda: status(kube).get("model", {}).get("version") == V1)
    assert condition(kube, "Degraded")[:2] == ("Unknown", "NoTrackRecord")
    store = pair_store(operator_settings.store_url, NAMESPACE, NAME)

    bad = track_record(worse=True)
    await asyncio.to_thread(TrackFiles(store).write_summary, bad)
    await eventually(lambda: condition(kube, "Degraded")[:2] == ("True", "WorseThanBaseline"))
    live = status(kube)["live"]
    month = bad.window("30d")
    assert month is not None and month.point is not None
    assert live["skill"] == pytest.approx(month.point.rel_mae) and live["skill"] > 1.9  # status.live agrees
    assert live["version"] == V1 and {w["window"] for w in live["windows"]} == {"24h", "7d", "30d", "version"}
    jobs = await eventually(lambda: [n for n in kube.names(JOBS, NAMESPACE) if "-trainer-degraded-" in n])
    assert len(jobs) == 1  # retrainWhenDegraded: one Job when it turned Degraded
    await operator.whole_periodic_round()
    assert [n for n in kube.names(JOBS, NAMESPACE) if "-trainer-degraded-" in n] == jobs  # not one per round

    await asyncio.to_thread(TrackFiles(store).write_summary, track_record(worse=False))
    await eventually(lambda: condition(kube, "Degraded")[:2] == ("False", "LiveSkillHolds"))
    assert status(kube)["live"]["skill"] == pytest.approx(0.5, abs=0.01)
    # The Events come after the condition (kopf posts them from its own task): wait for both, as posted.
    await eventually(
        lambda: (
            {("Warning", "WorseThanBaseline"), ("Normal", "LiveSkillHolds")}
            <= {(kind, reason) for kind, reason, _ in events_for(kube)}
        )
    )
