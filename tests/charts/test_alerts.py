"""The chart's alerts and Grafana dashboard: off by default; when on, the rules it renders pass `promtool check
rules` and the unit tests of alerts_test.yaml (each alert fires where a person must act and stays quiet beside
it, its text naming the pair), every runbook link has its section in docs/kubernetes.md, and every metric a rule
or a panel names is one that a real tracker or a real model server exports (or Prometheus's own `up`)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.charts.test_chart import of_kind, render
from tests.fixtures.model_server import RunningServer, free_port
from tests.fixtures.shell import ROOT, command
from tests.fixtures.waiting import eventually_sync, still_running

PROMTOOL = shutil.which("promtool")
ON = ("metrics.prometheusRule.enabled=true", "metrics.grafanaDashboard.enabled=true", "serving.podMonitor.enabled=true")
RUNBOOK = ROOT / "docs" / "kubernetes.md"
# Series Prometheus makes itself for every target.
PROMETHEUS_OWN = {"up"}
PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}


def rendered() -> list[dict[str, Any]]:
    return render(None, *ON, "tracker.serviceMonitor.enabled=true")


def rule_groups() -> dict[str, Any]:
    (rule,) = of_kind(rendered(), "PrometheusRule")
    spec: dict[str, Any] = rule["spec"]
    return spec


def rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups()["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    (config,) = [d for d in of_kind(rendered(), "ConfigMap") if "makeusrich.json" in d.get("data", {})]
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"  # what kube-prometheus-stack's sidecar loads
    board: dict[str, Any] = json.loads(config["data"]["makeusrich.json"])
    return board


def test_alerts_dashboard_and_pod_monitor_are_off_by_default() -> None:
    docs = render(None)
    assert of_kind(docs, "PrometheusRule") == [] and of_kind(docs, "PodMonitor") == []
    assert not [d for d in of_kind(docs, "ConfigMap") if "makeusrich.json" in d.get("data", {})]


def test_the_tracker_targets_get_the_job_name_the_alerts_read() -> None:
    docs = rendered()
    (monitor,) = of_kind(docs, "ServiceMonitor")
    service = next(d for d in of_kind(docs, "Service") if d["metadata"]["name"].endswith("-tracker"))
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "makeusrich-tracker"
    assert 'up{job="makeusrich-tracker"}' in rules()[0]["expr"]
    (pods,) = of_kind(docs, "PodMonitor")
    assert pods["spec"]["podMetricsEndpoints"][0]["port"] == "http1"  # the makeusrich-onnx runtime's REST port


def test_the_rendered_rules_pass_promtool_and_their_unit_tests(tmp_path: Path) -> None:
    assert PROMTOOL is not None, "promtool is missing: `make prometheus` installs Debian's prometheus package"
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_groups(), sort_keys=False))
    shutil.copy(Path(__file__).with_name("alerts_test.yaml"), tmp_path / "alerts_test.yaml")
    for args in (["check", "rules", "rules.yaml"], ["test", "rules", "alerts_test.yaml"]):
        done = subprocess.run([str(PROMTOOL), *args], cwd=tmp_path, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
    tested = set(re.findall(r"alertname: (\w+)", (tmp_path / "alerts_test.yaml").read_text()))
    assert tested == {rule["alert"] for rule in rules()}  # every alert has its case


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a page's headings."""
    return {
        re.sub(r"[^a-z0-9 _-]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in markdown.splitlines()
        if line.startswith("#")
    }


def test_every_alert_says_which_pair_and_links_its_runbook_section() -> None:
    sections = anchors(RUNBOOK.read_text())
    for rule in rules():
        notes = rule["annotations"]
        assert rule["labels"]["severity"] in ("critical", "warning")
        url = notes["runbook_url"]
        assert url.startswith("https://github.com/makeusrich/makeusrich/blob/main/docs/kubernetes.md#"), url
        assert url.split("#")[1] == rule["alert"].lower() and rule["alert"].lower() in sections, rule["alert"]
        if rule["alert"] == "MakeUsRichTrackerReplicaDown":  # about a tracker pod: names it
            assert "{{ $labels.instance }}" in notes["description"]
        elif rule["alert"] != "MakeUsRichTrackerDown":  # the one alert about no pair in particular
            assert "{{ $labels.pair }}" in notes["description"] and "{{ $labels.namespace }}" in notes["description"]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers outside label matchers, grouping clauses and
    strings that are not functions or keywords; a histogram's series are named by their family."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        following = text[match.end() :].lstrip()
        if following.startswith("(") or match.group() in PROMQL_WORDS:
            continue
        names.add(re.sub(r"_(bucket|count|sum)$", "", match.group()))
    return names


def test_the_metric_name_reader_reads_promql() -> None:
    assert metric_names(
        'histogram_quantile(0.95, sum by (le, pod) (rate(request_predict_seconds_bucket{a="b"}[5m])))'
    ) == {"request_predict_seconds"}
    assert metric_names('absent(up{job="x"} == 1)') == {"up"}
    assert metric_names("a_total / on (namespace, pair) (2 * b_seconds + 3600) and c >= 2") == {
        "a_total",
        "b_seconds",
        "c",
    }


def exported(url: str) -> set[str]:
    """Every metric family a /metrics page declares."""
    text = httpx.get(url, timeout=10).text
    return set(re.findall(r"^# TYPE (\S+) ", text, flags=re.MULTILINE))


@pytest.fixture
def tracker_metrics(tmp_path: Path) -> set[str]:
    """The families of a real `makeusrich track` (every family is declared, with or without samples)."""
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    port = free_port()
    args = ["track", "--source", "sample", "--pairs-dir", str(pairs), "--store", str(tmp_path / "store")]
    log_path = tmp_path / "track.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command(*args, "--port", str(port)), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:

        def families() -> set[str]:
            still_running(process, "makeusrich track", log_path.read_text)
            return exported(f"http://127.0.0.1:{port}/metrics")

        return eventually_sync(
            families,
            what="the tracker's /metrics",
            timeout=60,
            ignoring=(httpx.TransportError,),
            context=log_path.read_text,
        )
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_every_metric_the_rules_and_panels_name_is_exported(
    tracker_metrics: set[str], model_server: RunningServer
) -> None:
    known = tracker_metrics | exported(f"{model_server.url}/metrics") | PROMETHEUS_OWN
    named = {name for rule in rules() for name in metric_names(rule["expr"])}
    panels = dashboard()["panels"]
    queried = {name for panel in panels for target in panel["targets"] for name in metric_names(target["expr"])}
    variables = [v["query"]["query"] for v in dashboard()["templating"]["list"] if v["type"] == "query"]
    series = [re.fullmatch(r"label_values\((.*), *\w+\)", query) for query in variables]  # (series, label)
    assert all(series) and len(series) == 2
    queried |= {name for match in series if match for name in metric_names(match.group(1))}
    assert named and queried
    assert named - known == set() and queried - known == set()
    assert {"makeusrich_track_server_up", "makeusrich_track_newest_run_age_seconds"} <= named
    assert "request_predict_seconds" in queried  # the model servers' own, for the latency panel


def test_the_dashboard_shows_what_the_issue_asks_per_pair() -> None:
    board = dashboard()
    titles = " | ".join(panel["title"] for panel in board["panels"])
    for wanted in ("Live skill", "coverage", "made and missed", "Model and training age", "time per request"):
        assert wanted in titles, wanted
    assert {v["name"] for v in board["templating"]["list"]} == {"datasource", "namespace", "pair", "window"}
    assert len({panel["id"] for panel in board["panels"]}) == len(board["panels"])
