"""The chart as users install it from a registry: `helm package` makes one archive, and that archive renders and
validates exactly as the source chart does; its Artifact Hub annotations name the images it runs, its CRD and a
valid example, and every version in it is the package's."""

from __future__ import annotations

import tarfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

import makeusrich
from makeusrich.pair import parse_pair
from tests.charts.test_chart import CHART, CI_VALUES, ROOT, helm, pod_specs, render


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `make chart` makes (the same helm command), in a folder of its own."""
    out = tmp_path_factory.mktemp("dist")
    result = helm("package", str(CHART), "--destination", str(out))
    assert result.returncode == 0, result.stderr
    (archive,) = out.glob("makeusrich-*.tgz")
    return archive


def test_every_version_is_the_packages() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert chart["version"] == chart["appVersion"] == project == makeusrich.__version__
    images = yaml.safe_load(chart["annotations"]["artifacthub.io/images"])
    assert {i["image"] for i in images} == {
        f"makeusrich/{name}:{project}" for name in ("operator", "trainer", "serving", "dashboard", "tracker")
    }


def test_the_archive_holds_the_chart_and_renders_as_the_source_does(packaged: Path) -> None:
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    assert packaged.name == f"makeusrich-{version}.tgz"
    with tarfile.open(packaged) as archive:
        names = set(archive.getnames())
    assert {"makeusrich/Chart.yaml", "makeusrich/values.yaml", "makeusrich/values.schema.json"} <= names
    assert "makeusrich/files/crd.yaml" in names and not any("/ci/" in n for n in names)  # test values stay out
    for values in CI_VALUES:
        lint = helm("lint", "--strict", str(packaged), "-f", str(values))
        assert lint.returncode == 0, lint.stdout + lint.stderr
        assert settled(render(values, chart=packaged)) == settled(render(values))


def settled(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The documents with the dashboard's session key, drawn at random at each render, blanked."""
    for doc in docs:
        if doc["kind"] == "Secret" and "MAKEUSRICH_UI_STORAGE_SECRET" in doc.get("data", {}):
            doc["data"]["MAKEUSRICH_UI_STORAGE_SECRET"] = "random"
    return docs


def test_the_annotations_name_the_rendered_images_the_crd_and_a_valid_example(packaged: Path) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    annotations = chart["annotations"]
    docs = render()
    rendered = {c["image"] for _, spec in pod_specs(docs) for c in spec["containers"]}
    named = {i["image"] for i in yaml.safe_load(annotations["artifacthub.io/images"])}
    assert rendered < named  # the trainer's image is the operator's to use, in Jobs it makes
    (crd,) = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    (declared,) = yaml.safe_load(annotations["artifacthub.io/crds"])
    assert declared["name"] == crd["metadata"]["name"] and declared["kind"] == crd["spec"]["names"]["kind"]
    assert declared["version"] in {v["name"] for v in crd["spec"]["versions"]}
    for example in yaml.safe_load(annotations["artifacthub.io/crdsExamples"]):
        assert parse_pair(example).spec.symbol == "BTCUSDT"  # the example is a pair the operator accepts
    assert (
        annotations["artifacthub.io/license"]
        == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    )
