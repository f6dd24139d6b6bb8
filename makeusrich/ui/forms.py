"""The pair form's fields and their validation by the CurrencyPair pydantic model itself: pure, no NiceGUI.

The form holds one value per field, keyed by the field's camelCase path in the resource ("spec.model.window").
`validate_form` builds the resource from those values and validates it with the same model the CRD, the
operator and the pair files use, then hands each error back to the field it belongs to, in words a user reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import ValidationError

from makeusrich.pair import (
    API_VERSION,
    KIND,
    CurrencyPair,
    CurrencyPairSpec,
    pair_document,
)

Kind = Literal["text", "int", "float", "floats", "select", "bool"]
INTERVALS: tuple[str, ...] = get_args(CurrencyPairSpec.model_fields["interval"].annotation)


@dataclass(frozen=True)
class Field:
    path: str
    label: str
    kind: Kind
    hint: str = ""
    options: tuple[str, ...] = ()
    group: str = "Pair"
    optional: bool = False


FIELDS: tuple[Field, ...] = (
    Field("metadata.name", "Name", "text", "lower case, digits and '-', such as btc-usdt"),
    Field("metadata.namespace", "Namespace", "text", "Kubernetes namespace (and the store's folder)"),
    Field("spec.currency", "Base asset", "text", "as Binance spells it: btc"),
    Field("spec.compare", "Quote asset", "text", "usdt"),
    Field("spec.interval", "Candle interval", "select", options=INTERVALS),
    Field("spec.schedule", "Retraining schedule", "text", "cron: minute hour day month weekday"),
    Field("spec.lookbackDays", "Lookback (days)", "int", "history used by one training run"),
    Field("spec.suspend", "Suspend scheduled training", "bool"),
    Field("spec.trainOnCreate", "Train right after creation", "bool"),
    Field("spec.model.window", "Window (candles)", "int", group="Model"),
    Field("spec.model.horizon", "Horizon (candles)", "int", group="Model"),
    Field("spec.model.hiddenSize", "Hidden size", "int", group="Model"),
    Field("spec.model.layers", "Layers", "int", group="Model"),
    Field("spec.model.dropout", "Dropout", "float", group="Model"),
    Field("spec.model.learningRate", "Learning rate", "float", group="Model"),
    Field("spec.model.batchSize", "Batch size", "int", group="Model"),
    Field("spec.model.maxEpochs", "Max epochs", "int", group="Model"),
    Field("spec.model.patience", "Patience (epochs)", "int", group="Model"),
    Field("spec.model.seed", "Seed", "int", group="Model"),
    Field(
        "spec.model.quantiles",
        "Quantile levels",
        "floats",
        "comma-separated, with 0.5 and each level's mirror: 0.05, 0.25, 0.5, 0.75, 0.95",
        group="Model",
    ),
    Field(
        "spec.promotion.maxRelativeMAE",
        "Promotion bar (max test MAE / persistence MAE)",
        "float",
        "1.0: promote only models at least as good as persistence on the hours that judge them",
        group="Promotion and serving",
    ),
    Field(
        "spec.promotion.coverageTolerance",
        "Range coverage tolerance",
        "float",
        "0.03: the widest range must cover the test closes within 3 points of its level",
        group="Promotion and serving",
    ),
    Field(
        "spec.promotion.retrainWhenDegraded",
        "Retrain when the live record degrades",
        "bool",
        group="Promotion and serving",
    ),
    Field("spec.serving.runtime", "Serving runtime", "text", group="Promotion and serving"),
    Field("spec.serving.minReplicas", "Min replicas", "int", group="Promotion and serving"),
    Field(
        "spec.serving.pinnedVersion",
        "Pinned version",
        "text",
        "empty: serve the promoted version; or a version such as 20261126T150000Z",
        group="Promotion and serving",
        optional=True,
    ),
)
BY_PATH = {f.path: f for f in FIELDS}

FRIENDLY_PATTERNS = {
    "metadata.name": "use lower-case letters, digits and '-', start with a letter, at most 44 characters",
    "metadata.namespace": "use lower-case letters, digits and '-' (a Kubernetes namespace)",
    "spec.currency": "use 2 to 20 lower-case letters or digits, as Binance spells the asset",
    "spec.compare": "use 2 to 20 lower-case letters or digits, as Binance spells the asset",
    "spec.serving.runtime": "use lower-case letters, digits and '-' (a ServingRuntime name)",
    "spec.serving.pinnedVersion": "a version looks like 20261126T150000Z",
}


def initial_values(pair: CurrencyPair | None, namespace: str = "default") -> dict[str, Any]:
    """The form's values for an existing pair, or the defaults for a new one."""
    if pair is None:
        spec = CurrencyPairSpec(currency="btc", compare="usdt")
        blank = {**spec.model_dump(by_alias=True), "currency": "", "compare": ""}
        document = {"metadata": {"name": "", "namespace": namespace}, "spec": blank}
    else:
        document = pair_document(pair)
    values: dict[str, Any] = {}
    for field in FIELDS:
        node: Any = document
        for part in field.path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        values[field.path] = ", ".join(f"{v:g}" for v in node) if field.kind == "floats" and node else node
    return values


def _clean(field: Field, value: Any) -> Any:
    if field.kind == "floats" and isinstance(value, str):
        parts = [part.strip() for part in value.split(",") if part.strip()]
        try:
            return [float(part) for part in parts] or None
        except ValueError:
            return value  # the model says what is wrong with it
    if isinstance(value, str):
        value = value.strip()
        if field.kind == "text" and field.path in ("spec.currency", "spec.compare"):
            value = value.lower()
        if value == "" and (field.optional or field.kind != "text"):
            return None
    if field.kind == "int" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def build_document(values: dict[str, Any]) -> dict[str, Any]:
    """The CurrencyPair resource from form values (missing optional values left out, so defaults apply)."""
    document: dict[str, Any] = {"apiVersion": API_VERSION, "kind": KIND}
    for field in FIELDS:
        value = _clean(field, values.get(field.path))
        if value is None and field.optional:
            continue
        node = document
        *parents, leaf = field.path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return document


def _message(path: str, error: Any) -> str:
    kind = str(error.get("type", ""))
    if kind == "string_pattern_mismatch" and path in FRIENDLY_PATTERNS:
        return FRIENDLY_PATTERNS[path]
    number = kind in ("int_type", "int_parsing", "float_type", "float_parsing")
    if kind == "missing" or (number and error.get("input") is None):
        return "required"
    return str(error["msg"]).removeprefix("Value error, ")


def validate_form(values: dict[str, Any]) -> tuple[CurrencyPair | None, dict[str, str]]:
    """The validated pair, or None and one message per field path (an unplaced error under '')."""
    try:
        return CurrencyPair.model_validate(build_document(values), by_alias=True, by_name=False), {}
    except ValidationError as exc:
        errors: dict[str, str] = {}
        for error in exc.errors():
            path = ".".join(str(part) for part in error["loc"])
            target = path if path in BY_PATH else ""
            message = _message(path, error)
            if target == "":
                message = f"{path}: {message}" if path else message
            errors.setdefault(target, message)
        return None, errors
