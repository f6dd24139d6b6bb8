"""The CurrencyPair resource (contract 1): one pydantic schema for files, the CRD, the operator and the UI.

The CRD's openAPIV3Schema is generated from these models (`crd_manifest`), so defaults and bounds live in one
place and the API server refuses what the operator would refuse.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from croniter import CroniterBadCronError, CroniterBadDateError, croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from makeusrich.contract import DEFAULT_LEVELS, INTERVAL_MS, VERSION_PATTERN, Interval, level_problem
from makeusrich.errors import PairError, excerpt

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
    quantiles: list[float] = Field(
        list(DEFAULT_LEVELS),
        min_length=3,
        max_length=19,
        description="Quantile levels forecast beside the point: sorted, inside (0, 1), 0.5 and each mirror included.",
    )

    @field_validator("quantiles")
    @classmethod
    def _levels(cls, value: list[float]) -> list[float]:
        problem = level_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class PromotionSpec(_Spec):
    max_relative_mae: float = Field(
        1.0,
        gt=0.0,
        le=10.0,
        alias="maxRelativeMAE",
        description="Promote only if validation MAE / persistence MAE is at most this.",
    )
    coverage_tolerance: float = Field(
        0.03,
        ge=0.0,
        le=0.5,
        description="Promote only if the widest range's validation coverage is this close to its nominal level.",
    )
    retrain_when_degraded: bool = Field(
        False,
        description="Start a training Job at once when the live track record turns Degraded (worse than "
        "persistence over 30 days, or ranges that cover too little).",
    )


class ServingSpec(_Spec):
    runtime: str = Field(
        "makeusrich-onnx",
        pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
        description="KServe ServingRuntime or ClusterServingRuntime name.",
    )
    min_replicas: int = Field(1, ge=0, le=100, description="Predictor replicas kept running.")
    pinned_version: str | None = Field(
        None, pattern=VERSION_PATTERN, description="Serve this model version instead of the promoted one (rollback)."
    )


_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTHS = {name: i for i, name in enumerate(_MONTH_NAMES, start=1)}
_DAYS = {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
# Kubernetes parses a CronJob's schedule with robfig/cron's standard parser: these fields and bounds, names for
# months and days, and per field a list of `*`, `?`, N, N-M, each with an optional /step. Nothing else.
_CRON_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 6, _DAYS),
)
_CRON_GRAMMAR = "Kubernetes takes numbers, names (JAN, MON), *, ?, ranges a-b, steps /n and lists; not L, W or #"


def _cron_value(text: str, field: tuple[str, int, int, dict[str, int]]) -> int:
    name, low, high, names = field
    if text.lower() in names:
        return names[text.lower()]
    if not text.isdigit():
        raise ValueError(f"{name} {text!r} is not a number or a name ({_CRON_GRAMMAR})")
    if not low <= int(text) <= high:
        raise ValueError(f"{name} {int(text)} is outside {low}-{high}")
    return int(text)


def check_cron_field(part: str, field: tuple[str, int, int, dict[str, int]]) -> None:
    """One field of a schedule exactly as Kubernetes accepts it; ValueError says what is wrong."""
    for item in part.split(","):
        base, slash, step = item.partition("/")
        if slash and (not step.isdigit() or int(step) < 1):
            raise ValueError(f"{field[0]} step {step!r} is not a whole number of at least 1")
        if base in ("*", "?"):
            continue
        first, dash, last = base.partition("-")
        start = _cron_value(first, field)
        if dash and _cron_value(last, field) < start:
            raise ValueError(f"{field[0]} range {base!r} runs backwards")


def croniter_form(schedule: str) -> str:
    """A valid schedule as croniter reads it (`?` means `*` to Kubernetes): what computes the next run here."""
    return " ".join("*" if part == "?" else part for part in schedule.split(" "))


def next_run(schedule: str, after: datetime) -> datetime:
    """When a valid schedule fires next after `after`, in UTC as the CronJob controller counts by default."""
    found: datetime = croniter(croniter_form(schedule), after.astimezone(UTC)).get_next(datetime)
    return found


def valid_cron(expression: str) -> str:
    """A schedule exactly as Kubernetes CronJobs accept it (five fields, or a macro), that fires at least once
    in four years: a pair valid here is valid in the cluster and fires at the same times on one machine."""
    text = " ".join(expression.split())
    if text.startswith("@"):
        if text not in CRON_MACROS:
            raise ValueError(f"unknown cron macro {text!r}; use one of {', '.join(CRON_MACROS)}")
        return text
    parts = text.split(" ")
    if len(parts) != 5:
        raise ValueError(f"cron expression {text!r} must have 5 fields: minute hour day-of-month month day-of-week")
    for part, field in zip(parts, _CRON_FIELDS, strict=True):
        try:
            check_cron_field(part, field)
        except ValueError as exc:
            raise ValueError(f"cron expression {text!r} is not valid: {exc}") from None
    start = datetime(2025, 1, 1, tzinfo=UTC)
    try:
        schedule = croniter(croniter_form(text), start)
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
    interval: Interval = Field("1h", description="Binance kline interval.")
    schedule: str = Field(
        "0 0 * * *", description="Cron expression for retraining.", json_schema_extra={"pattern": CRON_PATTERN}
    )
    lookback_days: int = Field(1095, ge=1, le=3650, description="History used by one training run, in days.")
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
    uid: str | None = Field(None, max_length=128, description="Assigned by the API server.")


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
    models = (CurrencyPairSpec, ModelSpec, PromotionSpec, ServingSpec)
    return {name: info.alias or name for model in models for name, info in model.model_fields.items()}


def describe_errors(exc: ValidationError, source: str) -> str:
    """One line per bad field: where it is (spec.model.window), what was given and what is allowed."""
    lines = []
    wire = _wire_names()
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        given = error.get("input")
        shown = "" if isinstance(given, dict | list) or given is None else f" (got {excerpt(given)})"
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
        # strict: "365" is not a number of days, as the API server would not take it for an integer either
        return CurrencyPair.model_validate(document, strict=True, by_alias=True, by_name=False)
    except ValidationError as exc:
        raise PairError(describe_errors(exc, source)) from None
    except RecursionError:
        raise PairError(f"{source}: the resource nests too deeply to be a CurrencyPair") from None


def pair_from_resource(body: Mapping[str, Any]) -> CurrencyPair:
    """A CurrencyPair as the API server returns it, validated like a file: its spec, name, namespace and uid
    (status, managed fields and the rest of the metadata are the API server's business)."""
    meta = body.get("metadata") or {}
    name, namespace = meta.get("name"), meta.get("namespace") or "default"
    identity = {key: meta[key] for key in ("name", "namespace", "uid") if key in meta}
    document = {
        "apiVersion": body.get("apiVersion") or API_VERSION,
        "kind": body.get("kind") or KIND,
        "metadata": identity,
        "spec": body.get("spec"),
    }
    return parse_pair(document, f"CurrencyPair {namespace}/{name}")


# A pair file is a few hundred bytes; anything near this is a mistake (or /dev/zero) and is not read further.
MAX_PAIR_BYTES = 1024 * 1024


def load_pair(path: str | Path) -> CurrencyPair:
    """Read a pair file (YAML or JSON). The first CurrencyPair document is used."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_PAIR_BYTES + 1)
    except OSError as exc:
        raise PairError(f"cannot read pair file {path}: {exc.strerror or exc}") from None
    return _parse_file(raw, str(path)).model_copy(deep=True)


@functools.lru_cache(maxsize=4096)
def _parse_file(raw: bytes, source: str) -> CurrencyPair:
    """A file's pair, parsed once per content: the tracker and the dashboard read every pair file every round,
    and YAML plus validation cost forty times the copy `load_pair` hands out."""
    return parse_pair_text(raw, source)


def parse_pair_text(text: str | bytes, source: str) -> CurrencyPair:
    """A pair from YAML or JSON (a file's content, or $MAKEUSRICH_PAIR in a trainer Job): at most 1 MiB of UTF-8."""
    if len(text) > MAX_PAIR_BYTES:
        raise PairError(f"{source} is larger than 1 MiB; a CurrencyPair file is a few hundred bytes")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PairError(f"{source} is not UTF-8 text (byte {exc.start} is {text[exc.start]:#04x})") from None
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        raise PairError(f"{source} is not valid YAML: {' '.join(str(exc).split())[:300]}") from None
    except RecursionError:
        raise PairError(f"{source} nests YAML too deeply to be a CurrencyPair") from None
    if not documents:
        raise PairError(f"{source} is empty; it should hold a CurrencyPair (see manifests/examples/btc-usdt.yaml)")
    pairs = [doc for doc in documents if isinstance(doc, dict) and doc.get("kind") == KIND]
    return parse_pair(pairs[0] if pairs else documents[0], source)


PAIR_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class PairFile:
    """One pair file as read: its pair, or why it has none."""

    path: Path
    pair: CurrencyPair | None
    problem: str | None = None


def read_pair_files(folder: Path | None, files: Sequence[Path] = ()) -> list[PairFile]:
    """The pairs of `files`, then of the folder's pair files (hidden ones skipped), each validated; a file that
    declares a pair another file declared first has that as its problem (the dashboard and `up` read alike)."""
    listed = list(files)
    if folder is not None and folder.is_dir():
        listed += sorted(p for p in folder.iterdir() if p.suffix in PAIR_SUFFIXES and not p.name.startswith("."))
    read: list[PairFile] = []
    first: dict[str, Path] = {}
    for path in listed:
        try:
            pair = load_pair(path)
        except PairError as exc:
            read.append(PairFile(path, None, str(exc)))
            continue
        key = f"{pair.namespace}/{pair.name}"
        if first.setdefault(key, path) != path:
            read.append(
                PairFile(path, None, f"{path} declares {key} again (first in {first[key]}); rename or remove one")
            )
        else:
            read.append(PairFile(path, pair))
    return read


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
    type: Literal["Valid", "Trained", "Serving", "Ready", "Degraded"]
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


class LiveWindowStatus(_Spec):
    window: str = Field(description="24h, 7d, 30d, or version (since the served version went live)")
    made: int = Field(0, description="Origins with a live forecast.")
    missed: int = Field(0, description="Origins recorded as gaps.")
    scored: int = Field(0, description="Forecasts whose candles have closed.")
    mae_ratio: float | None = Field(None, description="Live MAE relative to persistence on the same hours.")
    dm_pvalue: float | None = None
    direction: float | None = Field(None, description="Share of moves whose direction the forecast called right.")
    coverage: float | None = Field(None, description="Share of closes inside the widest range.")
    coverage_nominal: float | None = Field(None, description="The widest range's nominal coverage (0.9).")


class LiveStatus(_Spec):
    """The live track record (track.json, written by `makeusrich track`), as the operator last read it."""

    version: str | None = None
    live_since: str | None = None
    updated_at: str | None = None
    last_forecast_at: str | None = None
    skill: float | None = Field(None, description="Live MAE relative to persistence over the last 30 days.")
    windows: list[LiveWindowStatus] = Field(default_factory=list)


class CurrencyPairStatus(_Spec):
    observed_generation: int | None = None
    symbol: str | None = None
    conditions: list[Condition] = Field(default_factory=list)
    model: ModelStatus | None = None
    serving: ServingStatus | None = None
    last_training: TrainingStatus | None = None
    live: LiveStatus | None = None


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
