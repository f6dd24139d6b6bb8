"""metadata.json (contract 3): what a training run measured and published, as one typed document.

The trainer writes it, the store adds `files` and `storageUri`, and the model server, the operator and the
dashboard read it. Keys are camelCase on disk like every other document of the project; documents written
before that (snake_case metric keys such as `rel_mae`) still read, because fields also accept their Python
names. A reader refuses a malformed document with the field that is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from makeusrich.contract import VERSION_PATTERN, Interval, TensorSpec
from makeusrich.errors import StoreError


class _Document(BaseModel):
    """camelCase on disk, snake_case in Python; unknown keys are kept out of the way (a newer trainer may add
    some) rather than refused."""

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, serialize_by_alias=True, frozen=True
    )

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class Directional(_Document):
    """Share of forecasts that called the direction of the move right, with its 95% Wilson interval."""

    accuracy: float
    hits: int
    n: int
    excluded: int
    wilson_low: float
    wilson_high: float
    pt_pvalue: float | None = Field(None, description="Pesaran-Timmermann: do the predicted signs carry information?")


class Score(_Document):
    """Every metric of one forecast on one split; None where undefined (prices that never moved)."""

    n: int
    horizon: int
    # None where undefined; an absent key reads as None too (a Kubernetes status drops null fields)
    mae: float | None = None
    rmse: float | None = None
    rel_mae: float | None = Field(None, description="MAE divided by persistence's on the same points")
    rel_rmse: float | None = None
    dm_pvalue: float | None = Field(None, description="Diebold-Mariano against persistence, absolute loss")
    directional: Directional | None = None
    mae_by_step: list[float | None] = Field(default_factory=list)


class Rules(_Document):
    """The naive baselines, scored on the same points as the model."""

    persistence: Score
    always_up: Score
    against_last_move: Score
    ar: Score | None = None


class RangeCoverage(_Document):
    """One central range (the 90% one lies between the 0.05 and 0.95 quantiles) on one split; widths and
    scores are in log returns of the close, so 0.01 is about 1% of the price."""

    nominal: float
    rate: float
    hits: int
    n: int
    wilson_low: float
    wilson_high: float
    mean_width: float
    interval_score: float = Field(description="Winkler score: width plus 2/alpha times the miss; lower is better")


class RangeScore(_Document):
    pinball: float = Field(description="pinball loss averaged over levels and points, in log returns")
    ranges: list[RangeCoverage] = Field(description="each central range, widest first")


class RangeMetrics(_Document):
    """The model's quantiles and the two naive ranges, scored on the same points."""

    levels: list[float]
    model: RangeScore
    climatology: RangeScore
    ewma: RangeScore


class SplitMetrics(_Document):
    n: int
    horizon: int
    model: Score
    rules: Rules
    ranges: RangeMetrics | None = None  # None for models from before forecast ranges


class Metrics(_Document):
    validation: SplitMetrics
    test: SplitMetrics


class DataSpan(_Document):
    """The candles a run used, named by the convention of the project: a span runs from the first candle's
    open to the last one's close, and `testFrom` is the close of the first test origin."""

    from_: str = Field(alias="from")
    to: str
    rows: int
    gaps: int
    missing_candles: int
    broken_dropped: int
    windows: dict[str, int]
    test_from: str
    validation_from: str | None = None  # the close of the first validation origin; None before ranges


class Promotion(_Document):
    """What the run decided; only latest.json says whether the promotion happened (a run can die between)."""

    promoted: bool
    reason: str
    max_relative_mae: float = Field(alias="maxRelativeMAE")
    validation_relative_mae: float | None = Field(alias="validationRelativeMAE")
    coverage_tolerance: float | None = None
    validation_coverage: float | None = Field(None, description="the widest range's coverage on validation")
    champion: ChampionCheck | None = None


class ChampionCheck(_Document):
    """The served version (champion) and this run (challenger) on the newest validation hours that neither
    trained on: the champion's own ONNX file run on them, not its old numbers."""

    version: str
    n: int
    compared: bool = Field(description="False when too few such hours exist, or the two forecast different things")
    worse: bool = Field(False, description="significantly worse on the point or the range forecast: not promoted")
    note: str
    mae: float | None = None
    champion_mae: float | None = None
    mae_dm_pvalue: float | None = None
    pinball: float | None = None
    champion_pinball: float | None = None
    pinball_dm_pvalue: float | None = None


class Calibration(_Document):
    """Conformalized quantile regression: how far each range's ends were moved outward (negative: inward) so
    that the validation points are covered as the levels say; one margin per step and level, in log returns."""

    levels: list[float]
    margins: list[list[float]]
    points: int


class Epoch(_Document):
    epoch: int
    train_loss: float
    validation_loss: float


class Training(_Document):
    seconds: float
    epochs: int
    best_epoch: int
    stopped_early: bool
    device: str
    threads: int
    history: list[Epoch]
    onnx_parity_max_relative: float
    total_seconds: float | None = None


class SmokeTest(_Document):
    """A real window and the exported model's forecast for it: the server checks both before serving."""

    candles: list[list[float]]
    forecast: list[float]
    quantiles: list[list[float]] | None = None  # [horizon][levels]; None before ranges


class StoredFile(_Document):
    sha256: str
    bytes: int


class ModelMetadata(_Document):
    """One version's metadata.json."""

    pair: str
    namespace: str
    symbol: str
    interval: Interval
    version: str = Field(pattern=VERSION_PATTERN)
    created_at: str
    source: str
    data: DataSpan
    window: int = Field(gt=0)
    horizon: int = Field(gt=0)
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    quantiles: list[float] | None = Field(None, description="levels of the quantiles output; None before ranges")
    calibration: Calibration | None = None
    spec: dict[str, Any]
    metrics: Metrics
    promotion: Promotion
    training: Training
    software: dict[str, str]
    smoke_test: SmokeTest | None = None
    files: dict[str, StoredFile] = Field(default_factory=dict)  # written by the store
    storage_uri: str | None = None  # written by the store


def parse_metadata(raw: Mapping[str, Any], where: str = "metadata.json") -> ModelMetadata:
    """A document as read from the store, checked; a malformed one is refused naming the field."""
    try:
        return ModelMetadata.model_validate(raw)
    except ValidationError as exc:
        raise StoreError(
            f"{where} is malformed: {_first_problem(exc)}; the version is unusable: train a new one, or pin "
            "another with spec.serving.pinnedVersion"
        ) from None


def _first_problem(exc: ValidationError) -> str:
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "the document"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{field}: {first['msg']}{more}"


class FoldResult(_Document):
    """One fold of `makeusrich backtest`: when it was cut, what it trained on, and how its frozen model did on
    the next `step`."""

    fold: int
    cutoff: str
    trained_from: str
    forecast_to: str
    epochs: int
    train_seconds: float
    point: Score
    ranges: RangeMetrics


class BacktestResult(_Document):
    """A walk-forward backtest: every fold, and all their out-of-sample points pooled."""

    pair: str
    model: dict[str, Any] = Field(default_factory=dict, description="the spec.model every fold trained with")
    source: str = ""
    symbol: str
    interval: str
    lookback_days: int
    step_days: float
    folds: list[FoldResult]
    pooled_point: Score
    pooled_ranges: RangeMetrics
    seconds: float


def parse_backtest(raw: bytes, where: str) -> BacktestResult:
    try:
        return BacktestResult.model_validate_json(raw)
    except ValidationError as exc:
        raise StoreError(f"{where} is malformed: {_first_problem(exc)}; run the backtest again") from None


class RunState(_Document):
    """`<ns>/<pair>/runs/state.json`: the newest training run `makeusrich up` started for a pair, kept up to
    date while it runs (the dashboard's card and a restart read it)."""

    state: Literal["training", "succeeded", "failed", "interrupted"]
    started_at: str
    finished_at: str | None = None
    spec_sha256: str = Field(description="the pair's spec the run trained on: a changed spec trains again")
    source: str | None = Field(None, description="where its candles came from: binance or sample")
    epoch: int | None = None
    max_epochs: int | None = None
    validation_loss: float | None = None
    version: str | None = None
    promoted: bool | None = None
    message: str | None = Field(None, description="the run's outcome in one sentence")
    last_lines: list[str] = Field(default_factory=list, description="the newest lines of its log")
    log: str | None = Field(None, description="its whole log, below the pair's runs/ folder")


def parse_run_state(raw: bytes, where: str) -> RunState:
    try:
        return RunState.model_validate_json(raw)
    except ValidationError as exc:
        raise StoreError(f"{where} is malformed: {_first_problem(exc)}") from None


class LiveWindow(_Document):
    """The served forecasts of one window of the track record, scored once their candles closed: next to
    persistence on the same points, like the test split, but on hours that did not exist at training time."""

    window: str = Field(description="24h, 7d, 30d, or version: since the served version went live")
    start: str | None = Field(None, description="the first origin the window counts")
    made: int = Field(description="origins with a recorded forecast")
    missed: int = Field(description="origins recorded as gaps: no candle, no tracker or no model then")
    scored: int = Field(description="forecasts whose every target candle has closed")
    point: Score | None = None
    ranges: RangeScore | None = None


class TrackSummary(_Document):
    """`<ns>/<pair>/track.json`: the live track record in numbers; the operator copies it into status.live."""

    pair: str
    namespace: str
    interval: str
    updated_at: str
    version: str | None = Field(None, description="the version that made the newest live forecast")
    live_since: str | None = Field(None, description="when that version's first live forecast was recorded")
    last_origin: str | None = Field(None, description="the newest origin recorded (forecast or gap)")
    last_forecast_at: str | None = Field(None, description="when the newest live forecast was recorded")
    windows: list[LiveWindow] = Field(default_factory=list)

    def window(self, name: str) -> LiveWindow | None:
        return next((w for w in self.windows if w.window == name), None)


def parse_track_summary(raw: bytes, where: str) -> TrackSummary:
    try:
        return TrackSummary.model_validate_json(raw)
    except ValidationError as exc:
        raise StoreError(f"{where} is malformed: {_first_problem(exc)}; the tracker rewrites it next round") from None
