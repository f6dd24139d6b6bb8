"""Pure builders of the Kubernetes objects the operator makes for a CurrencyPair (contract 4).

No I/O here: `makeusrich render` prints exactly what these return, the operator applies exactly the same, and the
tests validate them against Kubernetes' and KServe's schemas. Everything that varies per installation (image,
store, Secret names, resources, history limits) comes in through `OperatorSettings`, filled by the chart.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from makeusrich.operator.settings import OperatorSettings
from makeusrich.pair import API_VERSION, KIND, PAIR_ENV, CurrencyPair
from makeusrich.store import storage_uri

PART_OF = "app.kubernetes.io/part-of"
MANAGED_BY = "app.kubernetes.io/managed-by"
COMPONENT = "app.kubernetes.io/component"
PAIR_LABEL = "makeusrich.io/pair"
MANAGER = "makeusrich-operator"
MODEL_VERSION_ANNOTATION = "makeusrich.io/model-version"
DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"

AWS_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
# The root filesystem is read-only: every cache (torch, pip, matplotlib) goes to the /tmp emptyDir.
TMP_ENV = {"HOME": "/tmp", "TMPDIR": "/tmp", "XDG_CACHE_HOME": "/tmp/.cache"}
# Kubernetes puts the Job name into a pod label (at most 63 characters).
MAX_JOB_NAME = 63


# --- small pieces ------------------------------------------------------------------------------------------


def labels(pair: CurrencyPair, component: str) -> dict[str, str]:
    return {PART_OF: "makeusrich", MANAGED_BY: MANAGER, PAIR_LABEL: pair.name, COMPONENT: component}


def owner_reference(pair: CurrencyPair, uid: str) -> dict[str, Any]:
    """Makes the CurrencyPair the controller of a child, so Kubernetes' garbage collector deletes the child with
    the pair (no finalizer needed) and `kubectl get -o wide` shows who owns it."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": pair.name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(
    pair: CurrencyPair, name: str, component: str, uid: str | None, annotations: Mapping[str, str] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": pair.namespace, "labels": labels(pair, component)}
    if annotations:
        meta["annotations"] = dict(annotations)
    if uid:
        meta["ownerReferences"] = [owner_reference(pair, uid)]
    return meta


def pair_env_value(pair: CurrencyPair) -> str:
    """The resource as the trainer reads it from $MAKEUSRICH_PAIR: identity and spec, nothing cluster-specific,
    so the CronJob changes only when the spec does."""
    document = {
        "apiVersion": pair.api_version,
        "kind": pair.kind,
        "metadata": {"name": pair.name, "namespace": pair.namespace},
        "spec": pair.spec.model_dump(by_alias=True, mode="json", exclude_none=True),
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def initial_job_name(pair: CurrencyPair, uid: str | None) -> str:
    """`<pair>-trainer-initial-<hash>`: the hash of the pair's uid makes a replayed create event find the same Job
    (409, nothing new) while a pair deleted and made again gets a Job of its own."""
    digest = hashlib.sha256((uid or f"{pair.namespace}/{pair.name}").encode()).hexdigest()[:6]
    base = f"{pair.name}-trainer-initial"
    return f"{base[: MAX_JOB_NAME - len(digest) - 1].rstrip('-')}-{digest}"


def degraded_job_name(pair: CurrencyPair, since: str) -> str:
    """`<pair>-trainer-degraded-<hash>`: one Job per time the pair turned Degraded (`since`, the condition's
    lastTransitionTime), so a repeated reconcile finds the same Job."""
    digest = hashlib.sha256(f"{pair.namespace}/{pair.name}@{since}".encode()).hexdigest()[:6]
    base = f"{pair.name}-trainer-degraded"
    return f"{base[: MAX_JOB_NAME - len(digest) - 1].rstrip('-')}-{digest}"


# --- the trainer ---------------------------------------------------------------------------------------------


def trainer_env(pair: CurrencyPair, settings: OperatorSettings) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": PAIR_ENV, "value": pair_env_value(pair)},
        {"name": "MAKEUSRICH_STORE", "value": settings.store_url},
    ]
    s3 = {
        "S3_ENDPOINT": settings.s3_endpoint,
        "S3_USE_HTTPS": settings.s3_use_https,
        "S3_VERIFY_TLS": settings.s3_verify_tls,
        "AWS_REGION": settings.aws_region,
    }
    env += [{"name": name, "value": value} for name, value in s3.items() if value]
    secret = settings.s3_secret
    env += [{"name": k, "valueFrom": {"secretKeyRef": {"name": secret, "key": k}}} for k in AWS_KEYS]
    return env + [{"name": k, "value": v} for k, v in TMP_ENV.items()]


def trainer_pod_template(
    pair: CurrencyPair, settings: OperatorSettings, recalibrate_first: bool = False
) -> dict[str, Any]:
    first = ["--recalibrate-first"] if recalibrate_first else []
    container: dict[str, Any] = {
        "name": "trainer",
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["makeusrich", "train", "--source", "binance", *first],
        "env": trainer_env(pair, settings),
        "resources": {"requests": dict(settings.trainer_requests), "limits": dict(settings.trainer_limits)},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        # A failed trainer ends with one sentence on stderr; this puts it into the pod's status, where the
        # operator reads it for the pair's Trained condition without log access.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    return {
        "metadata": {"labels": labels(pair, "trainer")},
        "spec": {
            "restartPolicy": "Never",
            # The trainer talks to Binance and S3 only, never to the Kubernetes API.
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": settings.run_as_user,
                "runAsGroup": settings.run_as_user,
                "fsGroup": settings.run_as_user,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": settings.tmp_size}}],
            **placement(settings),
        },
    }


def placement(settings: OperatorSettings) -> dict[str, Any]:
    """Where trainer pods run and as whom: only what was configured, so the default pod spec stays as it was."""
    chosen: dict[str, Any] = {
        "serviceAccountName": settings.trainer_service_account,
        "nodeSelector": dict(settings.trainer_node_selector),
        "tolerations": [dict(t) for t in settings.trainer_tolerations],
    }
    return {key: value for key, value in chosen.items() if value}


def trainer_job_spec(pair: CurrencyPair, settings: OperatorSettings, recalibrate_first: bool = False) -> dict[str, Any]:
    return {
        "backoffLimit": settings.backoff_limit,
        "activeDeadlineSeconds": settings.active_deadline_seconds,
        "template": trainer_pod_template(pair, settings, recalibrate_first),
    }


def cronjob(pair: CurrencyPair, settings: OperatorSettings, uid: str | None = None) -> dict[str, Any]:
    """CronJob `<pair>-trainer`: retrains on the pair's schedule, one run at a time."""
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": _metadata(pair, f"{pair.name}-trainer", "trainer", uid),
        "spec": {
            "schedule": pair.spec.schedule,
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "suspend": pair.spec.suspend,
            "startingDeadlineSeconds": settings.starting_deadline_seconds,
            "successfulJobsHistoryLimit": settings.successful_jobs_history,
            "failedJobsHistoryLimit": settings.failed_jobs_history,
            "jobTemplate": {"metadata": {"labels": labels(pair, "trainer")}, "spec": trainer_job_spec(pair, settings)},
        },
    }


def initial_job(
    pair: CurrencyPair,
    settings: OperatorSettings,
    uid: str | None = None,
    name: str | None = None,
    recalibrate_first: bool = False,
) -> dict[str, Any]:
    """A training run outside the schedule: the first one, started at once so a new pair gets a model without
    waiting for its schedule, or one named `name` (a retraining when the live record turned Degraded; with
    `recalibrate_first`, when the ranges turned too narrow, it refits the served LSTM's margins before it trains)."""
    spec = trainer_job_spec(pair, settings, recalibrate_first)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(pair, name or initial_job_name(pair, uid), "trainer", uid),
        "spec": {**spec, "ttlSecondsAfterFinished": settings.initial_job_ttl_seconds},
    }


# --- serving -------------------------------------------------------------------------------------------------


def inference_service(
    pair: CurrencyPair, settings: OperatorSettings, storage_uri: str, version: str, uid: str | None = None
) -> dict[str, Any]:
    """InferenceService `<pair>` serving one version folder (a Triton model repository) over the v2 protocol. A
    plain dict, not kserve's model classes: kubernetes 37 serialises those wrongly, and the operator image need not
    carry kserve. Tests check every field against kserve's classes instead."""
    predictor: dict[str, Any] = {
        "minReplicas": pair.spec.serving.min_replicas,
        "model": {
            "modelFormat": {"name": "onnx"},
            "protocolVersion": "v2",
            "runtime": pair.spec.serving.runtime,
            "storageUri": storage_uri,
        },
    }
    if settings.storage_service_account:
        predictor["serviceAccountName"] = settings.storage_service_account
    annotations = {DEPLOYMENT_MODE_ANNOTATION: "Standard", MODEL_VERSION_ANNOTATION: version}
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": _metadata(pair, pair.name, "serving", uid, annotations),
        "spec": {"predictor": predictor},
    }


def children(
    pair: CurrencyPair, settings: OperatorSettings, uid: str | None = None, model_version: str | None = None
) -> list[dict[str, Any]]:
    """Everything the operator makes for a new pair, in creation order. The InferenceService needs a version
    (the pinned one, or `model_version` standing in for what latest.json will name)."""
    objects = [cronjob(pair, settings, uid)]
    if pair.spec.train_on_create and not pair.spec.suspend:
        objects.append(initial_job(pair, settings, uid))
    version = pair.spec.serving.pinned_version or model_version
    if version:
        uri = storage_uri(settings.store_url, pair.namespace, pair.name, version)
        objects.append(inference_service(pair, settings, uri, version, uid))
    return objects


# --- comparing desired and observed ----------------------------------------------------------------------------


def is_subset(desired: Any, observed: Any) -> bool:
    """True when every field we set has the value we set. The API server adds defaults (dnsPolicy,
    terminationMessagePath, ...) that we never set, so equality would always see drift."""
    if isinstance(desired, Mapping):
        return isinstance(observed, Mapping) and all(
            key in observed and is_subset(value, observed[key]) for key, value in desired.items()
        )
    if isinstance(desired, Sequence) and not isinstance(desired, str):
        return (
            isinstance(observed, Sequence)
            and not isinstance(observed, str)
            and len(desired) == len(observed)
            and all(is_subset(d, o) for d, o in zip(desired, observed, strict=True))
        )
    return bool(desired == observed)
