"""The CurrencyPair CustomResourceDefinition, generated from the pydantic models: defaults and bounds written once."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from makeusrich.pair.spec import GROUP, KIND, PLURAL, SHORT_NAMES, SINGULAR, VERSION, CurrencyPairSpec
from makeusrich.pair.status import CurrencyPairStatus

_DROPPED_KEYWORDS = {"title", "additionalProperties", "$defs", "examples"}


def _structural(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Turn pydantic's JSON schema into a Kubernetes structural schema: refs inlined, nullables marked,
    exclusive bounds in OpenAPI 3.0 form, free-form objects preserved."""
    if "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return _structural(merged, defs)
    variants = schema.get("anyOf")
    if variants is not None:
        non_null = [v for v in variants if v.get("type") != "null"]
        if len(non_null) == 1 and len(non_null) < len(variants):
            rest = {k: v for k, v in schema.items() if k != "anyOf"}
            return {**_structural({**non_null[0], **rest}, defs), "nullable": True}
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DROPPED_KEYWORDS:
            continue
        if key == "properties":
            out[key] = {name: _structural(sub, defs) for name, sub in value.items()}
        elif key == "items":
            out[key] = _structural(value, defs)
        elif key == "exclusiveMinimum":
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "exclusiveMaximum":
            out["maximum"], out["exclusiveMaximum"] = value, True
        elif key == "const":
            out["enum"] = [value]
        else:
            out[key] = value
    if out.get("type") == "object" and "properties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    if out.get("type") == "object" and "default" in out and not out["default"]:
        del out["default"]
    return out


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _structural(raw, raw.get("$defs", {}))


PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Pair", "type": "string", "jsonPath": ".status.symbol"},
    {"name": "Interval", "type": "string", "jsonPath": ".spec.interval"},
    {"name": "Schedule", "type": "string", "jsonPath": ".spec.schedule"},
    {"name": "Serving", "type": "string", "jsonPath": ".status.serving.version"},
    {
        "name": "Model",
        "type": "string",
        "jsonPath": ".status.model.kind",
        "description": "lstm, or baseline: persistence with volatility ranges, served until an LSTM passes the gates.",
    },
    {
        "name": "Skill",
        "type": "number",
        "jsonPath": ".status.model.skill",
        "description": "Test MAE relative to persistence: below 1 beats the naive forecast.",
    },
    {
        "name": "Live",
        "type": "number",
        "jsonPath": ".status.live.skill",
        "description": "MAE relative to persistence of the forecasts served over the last 30 days.",
    },
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def crd_manifest() -> dict[str, Any]:
    """The CustomResourceDefinition for CurrencyPair, generated from the pydantic models above."""
    spec = openapi_schema(CurrencyPairSpec)
    # Nested objects default to {} so the API server fills their own defaults (model.window and so on).
    for name in ("model", "promotion", "serving"):
        spec["properties"][name]["default"] = {}
    schema = {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": openapi_schema(CurrencyPairStatus),
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}", "labels": {"app.kubernetes.io/part-of": "makeusrich"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": SHORT_NAMES,
                "categories": ["makeusrich"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }
