"""The CurrencyPair schema, its CRD, and the files in manifests/ generated from it."""

from __future__ import annotations

import copy
import importlib.util
import os
import re
import subprocess
import sys
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from makeusrich.contract import model_name, model_name_at
from makeusrich.errors import PairError
from makeusrich.pair import CurrencyPairSpec, crd_manifest, load_pair, next_run, parse_pair, valid_cron

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "manifests" / "examples" / "btc-usdt.yaml"


def openapi_to_jsonschema(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI 3.0 (as Kubernetes reads it) to JSON Schema: nullable and boolean exclusive bounds."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {name: openapi_to_jsonschema(sub) for name, sub in value.items()}
        elif key == "items":
            out[key] = openapi_to_jsonschema(value)
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            if value:
                out[key] = schema[bound]
        elif key in ("minimum", "maximum"):
            excl = schema.get("exclusiveMinimum" if key == "minimum" else "exclusiveMaximum")
            if not excl:
                out[key] = value
        elif key == "nullable" or key.startswith("x-kubernetes"):
            continue
        else:
            out[key] = value
    if schema.get("nullable"):
        out["type"] = [schema["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if schema.get("type") == "object" and "properties" in schema:
        out["additionalProperties"] = False  # the API server prunes unknown fields; a test should flag them
    return out


def crd_validator() -> jsonschema.Draft202012Validator:
    schema = crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    converted = openapi_to_jsonschema(schema)
    converted["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft202012Validator(converted)


def patched_example(patch: dict[str, Any]) -> dict[str, Any]:
    """The example resource with some spec fields replaced (nested objects merged)."""
    document: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    for key, value in patch.items():
        if isinstance(value, dict):
            document["spec"][key] = {**document["spec"].get(key, {}), **value}
        else:
            document["spec"][key] = value
    return document


def test_defaults_fill_the_design_contract() -> None:
    spec = CurrencyPairSpec.model_validate({"currency": "btc", "compare": "usdt"})
    assert spec.symbol == "BTCUSDT"
    assert (spec.interval, spec.schedule, spec.lookback_days) == ("1h", "0 0 * * *", 1095)
    assert spec.model.window == 120 and spec.model.horizon == 1 and spec.model.patience == 3
    assert spec.promotion.max_relative_mae == 1.0
    assert spec.serving.runtime == "makeusrich-onnx" and spec.serving.pinned_version is None
    assert spec.lookback_candles() == 1095 * 24
    assert (spec.decision.fee_bps, spec.decision.threshold, spec.decision.cap) == (10.0, None, 1.0)


@pytest.mark.parametrize(
    ("patch", "field", "words"),
    [
        ({"currency": "BTC"}, "spec.currency", "pattern"),
        ({"interval": "7m"}, "spec.interval", "1h"),
        ({"schedule": "61 0 * * *"}, "spec.schedule", "not valid"),
        ({"schedule": "0 0 30 2 *"}, "spec.schedule", "never fires"),
        ({"schedule": "0 0 * * * *"}, "spec.schedule", "5 fields"),
        ({"schedule": "@fortnightly"}, "spec.schedule", "macro"),
        ({"lookbackDays": 0}, "spec.lookbackDays", "greater than or equal to 1"),
        ({"model": {"window": 4}}, "spec.model.window", "greater than or equal to 8"),
        ({"model": {"horizon": 100}}, "spec.model.horizon", "less than or equal to 48"),
        ({"model": {"maxEpochs": 0}}, "spec.model.maxEpochs", "greater than or equal to 1"),
        ({"promotion": {"maxRelativeMAE": 0}}, "spec.promotion.maxRelativeMAE", "greater than 0"),
        ({"serving": {"pinnedVersion": "latest"}}, "spec.serving.pinnedVersion", "pattern"),
        ({"serving": {"pinnedVersion": "20261399T256161Z"}}, "spec.serving.pinnedVersion", "UTC time of their run"),
        ({"decision": {"feeBps": -1}}, "spec.decision.feeBps", "greater than or equal to 0"),
        ({"decision": {"cap": 1.5}}, "spec.decision.cap", "less than or equal to 1"),
        ({"decision": {"treshold": 0.001}}, "spec.decision.treshold", "unknown field"),
        ({"windw": 3}, "spec.windw", "unknown field"),
    ],
)
def test_bad_fields_are_named_with_the_reason(patch: dict[str, Any], field: str, words: str) -> None:
    document = patched_example(patch)
    with pytest.raises(PairError) as caught:
        parse_pair(document, "pair.yaml")
    message = str(caught.value)
    assert message.startswith("pair.yaml: invalid CurrencyPair:")
    assert field in message and words in message


def test_bad_names_and_documents() -> None:
    with pytest.raises(PairError, match=r"metadata\.name"):
        parse_pair({"metadata": {"name": "BTC_USDT"}, "spec": {"currency": "btc", "compare": "usdt"}})
    with pytest.raises(PairError, match=r"metadata\.name"):
        parse_pair({"metadata": {"name": "a" * 60}, "spec": {"currency": "btc", "compare": "usdt"}})
    with pytest.raises(PairError, match="spec: Field required"):
        parse_pair({"metadata": {"name": "x"}})
    with pytest.raises(PairError, match="expected a CurrencyPair mapping"):
        parse_pair(["not", "a", "mapping"])


def test_load_pair_file_errors(tmp_path: Path) -> None:
    with pytest.raises(PairError, match="cannot read pair file"):
        load_pair(tmp_path / "missing.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(PairError, match="is empty"):
        load_pair(tmp_path / "empty.yaml")
    (tmp_path / "broken.yaml").write_text("spec: [unclosed\n")
    with pytest.raises(PairError, match="not valid YAML"):
        load_pair(tmp_path / "broken.yaml")


def test_load_pair_picks_the_currencypair_of_a_multi_document_file(tmp_path: Path) -> None:
    other = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "crypto"}}
    pair = yaml.safe_load(EXAMPLE.read_text())
    path = tmp_path / "both.yaml"
    path.write_text(yaml.safe_dump_all([other, pair]))
    assert load_pair(path).name == "btc-usdt"


def test_cron_accepts_what_kubernetes_accepts() -> None:
    assert valid_cron("*/15  *  * * 1-5") == "*/15 * * * 1-5"
    assert valid_cron("@hourly") == "@hourly"
    for expression in ("0 9-17/2 * * MON-FRI", "0 0 1,15 jan,JUL ?", "5/20 * * * *", "0 0 * * sun", "0 0 * * 0-6"):
        assert valid_cron(expression) == expression


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("1-0 * * * *", "minute range '1-0' runs backwards"),
        ("0 0 L * *", "day of month 'L' is not a number or a name"),
        ("0 0 * * 7#5", "day of week '7#5' is not a number or a name"),
        ("0 0 1W * *", "day of month '1W' is not a number or a name"),
        ("0 0 * * 7", "day of week 7 is outside 0-6"),
        ("*/0 * * * *", "minute step '0' is not a whole number of at least 1"),
        ("0 0 * FOO *", "month 'FOO' is not a number or a name"),
        ("@every 5m", "unknown cron macro"),
    ],
)
def test_cron_refuses_what_a_cronjob_refuses(expression: str, reason: str) -> None:
    """croniter (and cronsim) accept L, W, # and weekday 7; Kubernetes' parser does not: neither do we."""
    with pytest.raises(ValueError, match=re.escape(reason)):
        valid_cron(expression)


def test_next_run_follows_kubernetes_reading_of_the_schedule() -> None:
    monday = datetime(2026, 11, 30, 10, 30, tzinfo=UTC)
    assert next_run("0 9-17/2 * * MON-FRI", monday) == datetime(2026, 11, 30, 11, 0, tzinfo=UTC)
    assert next_run("0 0 ? * *", monday) == datetime(2026, 12, 1, 0, 0, tzinfo=UTC)  # ? is *
    assert next_run("@daily", monday) == datetime(2026, 12, 1, 0, 0, tzinfo=UTC)


def test_strings_and_floats_are_not_numbers(tmp_path: Path) -> None:
    for value in ("365", 365.0, True):
        with pytest.raises(PairError, match="spec.lookbackDays: Input should be a valid integer"):
            parse_pair(patched_example({"lookbackDays": value}))
    with pytest.raises(PairError, match="metadata.uid: Input should be a valid string"):
        parse_pair({**patched_example({}), "metadata": {"name": "btc-usdt", "uid": 12345}})


def test_hostile_pair_files_are_one_sentence(tmp_path: Path) -> None:
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes("metadata: {name: caf\xe9}\n".encode("latin-1"))
    with pytest.raises(PairError, match=r"is not UTF-8 text \(byte 20 is 0xe9\)"):
        load_pair(latin)
    deep = tmp_path / "deep.yaml"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(PairError, match="nests YAML too deeply"):
        load_pair(deep)
    big = tmp_path / "big.yaml"
    big.write_text("spec:\n  x: [" + "1, " * 400_000 + "1]\n")
    with pytest.raises(PairError, match="is larger than 1 MiB"):
        load_pair(big)
    with pytest.raises(PairError, match="/dev/zero is not a regular file"):
        load_pair("/dev/zero")  # not read at all
    long_value = patched_example({"currency": "x" * 10_000})
    with pytest.raises(PairError) as caught:
        parse_pair(long_value)
    assert len(str(caught.value)) < 300 and "xxx…" in str(caught.value)


def test_a_fifo_in_the_pairs_folder_is_refused_and_the_files_after_it_are_read(tmp_path: Path) -> None:
    """A FIFO named evil.yaml hung `up`'s scan for good (nothing writes to it); it is no regular file."""
    os.mkfifo(tmp_path / "evil.yaml")
    (tmp_path / "later.yaml").write_text(EXAMPLE.read_text())
    # In a child process, so that a regression fails here (killed at the bound) instead of hanging the suite.
    script = "import sys; from makeusrich.pair import read_pair_files; from pathlib import Path\n"
    script += "for f in read_pair_files(Path(sys.argv[1])): print(f.path.name, f.problem)"
    read = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert read.stdout.splitlines() == [
        f"evil.yaml {tmp_path / 'evil.yaml'} is not a regular file; a pair file is a YAML or JSON file",
        "later.yaml None",
    ], read.stderr


def test_rewritten_large_pair_files_are_not_kept_whole(tmp_path: Path) -> None:
    """Parsed pairs are kept by their file's digest: rewritten large pair files were once kept whole, the cache
    keyed by their content (40 files of 1 MiB: 37 MiB more a round, up to 4,096 entries)."""
    padding = "#" + "x" * (256 * 1024) + "\n"
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(8):  # eight contents of 256 KiB: 2 MiB, had they been kept
            path = tmp_path / f"pair-{i % 2}.yaml"
            path.write_text(f"# rewrite {i}\n{padding}{EXAMPLE.read_text()}")
            assert load_pair(path).name == "btc-usdt"
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 512 * 1024, f"{grown / 1024:.0f} KiB kept after reading eight files of 256 KiB"


def test_manifests_are_not_stale() -> None:
    """manifests/crd.yaml is the generated CRD; regenerate with `makeusrich crd > manifests/crd.yaml`."""
    on_disk = yaml.safe_load((ROOT / "manifests" / "crd.yaml").read_text())
    assert on_disk == crd_manifest()


def test_crd_is_structural_and_complete() -> None:
    crd = crd_manifest()
    version = crd["spec"]["versions"][0]
    assert crd["spec"]["names"]["shortNames"] == ["cp"] and crd["spec"]["scope"] == "Namespaced"
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Pair",
        "Interval",
        "Schedule",
        "Serving",
        "Model",
        "Skill",
        "Live",
        "Ready",
        "Age",
    ]

    def walk(node: dict[str, Any], path: str) -> None:
        assert "$ref" not in node and "anyOf" not in node and "title" not in node, path
        assert "type" in node, f"{path} has no type (not structural)"
        for name, sub in node.get("properties", {}).items():
            walk(sub, f"{path}.{name}")
        if "items" in node:
            walk(node["items"], f"{path}[]")

    walk(version["schema"]["openAPIV3Schema"], "")
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["required"] == ["currency", "compare"]
    assert spec["properties"]["model"]["properties"]["window"] == {
        "default": 120,
        "description": "Candles in one input window.",
        "maximum": 2000,
        "minimum": 8,
        "type": "integer",
    }
    learning_rate = spec["properties"]["model"]["properties"]["learningRate"]
    assert learning_rate["minimum"] == 0 and learning_rate["exclusiveMinimum"] is True


def test_example_validates_against_the_crd_and_the_model() -> None:
    document = yaml.safe_load(EXAMPLE.read_text())
    crd_validator().validate(document)
    assert load_pair(EXAMPLE).spec.symbol == "BTCUSDT"


def test_crd_schema_refuses_what_the_model_refuses() -> None:
    validator = crd_validator()
    good = yaml.safe_load(EXAMPLE.read_text())
    for path, value in [
        (("spec", "model", "window"), 4),
        (("spec", "interval"), "7m"),
        (("spec", "currency"), "BTC"),
        (("spec", "promotion", "maxRelativeMAE"), 0),
        (("spec", "schedule"), "daily"),
    ]:
        bad = copy.deepcopy(good)
        node = bad
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        assert not validator.is_valid(bad), path
        with pytest.raises(PairError):
            parse_pair(bad)


@pytest.mark.parametrize(
    ("patch", "field", "camel"),
    [
        ({"model": {"hidden_size": 8}}, "spec.model.hidden_size", "hiddenSize"),
        ({"lookback_days": 30}, "spec.lookback_days", "lookbackDays"),
        ({"promotion": {"max_relative_mae": 2}}, "spec.promotion.max_relative_mae", "maxRelativeMAE"),
        ({"serving": {"min_replicas": 2}}, "spec.serving.min_replicas", "minReplicas"),
    ],
)
def test_snake_case_fields_mean_the_same_here_as_in_the_cluster(
    tmp_path: Path, patch: dict[str, Any], field: str, camel: str
) -> None:
    """The CRD knows camelCase only, so the API server refuses `hidden_size`; a pair file here must too, and say
    which name to use."""
    document = patched_example(patch)
    assert list(crd_validator().iter_errors(document)), "the CRD's schema should refuse it too"
    path = tmp_path / "pair.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(PairError) as caught:
        load_pair(path)
    assert f"{field}: unknown field; write {camel}" in str(caught.value)


def test_the_readme_pair_reference_is_generated_from_the_schema() -> None:
    """The README's table of pair fields is docs/pair_reference.py's output, not a second copy typed by hand."""
    spec = importlib.util.spec_from_file_location("pair_reference", ROOT / "docs" / "pair_reference.py")
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    readme = (ROOT / "README.md").read_text()
    assert generator.readme_with_reference(readme) == readme, "run: PYTHONPATH=. python docs/pair_reference.py --write"
    for field in ("`spec.model.window`", "`spec.promotion.maxRelativeMAE`", "`spec.trainOnCreate`"):
        assert field in readme


def test_a_pair_s_model_name_on_a_server_of_every_namespace_or_of_one() -> None:
    assert model_name("default", "btc-x") == "btc-x" and model_name("team-a", "btc-x") == "team-a.btc-x"
    every = ["btc-x", "team-a.btc-x"]
    assert model_name_at("team-a", "btc-x", every) == "team-a.btc-x"
    assert model_name_at("team-b", "solo", every) == "team-b.solo"  # a server of every namespace: never another's
    assert model_name_at("team-a", "btc-x", ["btc-x"]) == "btc-x"  # an InferenceService in team-a
    assert model_name_at("team-a", "btc-x", None) == "btc-x"
    assert model_name_at("default", "btc-x", every) == "btc-x"
