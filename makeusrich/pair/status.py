"""The CurrencyPair's status (contract 1), written by the operator: conditions, the model, serving, the last
training and the live track record."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from makeusrich.pair.spec import CamelModel


class Condition(CamelModel):
    type: Literal["Valid", "Trained", "Serving", "Ready", "Degraded"]
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", max_length=1024)
    message: str = Field("", max_length=32768)
    last_transition_time: str = Field(description="RFC 3339 time of the last status change.")


class ModelChange(CamelModel):
    """One change of the served version, from latest.json's audit trail: who made it, when and why."""

    version: str
    from_: str | None = Field(None, alias="from", description="The version served before.")
    action: Literal["promoted", "rolled-back"]
    by: str
    at: str
    reason: str = Field("", max_length=1024)


class ModelStatus(CamelModel):
    version: str | None = None
    kind: Literal["lstm", "baseline"] | None = Field(
        None, description="Which model is served: the LSTM, or the baseline every pair serves first."
    )
    trained_at: str | None = None
    storage_uri: str | None = None
    skill: float | None = Field(None, description="Test MAE relative to persistence (below 1 beats it).")
    after_fees: str | None = Field(
        None, description="On the test split: would following it have made money after fees, against holding."
    )
    metrics: dict[str, Any] | None = None
    change: ModelChange | None = Field(None, description="How this version came to be served (none when pinned).")
    history: list[ModelChange] = Field(default_factory=list, description="The newest changes, newest first.")


class ServingStatus(CamelModel):
    version: str | None = None
    url: str | None = None
    ready: bool | None = None


class TrainingStatus(CamelModel):
    job: str | None = None
    phase: Literal["Pending", "Running", "Succeeded", "Failed"] | None = None
    started_at: str | None = None
    finished_at: str | None = None
    message: str | None = None
    failures: int = Field(
        0,
        ge=0,
        description="Trainer runs that failed in a row, the newest first; 0 once one succeeds. Counted over the "
        "Jobs Kubernetes keeps (the CronJob's failedJobsHistoryLimit, 3 by default).",
    )


class LiveWindowStatus(CamelModel):
    window: str = Field(description="24h, 7d, 30d, or version (since the served version went live)")
    made: int = Field(0, description="Origins with a live forecast.")
    missed: int = Field(0, description="Origins recorded as gaps.")
    scored: int = Field(0, description="Forecasts whose candles have closed.")
    mae_ratio: float | None = Field(None, description="Live MAE relative to persistence on the same hours.")
    dm_pvalue: float | None = None
    direction: float | None = Field(None, description="Share of moves whose direction the forecast called right.")
    coverage: float | None = Field(None, description="Share of closes inside the widest range.")
    coverage_nominal: float | None = Field(None, description="The widest range's nominal coverage (0.9).")


DecisionName = Literal["degraded-point", "degraded-range", "degraded-coverage", "rollback-point", "rollback-range"]
ShadowRole = Literal["replaced", "baseline"]


class LiveDecision(CamelModel):
    """One live decision on the served version's run (makeusrich.scoring.sequential): its e-detector statistic
    against the threshold at which it acts, and the evidence behind it."""

    decision: DecisionName
    on: bool = Field(description="The statistic reached the threshold and has not fallen below a hundredth of it.")
    statistic: float = Field(description="The e-detector's value now; it acts at `threshold`.")
    threshold: float = Field(description="Checks in 90 days / 0.01: a false alarm within 90 days has 1% chance.")
    forecasts: int = Field(description="Scored forecasts the evidence used (the served version's run).")
    since: str | None = Field(None, description="The origin at which the current alarm fired.")
    against: str = Field(description="What the served version is compared with: a version, persistence, a promise.")
    served: float | None = Field(
        None, description="The served version's mean capped loss in volatilities (or miss rate)."
    )
    other: float | None = Field(
        None, description="The comparator's, on the same forecasts (or the promised miss rate)."
    )

    @property
    def share(self) -> float:
        """How far the evidence is towards acting: 1 acts."""
        return self.statistic / self.threshold


class LiveShadow(CamelModel):
    """The served version beside a shadow (the version it replaced, or the baseline) on the same scored origins."""

    role: ShadowRole
    version: str
    scored: int
    mae_ratio: float | None = Field(None, description="The served version's MAE over the shadow's.")
    pinball_ratio: float | None = Field(None, description="The served version's pinball loss over the shadow's.")


class LiveStatus(CamelModel):
    """The live track record (track.json, written by `makeusrich track`), as the operator last read it."""

    version: str | None = None
    live_since: str | None = None
    updated_at: str | None = None
    last_forecast_at: str | None = None
    skill: float | None = Field(None, description="Live MAE relative to persistence over the last 30 days.")
    after_fees: str | None = Field(
        None, description="Since the version went live: would following it have made money after fees (daily)."
    )
    windows: list[LiveWindowStatus] = Field(default_factory=list)
    decisions: list[LiveDecision] = Field(default_factory=list)
    shadows: list[LiveShadow] = Field(default_factory=list)


class CurrencyPairStatus(CamelModel):
    observed_generation: int | None = None
    symbol: str | None = None
    conditions: list[Condition] = Field(default_factory=list)
    model: ModelStatus | None = None
    serving: ServingStatus | None = None
    last_training: TrainingStatus | None = None
    live: LiveStatus | None = None
