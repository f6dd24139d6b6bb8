"""The pure builders of the operator's children (contract 4), without a cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from makeusrich.cli import build_parser
from makeusrich.errors import SettingsError
from makeusrich.operator.objects import (
    MANAGED_BY,
    PAIR_LABEL,
    PART_OF,
    children,
    cronjob,
    inference_service,
    initial_job,
    initial_job_name,
    is_subset,
)
from makeusrich.operator.settings import OperatorSettings
from makeusrich.pair import PAIR_ENV, parse_pair, parse_pair_text
from makeusrich.settings import from_args
from makeusrich.store import LocalStore, PairStore, storage_uri
from makeusrich.store.s3 import S3Store

UID = "0b5b7a0e-3f3e-4c1e-9b8e-2f1f6d1c9a11"
SETTINGS = OperatorSettings(
    image="registry.example/trainer:1", store_url="s3://models/prod", s3_endpoint="http://minio:9000"
)


def make_pair(name: str = "btc-usdt", **spec: Any) -> Any:
    return parse_pair(
        {
            "apiVersion": "makeusrich.io/v1alpha1",
            "kind": "CurrencyPair",
            "metadata": {"name": name, "namespace": "markets"},
            "spec": {"currency": "btc", "compare": "usdt", **spec},
        }
    )


def env_of(job_spec: dict[str, Any]) -> dict[str, Any]:
    container = job_spec["template"]["spec"]["containers"][0]
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


def test_cronjob_runs_the_trainer_on_the_pair_schedule() -> None:
    pair = make_pair(schedule="0 */6 * * *")
    obj = cronjob(pair, SETTINGS, UID)
    assert (obj["apiVersion"], obj["kind"], obj["metadata"]["name"]) == ("batch/v1", "CronJob", "btc-usdt-trainer")
    spec = obj["spec"]
    assert spec["schedule"] == "0 */6 * * *" and spec["concurrencyPolicy"] == "Forbid" and spec["suspend"] is False
    assert spec["successfulJobsHistoryLimit"] == 3 and spec["failedJobsHistoryLimit"] == 3
    assert spec["startingDeadlineSeconds"] == 3600
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 1 and job["activeDeadlineSeconds"] == 6 * 3600
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    container = pod["containers"][0]
    assert container["command"] == ["makeusrich", "train", "--source", "binance"]
    assert container["image"] == "registry.example/trainer:1"
    assert container["resources"] == {
        "requests": {"cpu": "1", "memory": "2Gi"},
        "limits": {"cpu": "2", "memory": "4Gi"},
    }
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_trainer_pod_is_hardened() -> None:
    pod = cronjob(make_pair(), SETTINGS)["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = pod["containers"][0]["securityContext"]
    assert security == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert pod["containers"][0]["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}}]


def test_trainer_pods_run_where_and_as_whom_they_are_told() -> None:
    """A GPU pool: the chart gives requests/limits with nvidia.com/gpu, a nodeSelector and tolerations."""
    plain = cronjob(make_pair(), SETTINGS)["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert {"nodeSelector", "tolerations", "serviceAccountName"}.isdisjoint(plain)  # nothing said, nothing set
    gpu = OperatorSettings(
        image="registry.example/trainer:1-cuda",
        trainer_requests={"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "1"},
        trainer_limits={"memory": "8Gi", "nvidia.com/gpu": "1"},
        trainer_node_selector={"nvidia.com/gpu.present": "true"},
        trainer_tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        trainer_service_account="makeusrich-trainer",
    )
    pod = cronjob(make_pair(), gpu)["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["serviceAccountName"] == "makeusrich-trainer" and pod["automountServiceAccountToken"] is False
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_trainer_gets_the_pair_the_store_and_s3_credentials_from_the_secret() -> None:
    pair = make_pair(lookbackDays=90, model={"window": 48})
    env = env_of(cronjob(pair, SETTINGS)["spec"]["jobTemplate"]["spec"])
    again = parse_pair_text(env[PAIR_ENV], f"${PAIR_ENV}")
    assert again == pair  # the trainer sees the same pair, defaults and all
    assert env["MAKEUSRICH_STORE"] == "s3://models/prod" and env["S3_ENDPOINT"] == "http://minio:9000"
    assert env["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "makeusrich-s3", "key": "AWS_ACCESS_KEY_ID"}}
    assert env["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "makeusrich-s3", "key": "AWS_SECRET_ACCESS_KEY"}}
    assert env["HOME"] == "/tmp"


def test_every_child_carries_labels_and_the_controller_reference() -> None:
    pair = make_pair(serving={"pinnedVersion": "20260101T000000Z"})
    objects = children(pair, SETTINGS, uid=UID)
    assert [o["kind"] for o in objects] == ["CronJob", "Job", "InferenceService"]
    for obj in objects:
        meta = obj["metadata"]
        assert meta["namespace"] == "markets"
        assert {PART_OF: "makeusrich", PAIR_LABEL: "btc-usdt", MANAGED_BY: "makeusrich-operator"}.items() <= meta[
            "labels"
        ].items()
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "makeusrich.io/v1alpha1",
                "kind": "CurrencyPair",
                "name": "btc-usdt",
                "uid": UID,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    # Jobs made by the CronJob and the pods of every Job carry the pair's labels too (the operator watches them).
    assert objects[0]["spec"]["jobTemplate"]["metadata"]["labels"][PAIR_LABEL] == "btc-usdt"
    assert objects[1]["spec"]["template"]["metadata"]["labels"][PAIR_LABEL] == "btc-usdt"


def test_children_follow_the_spec_switches() -> None:
    assert [o["kind"] for o in children(make_pair(), SETTINGS)] == ["CronJob", "Job"]
    assert [o["kind"] for o in children(make_pair(trainOnCreate=False), SETTINGS)] == ["CronJob"]
    suspended = children(make_pair(suspend=True), SETTINGS)
    assert [o["kind"] for o in suspended] == ["CronJob"] and suspended[0]["spec"]["suspend"] is True
    with_model = children(make_pair(), SETTINGS, model_version="20260102T000000Z")
    assert with_model[-1]["spec"]["predictor"]["model"]["storageUri"].endswith("/versions/20260102T000000Z/")
    assert "ownerReferences" not in with_model[0]["metadata"]  # no uid before the API server assigns one


def test_initial_job_name_is_stable_unique_per_pair_and_short() -> None:
    pair = make_pair()
    name = initial_job_name(pair, UID)
    assert name == initial_job_name(pair, UID) and name.startswith("btc-usdt-trainer-initial-")
    assert name != initial_job_name(pair, "another-uid")
    longest = make_pair("a" * 44)
    assert len(initial_job_name(longest, UID)) <= 63
    job = initial_job(pair, SETTINGS, UID)
    assert job["spec"]["ttlSecondsAfterFinished"] == 7 * 86400
    assert job["spec"]["template"] == cronjob(pair, SETTINGS, UID)["spec"]["jobTemplate"]["spec"]["template"]
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command == ["makeusrich", "train", "--source", "binance"]
    narrow = initial_job(pair, SETTINGS, UID, name="btc-usdt-trainer-degraded-x", recalibrate_first=True)
    assert narrow["spec"]["template"]["spec"]["containers"][0]["command"] == [*command, "--recalibrate-first"]


def test_inference_service_serves_the_version_folder_over_v2() -> None:
    pair = make_pair(serving={"runtime": "kserve-tritonserver", "minReplicas": 2})
    uri = "s3://models/prod/markets/btc-usdt/versions/20260101T000000Z/"
    obj = inference_service(pair, SETTINGS, uri, "20260101T000000Z", UID)
    assert (obj["apiVersion"], obj["kind"], obj["metadata"]["name"]) == (
        "serving.kserve.io/v1beta1",
        "InferenceService",
        "btc-usdt",
    )
    assert obj["metadata"]["annotations"] == {
        "serving.kserve.io/deploymentMode": "Standard",
        "makeusrich.io/model-version": "20260101T000000Z",
    }
    assert obj["spec"]["predictor"] == {
        "minReplicas": 2,
        "serviceAccountName": "makeusrich-storage",
        "model": {
            "modelFormat": {"name": "onnx"},
            "protocolVersion": "v2",
            "runtime": "kserve-tritonserver",
            "storageUri": uri,
        },
    }
    no_account = OperatorSettings(storage_service_account=None)
    assert "serviceAccountName" not in inference_service(pair, no_account, uri, "v")["spec"]["predictor"]


def test_storage_uri_matches_the_store_s_own(tmp_path: Path, s3_store: S3Store) -> None:
    version = "20260101T000000Z"
    local = PairStore(LocalStore(tmp_path / "root"), "markets", "btc-usdt")
    assert storage_uri(f"file://{tmp_path}/root", "markets", "btc-usdt", version) == local.storage_uri(version)
    assert storage_uri(str(tmp_path / "root"), "markets", "btc-usdt", version) == local.storage_uri(version)
    remote = PairStore(s3_store, "markets", "btc-usdt")
    assert storage_uri(f"s3://{s3_store.bucket}", "markets", "btc-usdt", version) == remote.storage_uri(version)
    prefixed = S3Store(s3_store.client, s3_store.bucket, "team/models")
    assert storage_uri(f"s3://{s3_store.bucket}/team/models/", "markets", "btc-usdt", version) == PairStore(
        prefixed, "markets", "btc-usdt"
    ).storage_uri(version)


def test_subset_ignores_what_the_server_adds_but_not_what_differs() -> None:
    desired = {"spec": {"suspend": False, "containers": [{"name": "a", "env": [{"name": "X", "value": "1"}]}]}}
    served = {
        "spec": {
            "suspend": False,
            "dnsPolicy": "ClusterFirst",
            "containers": [{"name": "a", "env": [{"name": "X", "value": "1"}], "terminationMessagePath": "/dev/x"}],
        }
    }
    assert is_subset(desired, served)
    assert not is_subset(desired, {"spec": {**served["spec"], "suspend": True}})
    assert not is_subset(desired, {"spec": {**served["spec"], "containers": []}})
    assert not is_subset({"a": "1"}, {"a": 1}) and not is_subset({"a": [1]}, {"a": "1"})


def test_settings_come_from_the_environment_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"MAKEUSRICH_IMAGE": "img:2", "MAKEUSRICH_STORE": "s3://b"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MAKEUSRICH_STORAGE_SERVICE_ACCOUNT", "")  # the namespace's default account
    monkeypatch.setenv("MAKEUSRICH_OPERATOR_BACKOFF_LIMIT", "4")  # a variable with no flag

    def settings(*flags: str) -> OperatorSettings:
        return from_args(OperatorSettings, build_parser().parse_args(["render", "-f", "p.yaml", *flags]))

    chosen = settings("--image", "img:3")
    assert (chosen.image, chosen.store_url, chosen.s3_secret) == ("img:3", "s3://b", "makeusrich-s3")
    assert chosen.storage_service_account is None and chosen.backoff_limit == 4
    with pytest.raises(SettingsError, match=r"--image-pull-policy \(or MAKEUSRICH_IMAGE_PULL_POLICY\)"):
        monkeypatch.setenv("MAKEUSRICH_IMAGE_PULL_POLICY", "Sometimes")
        settings()
    monkeypatch.delenv("MAKEUSRICH_IMAGE_PULL_POLICY")
    with pytest.raises(SettingsError, match="store URL 'http://minio/bucket' is not s3://"):
        settings("--store", "http://minio/bucket")
    with pytest.raises(SettingsError, match="--image"):
        settings("--image", "")
