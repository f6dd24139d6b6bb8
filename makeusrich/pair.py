"""The CurrencyPair resource (contract 1): one pydantic schema for files, the CRD, the operator and the UI.

The CRD's openAPIV3Schema is generated from these models (`crd_manifest`), so defaults and bounds live in one
place and the API server refuses what the operator would refuse.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from croniter import CroniterBadCronError, CroniterBadDateError, croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from makeusrich.errors import PairError
from makeusrich.market.intervals import INTERVAL_MS

GROUP = "makeusrich.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "CurrencyPair"
PLURAL = "currencypairs"
SINGULAR = "currencypair"
SHORT_NAMES = ["cp"]

# CronJob names are limited to 52 characters and "-trainer" is appended; KServe wants a DNS-1035 label.
NAME_PATTERN = r"^[a-z]([-a-z0-9]{0,42}[a-z0-9])?$"
ASSET_PATTERN = r"^[a-z0-9]{2,20}$"
MODEL_VERSION_PATTERN = r"^\d{8}T\d{6}Z$"
CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
# A loose shape check for the API server; the exact check (valid ranges, fires at all) is `valid_cron`.
CRON_PATTERN = r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|(\S+\s+){4}\S+)$"


class _Spec(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are errors, not silently dropped."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class ModelSpec(_Spec):
    """The LSTM and its training loop."""

    window: int = Field(120, ge=8, le=2000, description="Candles in one input window.")
    horizon: int = Field(1, ge=1, le=48, description="Future candles forecast by one inference.")
    hidden_size: int = Field(64, ge=4, le=1024, description="LSTM hidden units per layer.")
    layers: int = Field(2, ge=1, le=4, description="Stacked LSTM layers.")
    dropout: float = Field(0.2, ge=0.0, le=0.9, description="Dropout between LSTM layers.")
    learning_rate: float = Field(0.001, gt=0.0, le=1.0, description="AdamW learning rate.")
    batch_size: int = Field(256, ge=1, le=8192, description="Windows per optimisation step.")
    max_epochs: int = Field(50, ge=1, le=1000, description="Upper bound on training epochs.")
    patience: int = Field(3, ge=1, le=100, description="Epochs without validation improvement before stopping.")
    seed: int = Field(42, ge=0, le=2**31 - 1, description="Seed for weights and batch order.")


class PromotionSpec(_Spec):
    max_relative_mae: float = Field(
        1.0,
        gt=0.0,
        le=10.0,
        alias="maxRelativeMAE",
        description="Promote only if validation MAE / persistence MAE is at most this.",
    )


class ServingSpec(_Spec):
    runtime: str = Field(
        "makeusrich-onnx",
        pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
        description="KServe ServingRuntime or ClusterServingRuntime name.",
    )
    min_replicas: int = Field(1, ge=0, le=100, description="Predictor replicas kept running.")
    pinned_version: str | None = Field(
        None,
        pattern=MODEL_VERSION_PATTERN,
        description="Serve this model version instead of the promoted one (rollback).",
    )


def valid_cron(expression: str) -> str:
    """A 5-field cron expression or macro, as Kubernetes CronJobs accept, that fires at least once a year."""
    text = " ".join(expression.split())
    if text.startswith("@"):
        if text not in CRON_MACROS:
            raise ValueError(f"unknown cron macro {text!r}; use one of {', '.join(CRON_MACROS)}")
        return text
    if len(text.split(" ")) != 5:
        raise ValueError(f"cron expression {text!r} must have 5 fields: minute hour day-of-month month day-of-week")
    start = datetime(2025, 1, 1, tzinfo=UTC)
    try:
        schedule = croniter(text, start)
    except (CroniterBadCronError, ValueError, KeyError) as exc:
        raise ValueError(f"cron expression {text!r} is not valid: {exc}") from None
    try:
        nxt = schedule.get_next(datetime)
    except CroniterBadDateError:
        raise ValueError(f"cron expression {text!r} never fires (no such date)") from None
    if (nxt - start).days > 366 * 4:
        raise ValueError(f"cron expression {text!r} fires less than once in four years")
    return text


class CurrencyPairSpec(_Spec):
    currency: str = Field(pattern=ASSET_PATTERN, description="Base asset as Binance spells it, lower case (btc).")
    compare: str = Field(pattern=ASSET_PATTERN, description="Quote asset, lower case (usdt).")
    interval: Literal["1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w"] = Field(
        "1h", description="Binance kline interval."
    )
    schedule: str = Field(
        "0 0 * * *",
        description="Cron expression for retraining.",
        json_schema_extra={"pattern": CRON_PATTERN},
    )
    lookback_days: int = Field(365, ge=1, le=3650, description="History used by one training run, in days.")
    model: ModelSpec = Field(default_factory=ModelSpec)
    promotion: PromotionSpec = Field(default_factory=PromotionSpec)
    serving: ServingSpec = Field(default_factory=ServingSpec)
    suspend: bool = Field(False, description="Stop scheduled training; the served model stays.")
    train_on_create: bool = Field(True, description="Start a first training Job as soon as the pair is created.")

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        return valid_cron(value)

    @property
    def symbol(self) -> str:
        """The Binance symbol, such as BTCUSDT."""
        return f"{self.currency}{self.compare}".upper()

    def lookback_candles(self) -> int:
        return self.lookback_days * 86_400_000 // INTERVAL_MS[self.interval]


class Metadata(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(pattern=NAME_PATTERN)
    namespace: str = Field("default", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class CurrencyPair(BaseModel):
    """A whole resource as written in a pair file or read from the API server."""

    model_config = ConfigDict(extra="ignore")

    api_version: Literal["makeusrich.io/v1alpha1"] = Field("makeusrich.io/v1alpha1", alias="apiVersion")
    kind: Literal["CurrencyPair"] = "CurrencyPair"
    metadata: Metadata
    spec: CurrencyPairSpec

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace


def _wire_names() -> dict[str, str]:
    """Python field name -> the camelCase name files and the CRD use, for every field of the spec."""
    names: dict[str, str] = {}
    for model in (CurrencyPairSpec, ModelSpec, PromotionSpec, ServingSpec):
        for name, info in model.model_fields.items():
            names[name] = info.alias or name
    return names


def describe_errors(exc: ValidationError, source: str) -> str:
    """One line per bad field: where it is (spec.model.window), what was given and what is allowed."""
    lines = []
    wire = _wire_names()
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        given = error.get("input")
        shown = "" if isinstance(given, dict | list) or given is None else f" (got {given!r})"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            field = str(error["loc"][-1]) if error["loc"] else ""
            camel = wire.get(field)
            message = (
                f"unknown field; write {camel} (pair files use the CRD's camelCase names)"
                if camel and camel != field
                else "unknown field"
            )
        lines.append(f"{where}: {message}{shown}")
    return f"{source}: invalid CurrencyPair: " + "; ".join(lines)


def parse_pair(document: Any, source: str = "pair") -> CurrencyPair:
    """Validate a decoded resource by its camelCase names only, exactly as the API server reads it (Python's
    snake_case names are for code); PairError names each bad field."""
    if not isinstance(document, dict):
        raise PairError(f"{source}: expected a CurrencyPair mapping with apiVersion, kind, metadata and spec")
    try:
        return CurrencyPair.model_validate(document, by_alias=True, by_name=False)
    except ValidationError as exc:
        raise PairError(describe_errors(exc, source)) from None


def load_pair(path: str | Path) -> CurrencyPair:
    """Read a pair file (YAML or JSON). The first CurrencyPair document is used."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise PairError(f"cannot read pair file {path}: {exc.strerror or exc}") from None
    return parse_pair_text(text, str(path))


def parse_pair_text(text: str, source: str) -> CurrencyPair:
    """A pair from YAML or JSON text (a file's content, or $MAKEUSRICH_PAIR in a trainer Job)."""
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        raise PairError(f"{source} is not valid YAML: {exc}") from None
    if not documents:
        raise PairError(f"{source} is empty; it should hold a CurrencyPair (see manifests/examples/btc-usdt.yaml)")
    pairs = [doc for doc in documents if isinstance(doc, dict) and doc.get("kind") == KIND]
    return parse_pair(pairs[0] if pairs else documents[0], source)


PAIR_ENV = "MAKEUSRICH_PAIR"


def load_pair_arg(path: str | None) -> CurrencyPair:
    """The pair for a command: the file given with -f, else the resource in $MAKEUSRICH_PAIR (set by the
    operator on trainer Jobs, so a Job needs no volume and no API access)."""
    if path:
        return load_pair(path)
    text = os.environ.get(PAIR_ENV)
    if not text:
        raise PairError(f"no pair given: pass -f pair.yaml or set {PAIR_ENV} to the CurrencyPair resource")
    return parse_pair_text(text, f"${PAIR_ENV}")


def pair_document(pair: CurrencyPair) -> dict[str, Any]:
    """The resource as it would be written to a file or the API server (camelCase, defaults filled)."""
    return pair.model_dump(by_alias=True, mode="json", exclude_none=True)


# --- status (written by the operator) ----------------------------------------------------------------


class Condition(_Spec):
    type: Literal["Valid", "Trained", "Serving", "Ready"]
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", max_length=1024)
    message: str = Field("", max_length=32768)
    last_transition_time: str = Field(description="RFC 3339 time of the last status change.")


class ModelStatus(_Spec):
    version: str | None = None
    trained_at: str | None = None
    storage_uri: str | None = None
    skill: float | None = Field(None, description="Test MAE relative to persistence (below 1 beats it).")
    metrics: dict[str, Any] | None = None


class ServingStatus(_Spec):
    version: str | None = None
    url: str | None = None
    ready: bool | None = None


class TrainingStatus(_Spec):
    job: str | None = None
    phase: Literal["Pending", "Running", "Succeeded", "Failed"] | None = None
    started_at: str | None = None
    finished_at: str | None = None
    message: str | None = None


class CurrencyPairStatus(_Spec):
    observed_generation: int | None = None
    symbol: str | None = None
    conditions: list[Condition] = Field(default_factory=list)
    model: ModelStatus | None = None
    serving: ServingStatus | None = None
    last_training: TrainingStatus | None = None


# --- the CustomResourceDefinition --------------------------------------------------------------------

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
            nullable = _structural({**non_null[0], **rest}, defs)
            nullable["nullable"] = True
            return nullable
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


def _spec_schema() -> dict[str, Any]:
    schema = openapi_schema(CurrencyPairSpec)
    # Nested objects default to {} so the API server fills their own defaults (model.window and so on).
    for name in ("model", "promotion", "serving"):
        schema["properties"][name]["default"] = {}
    return schema


PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Pair", "type": "string", "jsonPath": ".status.symbol"},
    {"name": "Interval", "type": "string", "jsonPath": ".spec.interval"},
    {"name": "Schedule", "type": "string", "jsonPath": ".spec.schedule"},
    {"name": "Serving", "type": "string", "jsonPath": ".status.serving.version"},
    {
        "name": "Skill",
        "type": "number",
        "jsonPath": ".status.model.skill",
        "description": "Test MAE relative to persistence: below 1 beats the naive forecast.",
    },
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def crd_manifest() -> dict[str, Any]:
    """The CustomResourceDefinition for CurrencyPair, generated from the pydantic models above."""
    schema = {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": _spec_schema(),
            "status": openapi_schema(CurrencyPairStatus),
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "makeusrich"},
        },
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


def example_pair(name: str = "btc-usdt", currency: str = "btc", compare: str = "usdt") -> dict[str, Any]:
    """The bundled example resource with every field spelled out, so users see what they can set."""
    pair = CurrencyPair(
        metadata=Metadata(name=name, namespace="default"),
        spec=CurrencyPairSpec(currency=currency, compare=compare),
    )
    return pair_document(pair)
