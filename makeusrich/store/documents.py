"""metadata.json (contract 3): what a training run measured and published, as one typed document.

The trainer writes it, the store adds `files` and `storageUri`, and the model server, the operator and the
dashboard read it. Keys are camelCase on disk like every other document of the project; documents written
before that (snake_case metric keys such as `rel_mae`) still read, because fields also accept their Python
names. A reader refuses a malformed document with the field that is wrong.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from makeusrich.contract import VERSION_PATTERN, Interval, TensorSpec, version_problem
from makeusrich.errors import StoreError
from makeusrich.pair import DecisionName, LiveDecision, LiveShadow, ShadowRole


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


class RatioInterval(_Document):
    """A score over a rival's on the same points, with the 95% interval a stationary block bootstrap gives it: a
    high end below 1 is better beyond luck, an interval holding 1 could be luck."""

    ratio: float
    low: float
    high: float


class RangeMetrics(_Document):
    """The model's quantiles and the naive ranges, scored on the same points (makeusrich.scoring.ranges)."""

    levels: list[float]
    model: RangeScore
    climatology: RangeScore
    ewma: RangeScore
    ewma_range: RangeScore | None = Field(
        None, description="EWMA of candle ranges (Garman-Klass); absent in versions measured before it"
    )
    har: RangeScore | None = Field(None, description="HAR of candle ranges; absent in versions measured before it")
    interval_ratios: dict[str, RatioInterval] | None = Field(
        None,
        description="the widest range's interval score over each naive range's (named as above), with its 95% "
        "bootstrap interval (origins resampled in blocks of a day on average); walk-forward results since issue 31",
    )


class RuleScore(_Document):
    """One decision rule's returns after fees in the numbers a trader reads (makeusrich.scoring.decision). Annual
    figures assume the candles run all year."""

    total_log_return: float
    annual_return: float = Field(description="exp(mean log return a candle * candles a year) - 1")
    annual_volatility: float
    sharpe: float = Field(description="annualised, against cash; 0 where the returns do not vary")
    max_drawdown: float = Field(description="the largest fall of the holding's value from a peak, as a share of it")
    turnover: float = Field(description="the fractions of the holding traded, summed")
    fees: float = Field(description="the fees paid, summed as shares of the holding")
    invested: float = Field(description="the share of candles with a position in the pair")
    candles: int


class Difference(_Document):
    """A rule against another on the same candles: the difference in annualised mean log return and in Sharpe
    ratio, each with a 95% stationary-bootstrap interval and a two-sided p-value; and the difference in total log
    return over the candles (the mean's, scaled), which says by how much one holding ends above the other."""

    total: float
    total_low: float
    total_high: float
    mean: float
    mean_low: float
    mean_high: float
    mean_p: float
    sharpe: float
    sharpe_low: float
    sharpe_high: float
    sharpe_p: float
    resamples: int
    mean_block: float = Field(description="the bootstrap's mean block, in candles (a day of them)")

    @property
    def luck(self) -> bool:
        """Whether luck can explain the difference in return: its 95% interval holds 0 (what a reader sees)."""
        return self.mean_low <= 0.0 <= self.mean_high

    @property
    def relative(self) -> tuple[float, float, float]:
        """How much more (or, below 0, less) the holding ends with than the other's: exp(total) - 1, and the same of
        the interval's ends."""
        return math.expm1(self.total), math.expm1(self.total_low), math.expm1(self.total_high)


class DecisionMetrics(_Document):
    """Would following the forecasts have made money after fees: both rules, their baseline twins, buy-and-hold
    and cash on the same candles (`rules`, keyed by makeusrich.scoring.decision's names), each rule against holding
    and against its twin; and what they were computed with, so that anyone can compute them again."""

    fee_bps: float
    threshold: float = Field(description="the signal rule's threshold on log(forecast / last close)")
    cap: float
    level: float = Field(description="the level of the central range the risk-target rule reads (0.9: 5%..95%)")
    # what the rules fitted on the training split; None where each fold fitted its own (pooled folds)
    train_drift: float | None = Field(None, description="the training split's mean log return a candle")
    sigma_target: float | None = Field(None, description="the training split's one-candle volatility")
    ewma_bounds: list[float] | None = Field(None, description="EWMA's range in units of the volatility known then")
    rules: dict[str, RuleScore]
    against_holding: dict[str, Difference]
    against_twin: dict[str, Difference]


class Equity(_Document):
    """Each decision rule's holding over time, for plots: its cumulative log return after fees at the closes `at`
    (thinned to a few hundred points; the last candle always kept)."""

    at: list[str]
    rules: dict[str, list[float]]


class SplitMetrics(_Document):
    n: int
    horizon: int
    model: Score
    rules: Rules
    ranges: RangeMetrics | None = None  # None for models from before forecast ranges
    decision: DecisionMetrics | None = None  # the test split's only; None before issue 28


class Metrics(_Document):
    validation: SplitMetrics
    test: SplitMetrics


class RoleSpan(_Document):
    """The hours one role of a run used: forecasts made at the closes from `from` on, the last of them scored on
    the candle closing at `to`."""

    origins: int
    from_: str = Field(alias="from")
    to: str


class DataSpan(_Document):
    """The candles a run used, named by the convention of the project: a span runs from the first candle's
    open to the last one's close, and `testFrom` is the close of the first test origin. `roles` says which hours
    fitted (train), early-stopped (validation), calibrated (calibration) and judged (test) the version;
    `tunedUntil` is the close of the last candle that fitted, early-stopped or calibrated it."""

    from_: str = Field(alias="from")
    to: str
    rows: int
    gaps: int
    missing_candles: int
    broken_dropped: int
    windows: dict[str, int]
    test_from: str
    validation_from: str | None = None  # the close of the first validation origin; None before ranges
    roles: dict[str, RoleSpan] = Field(default_factory=dict)  # empty before the roles had hours of their own
    tuned_until: str | None = None

    def tuned_through(self) -> str:
        """The close after which no candle tuned this version: older documents calibrated and early-stopped on
        validation, which ends before the test split's first window, so their test split marks it."""
        return self.tuned_until or self.test_from


class Gate(_Document):
    """One promotion rule, as a run applied it: whether it passed (None: not applied here, and why) and why."""

    name: Literal["point", "coverage", "champion", "first"]
    passed: bool | None
    note: str


class Promotion(_Document):
    """What the run decided, rule by rule (`gates`); only latest.json says whether the promotion happened (a run
    can die between). `judgedOn` names the split the pair's bars were measured on: test, hours that tuned nothing;
    older documents measured them on validation (`validationRelativeMAE`), where the model was early-stopped."""

    promoted: bool
    reason: str
    max_relative_mae: float = Field(alias="maxRelativeMAE")
    judged_on: Literal["test", "validation"] = "validation"
    relative_mae: float | None = Field(None, alias="relativeMAE", description="MAE / persistence's on judgedOn")
    coverage: float | None = Field(None, description="the widest range's coverage on judgedOn")
    coverage_tolerance: float | None = None
    validation_relative_mae: float | None = Field(None, alias="validationRelativeMAE")
    validation_coverage: float | None = Field(None, description="older documents: the widest range's on validation")
    champion: ChampionCheck | None = None
    gates: list[Gate] = Field(default_factory=list)

    @property
    def judged_relative_mae(self) -> float | None:
        """The MAE ratio the point bar was judged by, whichever split that was."""
        return self.relative_mae if self.judged_on == "test" else self.validation_relative_mae


class ChampionCheck(_Document):
    """The served version (champion) and this run (challenger) on the hours that neither used in any role: the
    challenger's test hours after the last candle that tuned the champion. The champion's own ONNX file runs on
    them, not its old numbers."""

    version: str
    kind: Literal["lstm", "baseline"] = "lstm"
    n: int
    compared: bool = Field(description="False when too few such hours exist, or the two forecast different things")
    comparable: bool = Field(
        True, description="False when the served version cannot be compared at all (unreadable, another horizon)"
    )
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
    that the calibration points (validation ones in older documents) are covered as the levels say; one margin
    per step and level, in log returns (for a model whose ranges scale with a volatility, at its training hours'
    median volatility)."""

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
    warm_from: str | None = Field(None, description="the version whose weights the run started from; None: the seed")
    start: str | None = Field(None, description="where the weights started and why; None before warm starts")


class SmokeTest(_Document):
    """A real window and the exported model's forecast for it: the server checks both before serving."""

    candles: list[list[float]]
    forecast: list[float]
    quantiles: list[list[float]] | None = None  # [horizon][levels]; None before ranges


class StoredFile(_Document):
    sha256: str
    bytes: int


class BaselineInfo(_Document):
    """How a baseline model makes its ranges: the volatility estimator it kept (the lower pinball loss on the
    training split), the EWMA estimators' weights' decay, and each estimator's pinball loss there."""

    estimator: Literal["close", "range", "har"]
    decay: float
    train_pinball: dict[str, float]


ESTIMATOR_NAMES = {"close": "close", "range": "range", "har": "HAR"}
"""How a baseline's volatility estimator is named to people: "HAR volatility ranges", not "har"."""

MODEL_KINDS = {
    "lstm": "LSTM",
    "baseline": "baseline (persistence with volatility ranges)",
}


class ModelMetadata(_Document):
    """One version's metadata.json. `kind` says which model it is: the LSTM, or the baseline every pair serves
    first (older documents are all LSTMs)."""

    pair: str
    namespace: str
    symbol: str
    interval: Interval
    version: str = Field(pattern=VERSION_PATTERN)
    kind: Literal["lstm", "baseline"] = "lstm"

    created_at: str
    source: str
    data: DataSpan
    window: int = Field(gt=0)
    horizon: int = Field(gt=0)
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    quantiles: list[float] | None = Field(None, description="levels of the quantiles output; None before ranges")
    calibration: Calibration | None = None
    baseline: BaselineInfo | None = None
    spec: dict[str, Any]
    metrics: Metrics
    promotion: Promotion
    training: Training
    software: dict[str, str]
    smoke_test: SmokeTest | None = None
    files: dict[str, StoredFile] = Field(default_factory=dict)  # written by the store
    storage_uri: str | None = None  # written by the store

    @field_validator("version")
    @classmethod
    def _a_time(cls, value: str) -> str:
        problem = version_problem(value)
        if problem:
            raise ValueError(f"{value} {problem}")
        return value


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
    warm: bool = Field(False, description="started from the previous fold's weights (spec.model.warmStart)")
    point: Score
    ranges: RangeMetrics
    decision: DecisionMetrics | None = None  # None in backtests from before issue 28


class Pool(_Document):
    """Some folds' out-of-sample points pooled: which folds, and their point and range scores."""

    folds: list[int]
    point: Score
    ranges: RangeMetrics
    decision: DecisionMetrics | None = None


class BacktestResult(_Document):
    """A walk-forward backtest: every fold, and all their out-of-sample points pooled. With a hold-out, also the
    pool of the folds a choice may be made on and that of the newest folds, which report it (`choice`, `heldOut`)."""

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
    pooled_decision: DecisionMetrics | None = Field(
        None, description="the rules over every fold's candles, each fold's positions from its own model and fit"
    )
    equity: Equity | None = Field(None, description="the pooled rules' holdings over time")
    choice: Pool | None = None
    held_out: Pool | None = None
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


class DetectorState(_Document):
    """One live decision's e-detector after the newest origin it folded in (makeusrich.scoring.sequential)."""

    decision: DecisionName
    against: str
    log_wealth: list[float] = Field(description="log R of each bet")
    forecasts: int = Field(description="scored forecasts it used")
    served_sum: float = Field(description="the sum of the served version's capped losses (or misses)")
    other_sum: float = Field(description="the comparator's, on the same forecasts")
    on: bool = False
    since: str | None = Field(None, description="the origin at which the current alarm fired")


class ShadowSums(_Document):
    """The served version beside one shadow so far: sums over the origins both forecast."""

    role: ShadowRole
    version: str
    scored: int = 0
    served_error: float = Field(0.0, description="the sum of the served version's absolute errors")
    other_error: float = Field(0.0, description="the shadow's")
    ranged: int = Field(0, description="origins where both forecast valid ranges")
    served_pinball: float = Field(0.0, description="the sum over them of the served version's mean pinball loss")
    other_pinball: float = Field(0.0, description="the shadow's")


class RunEvidence(_Document):
    """The evidence of the served version's run so far: each round folds in the forecasts scored since
    (makeusrich.track.evidence), so the decisions cost what a round adds, however long the run, and a restarted
    tracker goes on where it stopped."""

    version: str
    live_since: str
    through: str | None = Field(None, description="the newest origin folded in")
    decisions: list[DetectorState] = Field(default_factory=list)
    shadows: list[ShadowSums] = Field(default_factory=list)


class DecisionValue(_Document):
    """Would following a version's one-step forecasts since it went live (or over replayed hours) have made money
    after fees: the rules of its test split (makeusrich.scoring.decision), with what they fitted on its training
    split, on those hours."""

    version: str
    since: str = Field(description="the first origin counted")
    through: str = Field(description="the newest origin counted")
    computed_at: str
    metrics: DecisionMetrics


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
    decisions: list[LiveDecision] = Field(default_factory=list, description="the live decisions on the version's run")
    shadows: list[LiveShadow] = Field(default_factory=list, description="the version beside its shadows")
    run_evidence: RunEvidence | None = Field(None, description="what the decisions and shadows above are made of")
    decision: DecisionValue | None = Field(None, description="the version's run after fees, refreshed daily")
    replayed_decision: DecisionValue | None = Field(
        None, description="the same over the replayed hours (`makeusrich track --replay`), never counted as live"
    )

    def window(self, name: str) -> LiveWindow | None:
        return next((w for w in self.windows if w.window == name), None)


def parse_track_summary(raw: bytes, where: str) -> TrackSummary:
    try:
        return TrackSummary.model_validate_json(raw)
    except ValidationError as exc:
        raise StoreError(f"{where} is malformed: {_first_problem(exc)}; the tracker rewrites it next round") from None


CHANGE_ACTIONS = ("promoted", "rolled-back")


class Change(_Document):
    """One change of the served version, as latest.json keeps it: who made it, when, why, on what evidence.
    `from` is the version served before (None for a pair's first)."""

    version: str = Field(pattern=VERSION_PATTERN)
    from_: str | None = Field(None, alias="from", pattern=VERSION_PATTERN)
    action: Literal["promoted", "rolled-back"]
    by: str
    at: str
    reason: str = ""
    evidence: dict[str, Any] = Field(default_factory=dict)


def parse_changes(raw: object, where: str) -> tuple[Change, ...]:
    if not isinstance(raw, list):
        raise StoreError(f"{where} has `changes` that are not a list; promote a version again to rewrite it")
    try:
        return tuple(Change.model_validate(item) for item in raw)
    except ValidationError as exc:
        raise StoreError(f"{where} has a malformed change: {_first_problem(exc)}") from None
