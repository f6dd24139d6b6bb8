"""Every object the operator renders is valid for its API: built-in kinds by kubernetes-validate --strict (the
schemas of Kubernetes itself, offline), the InferenceService field by field against kserve's own v1beta1 model
classes, pairs against the generated CRD; and `render` prints exactly those objects."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kmock
import kubernetes.client.models as k8s_models
import kubernetes_validate
import pytest
import yaml
from kserve import models as kserve_models

from makeusrich.operator.objects import children
from makeusrich.operator.settings import OperatorSettings
from makeusrich.pair import load_pair, parse_pair
from tests.fixtures.shell import ROOT, makeusrich
from tests.operator.conftest import denied_requests, permission, rbac_rules
from tests.test_pair import crd_validator

EXAMPLE = ROOT / "manifests" / "examples" / "btc-usdt.yaml"
K8S_VERSION = "1.37.0"
UID = "6f1d2c3b-1111-4222-8333-944455556666"
VERSION = "20260101T000000Z"
PAIRS = [
    {"currency": "btc", "compare": "usdt"},
    {"currency": "eth", "compare": "btc", "interval": "4h", "schedule": "@daily", "suspend": True},
    {"currency": "sol", "compare": "usdt", "trainOnCreate": False, "serving": {"pinnedVersion": VERSION}},
]
SETTINGS = [
    OperatorSettings(),
    OperatorSettings(
        image="registry.example/trainer@sha256:" + "a" * 64,
        image_pull_policy="Always",
        store_url="s3://models/team",
        s3_endpoint="https://minio.example:9000",
        storage_service_account=None,
        trainer_requests={"cpu": "500m", "memory": "1Gi"},
        trainer_limits={"memory": "1Gi"},
    ),
]


def pair_document(spec: dict[str, Any], name: str = "p") -> dict[str, Any]:
    return {
        "apiVersion": "makeusrich.io/v1alpha1",
        "kind": "CurrencyPair",
        "metadata": {"name": name, "namespace": "markets"},
        "spec": spec,
    }


def rendered() -> list[dict[str, Any]]:
    objects = []
    for spec in PAIRS:
        pair = parse_pair(pair_document(spec))
        for settings in SETTINGS:
            objects += children(pair, settings, uid=UID, model_version=VERSION)
            objects += children(pair, settings, uid=None, model_version=VERSION)
    return objects


# --- the InferenceService against kserve's model classes --------------------------------------------------------

SCALARS: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "bool": (bool,), "float": (int, float)}


def model_class(name: str) -> type:
    for module in (kserve_models, k8s_models):
        if hasattr(module, name):
            return getattr(module, name)  # type: ignore[no-any-return]
    raise AssertionError(f"no model class {name} in kserve or kubernetes")


def check_against_model(value: Any, type_name: str, where: str) -> list[str]:
    """Problems of `value` as the openapi type `type_name` (a kserve/kubernetes model class or a builtin)."""
    if type_name in SCALARS:
        ok = isinstance(value, SCALARS[type_name]) and not (type_name != "bool" and isinstance(value, bool))
        return [] if ok else [f"{where}: {value!r} is not {type_name}"]
    if type_name == "object":
        return []
    # kserve writes list[X] and dict(str, X); kubernetes 37 writes List[X] and Dict[str, X].
    if type_name.lower().startswith("list[") and type_name.endswith("]"):
        if not isinstance(value, list):
            return [f"{where}: not a list"]
        return [p for i, item in enumerate(value) for p in check_against_model(item, type_name[5:-1], f"{where}[{i}]")]
    if type_name.lower().startswith(("dict(", "dict[")):
        inner = type_name[len("dict(") : -1].split(", ", 1)[1]
        if not isinstance(value, dict):
            return [f"{where}: not a mapping"]
        return [p for k, v in value.items() for p in check_against_model(v, inner, f"{where}.{k}")]
    cls = model_class(type_name)
    if not isinstance(value, dict):
        return [f"{where}: {type_name} must be an object"]
    by_json_name = {json_name: attr for attr, json_name in cls.attribute_map.items()}  # type: ignore[attr-defined]
    problems = []
    for key, item in value.items():
        if key not in by_json_name:
            problems.append(f"{where}.{key}: no such field in {type_name}")
        else:
            types = cls.openapi_types  # type: ignore[attr-defined]
            problems += check_against_model(item, types[by_json_name[key]], f"{where}.{key}")
    return problems


def test_the_model_check_catches_wrong_fields_and_types() -> None:
    good = {"spec": {"predictor": {"minReplicas": 1, "model": {"modelFormat": {"name": "onnx"}}}}}
    assert check_against_model(good, "V1beta1InferenceService", "isvc") == []
    wrong = {"spec": {"predictor": {"minReplicas": "1", "model": {"storageURI": "s3://x", "modelFormat": "onnx"}}}}
    assert sorted(check_against_model(wrong, "V1beta1InferenceService", "isvc")) == [
        "isvc.spec.predictor.minReplicas: '1' is not int",
        "isvc.spec.predictor.model.modelFormat: V1beta1ModelFormat must be an object",
        "isvc.spec.predictor.model.storageURI: no such field in V1beta1ModelSpec",
    ]


def test_inference_services_fit_kserve_s_v1beta1_models() -> None:
    services = [o for o in rendered() if o["kind"] == "InferenceService"]
    assert len(services) == len(PAIRS) * len(SETTINGS) * 2
    for isvc in services:
        assert check_against_model(isvc, "V1beta1InferenceService", "InferenceService") == []
        # KServe's own required fields, which the model classes enforce in their constructors.
        model = isvc["spec"]["predictor"]["model"]
        assert model["modelFormat"]["name"] and model["storageUri"].startswith(("s3://", "file://"))


# --- built-in kinds against Kubernetes' schemas ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["CronJob", "Job"])
def test_trainer_objects_validate_strictly(kind: str) -> None:
    objects = [o for o in rendered() if o["kind"] == kind]
    assert objects
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_strict_validation_would_catch_a_mistake() -> None:
    obj = next(o for o in rendered() if o["kind"] == "CronJob")
    obj["spec"]["concurrencyPolicy"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    obj["spec"]["concurrencyPolicy"] = "Forbid"
    obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicyy"] = "Never"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_the_rbac_manifest_validates_strictly_and_grants_no_deletes() -> None:
    documents = [doc for doc in yaml.safe_load_all((ROOT / "manifests" / "rbac.yaml").read_text()) if doc]
    assert {doc["kind"] for doc in documents} == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
    for doc in documents:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    assert not any("secrets" in rule["resources"] for rule in rbac_rules())
    granted = {(rule["resources"][0], verb) for rule in rbac_rules() for verb in rule["verbs"]}
    assert ("currencypairs/finalizers", "update") in granted  # the only update: blockOwnerDeletion needs it
    assert {verb for resource, verb in granted if resource != "currencypairs/finalizers"} <= {
        "get",
        "list",
        "watch",
        "create",
        "patch",
    }


# --- pairs against the CRD, and the command line ---------------------------------------------------------------


def test_example_and_test_pairs_fit_the_crd() -> None:
    validator = crd_validator()
    examples = sorted((ROOT / "manifests" / "examples").glob("*.yaml"))
    assert [p.name for p in examples] == ["btc-usdt.yaml", "eth-usdt.yaml"]
    for example in examples:
        validator.validate(yaml.safe_load(example.read_text()))
        load_pair(example)  # and the package reads it alike
    for spec in PAIRS:
        validator.validate(pair_document(spec))


def test_render_prints_what_the_operator_makes_and_it_validates(tmp_path: Path) -> None:
    result = makeusrich("render", "-f", str(EXAMPLE), "--uid", UID, "--model-version", VERSION, "--image", "img:1")
    assert result.returncode == 0, result.stderr
    documents = list(yaml.safe_load_all(result.stdout))
    pair = load_pair(EXAMPLE)
    expected = children(pair, OperatorSettings(image="img:1"), uid=UID, model_version=VERSION)
    assert documents == expected
    assert [d["kind"] for d in documents] == ["CronJob", "Job", "InferenceService"]
    # The same file through the kubernetes-validate command line, as CI or a user would run it.
    builtins = tmp_path / "builtins.yaml"
    builtins.write_text(yaml.safe_dump_all([d for d in documents if d["kind"] != "InferenceService"]))
    checked = subprocess.run(
        [str(Path(sys.executable).parent / "kubernetes-validate"), "--strict", "--quiet", str(builtins)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_render_without_a_cluster_says_what_it_left_out() -> None:
    result = makeusrich("render", "-f", str(EXAMPLE))
    assert result.returncode == 0
    assert [d["kind"] for d in yaml.safe_load_all(result.stdout)] == ["CronJob", "Job"]
    assert "ownerReferences are left out" in result.stderr and "no InferenceService yet" in result.stderr


def test_render_of_a_bad_file_fails_with_one_sentence(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(pair_document({"currency": "btc", "compare": "usdt", "schedule": "0 0 30 2 *"})))
    result = makeusrich("render", "-f", str(bad))
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("makeusrich render: ") and "never fires" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_rbac_check_of_the_end_to_end_tests_would_notice_a_missing_grant() -> None:
    def request(method: str, path: str, action: Any, plural: str, group: str = "", sub: str | None = None) -> Any:
        return kmock.Request(
            method=method,
            url=path,
            action=action,
            resource=kmock.resource(group, "v1", plural),
            subresource=sub,
            headers={"User-Agent": "makeusrich-operator/0.1.0"},
        )

    made = SimpleNamespace(
        requests=[
            request("GET", "/api/v1/namespaces/d/pods", kmock.action.LIST, "pods"),
            request("POST", "/api/v1/namespaces/d/events", kmock.action.CREATE, "events"),
            request(
                "PATCH",
                "/apis/makeusrich.io/v1/namespaces/d/currencypairs/p/status",
                kmock.action.UPDATE,
                "currencypairs",
                "makeusrich.io",
                "status",
            ),
            request("DELETE", "/apis/batch/v1/namespaces/d/jobs/j", kmock.action.DELETE, "jobs", "batch"),
        ]
    )
    assert permission(made.requests[2]) == ("makeusrich.io", "currencypairs/status", "patch")
    assert denied_requests(made) == ["DELETE /apis/batch/v1/namespaces/d/jobs/j"]  # type: ignore[arg-type]
    without_pods = [rule for rule in rbac_rules() if rule["resources"] != ["pods"]]
    assert denied_requests(made, without_pods)[0] == "GET /api/v1/namespaces/d/pods"  # type: ignore[arg-type]
