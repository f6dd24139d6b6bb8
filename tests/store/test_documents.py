"""metadata.json as one typed document: camelCase on disk, older snake_case documents still read, and a
malformed one refused naming the field."""

from __future__ import annotations

import json

import pytest

from makeusrich.errors import StoreError
from makeusrich.store import ModelMetadata, parse_metadata
from tests.fixtures.metadata import metadata_document


def test_written_keys_are_camel_case_throughout() -> None:
    written = parse_metadata(metadata_document()).to_json()

    def keys(value: object) -> set[str]:
        if isinstance(value, dict):
            return {k for k in value if k != "spec"} | {x for v in value.values() for x in keys(v)}
        if isinstance(value, list):
            return {x for v in value for x in keys(v)}
        return set()

    assert not {k for k in keys(written) if "_" in k}
    test = written["metrics"]["test"]
    assert test["model"]["relMae"] == 0.95 and "alwaysUp" in test["rules"] and written["data"]["from"]
    assert parse_metadata(json.loads(json.dumps(written))) == parse_metadata(metadata_document())


def test_documents_written_before_camel_case_still_read() -> None:
    document = metadata_document()
    old_score = {"n": 12, "horizon": 1, "mae": 3.0, "rmse": 4.0, "rel_mae": 0.95, "rel_rmse": 0.9,
                 "dm_pvalue": 0.2, "directional": {"accuracy": 0.5, "hits": 6, "n": 12, "excluded": 0,
                 "wilson_low": 0.25, "wilson_high": 0.75}, "mae_by_step": [3.0]}  # fmt: skip
    rules = {"persistence": old_score, "always_up": old_score, "against_last_move": old_score, "ar": None}
    document["metrics"]["test"] = {"n": 12, "horizon": 1, "model": old_score, "rules": rules}
    parsed = parse_metadata(document)
    assert parsed.metrics.test.model.dm_pvalue == 0.2 and parsed.metrics.test.rules.always_up.rel_mae == 0.95
    assert parsed.metrics.test.model.directional is not None
    assert parsed.metrics.test.model.directional.wilson_high == 0.75


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"window": "wide"}, "window:"),
        ({"version": "latest"}, "version:"),
        ({"interval": "1M"}, "interval:"),
        ({"metrics": {"test": {}}}, "metrics.validation:"),
    ],
)
def test_a_malformed_document_is_refused_naming_the_field(change: dict[str, object], named: str) -> None:
    document = {**metadata_document(), **change}
    with pytest.raises(StoreError, match=rf"s3://b/v/metadata.json is malformed: {named}"):
        parse_metadata(document, "s3://b/v/metadata.json")
    with pytest.raises(StoreError, match="and \\d+ more"):
        parse_metadata({"pair": "btc-usdt"})
    assert isinstance(parse_metadata(metadata_document()), ModelMetadata)
