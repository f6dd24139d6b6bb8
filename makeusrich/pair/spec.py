"""The CurrencyPair resource's spec (contract 1): one pydantic schema for files, the CRD, the operator and the UI.

Defaults and bounds live here, once; the CRD is generated from these models (makeusrich.pair.crd), so the API
server refuses what the operator would refuse.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from makeusrich.contract import DEFAULT_LEVELS, INTERVAL_MS, VERSION_PATTERN, Interval, level_problem, version_problem
from makeusrich.pair.cron import CRON_PATTERN, valid_cron

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
# The longest input window a pair may have: what bounds a model server's largest valid request.
MAX_WINDOW = 2000


class CamelModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are errors, not silently dropped."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class ModelSpec(CamelModel):
    """The LSTM and its training loop."""

    window: int = Field(120, ge=8, le=MAX_WINDOW, description="Candles in one input window.")
    horizon: int = Field(1, ge=1, le=48, description="Future candles forecast by one inference.")
    hidden_size: int = Field(64, ge=4, le=1024, description="LSTM hidden units per layer.")
    layers: int = Field(2, ge=1, le=4, description="Stacked LSTM layers.")
    dropout: float = Field(0.2, ge=0.0, le=0.9, description="Dropout between LSTM layers.")
    learning_rate: float = Field(0.001, gt=0.0, le=1.0, description="AdamW learning rate.")
    batch_size: int = Field(256, ge=1, le=8192, description="Windows per optimisation step.")
    max_epochs: int = Field(50, ge=1, le=1000, description="Upper bound on training epochs.")
    patience: int = Field(3, ge=1, le=100, description="Epochs without validation improvement before stopping.")
    seed: int = Field(42, ge=0, le=2**31 - 1, description="Seed for weights and batch order.")
    warm_start: bool = Field(
        True,
        description="Start a run from the served LSTM's weights (else the newest LSTM's) when its architecture "
        "matches and its weights were tuned only on hours before this run's calibration and test hours; false, "
        "or no such version, trains from the seed.",
    )
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


class PromotionSpec(CamelModel):
    max_relative_mae: float = Field(
        1.0,
        gt=0.0,
        le=10.0,
        alias="maxRelativeMAE",
        description="Promote only if test MAE / persistence MAE is at most this (test: the newest hours, which "
        "neither fit, early-stopped nor calibrated the model).",
    )
    coverage_tolerance: float = Field(
        0.03,
        ge=0.0,
        le=0.5,
        description="Promote only if the widest range's coverage on the test hours is this close to its nominal level.",
    )
    retrain_when_degraded: bool = Field(
        False,
        description="Start one training run when the live track record turns Degraded (the served version's "
        "evidence says it is worse than persistence or the baseline, or its ranges cover too little), in the "
        "cluster and in `makeusrich up` alike.",
    )


class ServingSpec(CamelModel):
    runtime: str = Field(
        "makeusrich-onnx",
        pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
        description="KServe ServingRuntime or ClusterServingRuntime name.",
    )
    min_replicas: int = Field(1, ge=0, le=100, description="Predictor replicas kept running.")
    pinned_version: str | None = Field(
        None, pattern=VERSION_PATTERN, description="Serve this model version instead of the promoted one (rollback)."
    )

    @field_validator("pinned_version")
    @classmethod
    def _a_time(cls, value: str | None) -> str | None:
        problem = None if value is None else version_problem(value)
        if problem:
            raise ValueError(f"{value} {problem}")
        return value


class DecisionSpec(CamelModel):
    """How forecasts become positions when the project answers "would following them have made money, after fees"
    (makeusrich.scoring.decision): spot only, no leverage, no shorting."""

    fee_bps: float = Field(
        10.0,
        ge=0.0,
        le=1000.0,
        description="Fee on each trade, in basis points of the amount traded (Binance spot: 10).",
    )
    threshold: float | None = Field(
        None,
        ge=0.0,
        le=0.5,
        description="Expected log return above which the signal rule holds the pair for the next candle; unset: "
        "the fee's round trip.",
    )
    cap: float = Field(1.0, gt=0.0, le=1.0, description="The largest fraction of the pair the risk-target rule holds.")


class CurrencyPairSpec(CamelModel):
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
    decision: DecisionSpec = Field(default_factory=DecisionSpec)
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
