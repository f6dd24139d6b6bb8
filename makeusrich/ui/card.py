"""A card's state: everything the dashboard shows about one pair, as plain immutable values, and `build_state`,
which makes it from what one refresh observed (the refresh loop, makeusrich.ui.state, does the I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import pandas as pd
from pydantic import ValidationError

from makeusrich.contract import quantile_column
from makeusrich.market import close_moments
from makeusrich.pair import CurrencyPair, CurrencyPairStatus, LiveStatus, ModelChange
from makeusrich.pair_sources import PairRecord
from makeusrich.scoring import decision, live_status
from makeusrich.store import Metrics, ModelMetadata, RunState, Score, StoreSummary
from makeusrich.ui.tables import promotion_reason


@dataclass(frozen=True)
class Skill:
    """The model's own numbers on the two held-out splits, from metadata.json or from a pair's status."""

    validation: Score | None
    test: Score | None


def skill_from_metrics(metrics: Metrics) -> Skill:
    return Skill(validation=metrics.validation.model, test=metrics.test.model)


def skill_from_status(metrics: Mapping[str, Any] | None) -> Skill | None:
    """A status's `model.metrics` ({split: score}); a split in a shape we do not know is left out."""

    def split(name: str) -> Score | None:
        try:
            return Score.model_validate((metrics or {}).get(name))
        except ValidationError:
            return None

    skill = Skill(validation=split("validation"), test=split("test"))
    return skill if skill.validation or skill.test else None


def condition(status: CurrencyPairStatus | None, kind: str) -> Any:
    return next((c for c in status.conditions if c.type == kind), None) if status else None


@dataclass(frozen=True)
class PairState:
    """Everything a card shows, as plain values (built by the dashboard from its sources)."""

    key: str
    name: str
    namespace: str
    pair: CurrencyPair | None
    problem: str | None = None
    status: CurrencyPairStatus | None = None
    last_close: float | None = None
    last_close_time: datetime | None = None  # every time here is when a candle closes
    closes: tuple[float, ...] = ()
    forecast: tuple[float, ...] = ()
    forecast_times: tuple[datetime, ...] = ()
    quantiles: tuple[tuple[float, ...], ...] = ()  # per forecast candle, one per level
    levels: tuple[float, ...] = ()
    candle_error: str | None = None
    promoted_version: str | None = None
    served_version: str | None = None
    kind: str | None = None  # of the version shown: lstm or baseline
    trained_at: str | None = None
    skill: Skill | None = None
    newest_version: str | None = None
    newest_promoted: bool | None = None  # whether latest.json ever named the newest version
    promoted_versions: frozenset[str] = frozenset()
    newest_reason: str | None = None
    serving_ready: bool | None = None
    serving_error: str | None = None
    refused: str | None = None
    forecast_error: str | None = None
    store_error: str | None = None
    run: RunState | None = None  # the newest training `makeusrich up` started
    offline: str | None = None  # what stands in for Binance's live candles: the sample or a file
    live: LiveStatus | None = None  # the track record of served forecasts (track.json, or status.live)
    test_after_fees: str | None = None  # on the test split: would following it have made money after fees
    changes: tuple[ModelChange, ...] = ()  # latest.json's trail (or status.model.history), newest first
    loading: bool = False

    @property
    def symbol(self) -> str:
        return f"{self.pair.spec.currency.upper()}/{self.pair.spec.compare.upper()}" if self.pair else self.name

    @property
    def interval(self) -> str:
        return self.pair.spec.interval if self.pair else ""

    @property
    def change(self) -> float | None:
        return self.forecast[0] / self.last_close - 1.0 if self.forecast and self.last_close else None

    def forecast_range(self, step: int = 0) -> tuple[float, float, float] | None:
        """(low, high, nominal coverage) of the widest range forecast for a step; None without quantiles."""
        if step >= len(self.quantiles) or len(self.levels) < 3:
            return None
        row = self.quantiles[step]
        return row[0], row[-1], round(self.levels[-1] - self.levels[0], 9)

    @property
    def test_ratio(self) -> float | None:
        return self.skill.test.rel_mae if self.skill and self.skill.test else None

    @property
    def after_fees(self) -> str | None:
        """The card's answer to "would following it have made money": live once a day of forecasts is scored."""
        return (self.live.after_fees if self.live else None) or self.test_after_fees

    @property
    def errors(self) -> list[str]:
        """What went wrong for this pair, most important first; each is shown on its card only."""
        failed = self.run.message if self.run and self.run.state == "failed" else None
        found = [self.problem, failed, self.serving_error, self.forecast_error, self.candle_error, self.store_error]
        return [text for text in found if text]


@dataclass(frozen=True)
class Served:
    """What the pair's model server said about it."""

    version: str | None = None
    window: int | None = None
    ready: bool | None = None
    error: str | None = None
    refused: str | None = None
    not_found: bool = False
    levels: tuple[float, ...] | None = None  # of the model's quantiles output; None without one


@dataclass(frozen=True)
class Observed:
    """Everything one refresh learned about a pair: the inputs of `build_state`."""

    summary: StoreSummary | None = None
    store_error: str | None = None
    served: Served = field(default_factory=Served)
    candles: pd.DataFrame | None = None
    candle_error: str | None = None
    forecast: pd.DataFrame | None = None
    forecast_error: str | None = None
    offline: str | None = None


def promoted_version(record: PairRecord, summary: StoreSummary | None) -> str | None:
    """The store's latest.json when it was read, else what the pair's status says."""
    if summary is not None and summary.latest is not None:
        return summary.latest.version
    model = record.status.model if record.status else None
    return model.version if model else None


def forecast_quantiles(
    forecast: pd.DataFrame | None, levels: tuple[float, ...] | None
) -> tuple[tuple[float, ...], ...]:
    """Per forecast candle, its quantiles in level order; empty when the model has none."""
    if forecast is None or not levels or any(quantile_column(v) not in forecast for v in levels):
        return ()
    return tuple(tuple(float(v) for v in row) for row in forecast[[quantile_column(v) for v in levels]].to_numpy())


def build_state(record: PairRecord, seen: Observed, spark_candles: int = 48) -> PairState:
    """A pair's card from what one refresh observed (pure: the refresh loop does the I/O)."""
    base = PairState(record.key, record.name, record.namespace, record.pair, record.problem, record.status)
    if record.pair is None:
        return base
    summary, served = seen.summary, seen.served
    promoted = promoted_version(record, summary)
    # Nothing promoted yet: no server knows the model, rightly.
    serving_error = None if served.not_found and promoted is None else served.error
    shown = served.version or promoted
    meta = summary.metadata.get(shown) if summary and shown else None
    known = meta if isinstance(meta, ModelMetadata) else None
    skill = skill_from_metrics(known.metrics) if known else None
    trained_at, kind = (known.created_at, known.kind) if known else (None, None)
    status_model = record.status.model if record.status else None
    traded = known.metrics.test.decision if known else None
    test_after_fees = decision.headline(traded, "test split") if traded else None
    if skill is None and status_model is not None and status_model.version == shown:
        skill, trained_at = skill_from_status(status_model.metrics), status_model.trained_at
        kind, test_after_fees = status_model.kind, status_model.after_fees
    newest = summary.newest if summary else None
    newest_meta = summary.metadata.get(newest) if summary and newest else None
    promoted_versions = summary.promoted if summary else frozenset({promoted} if promoted else ())
    ready, ready_condition = served.ready, condition(record.status, "Ready")
    if ready is None and ready_condition is not None:
        ready = ready_condition.status == "True"
    tail = seen.candles.tail(spark_candles) if seen.candles is not None and len(seen.candles) else None
    closes = tuple(float(x) for x in tail["close"]) if tail is not None else ()
    forecast = seen.forecast
    quantiles = forecast_quantiles(forecast, served.levels)
    return replace(
        base,
        last_close=closes[-1] if closes else None,
        last_close_time=(
            close_moments(tail["open_time"], record.pair.spec.interval).iloc[-1].to_pydatetime()
            if tail is not None
            else None
        ),
        closes=closes,
        forecast=tuple(float(x) for x in forecast["close"]) if forecast is not None else (),
        forecast_times=tuple(t.to_pydatetime() for t in forecast["close_time"]) if forecast is not None else (),
        quantiles=quantiles,
        levels=(served.levels or ()) if quantiles else (),
        candle_error=seen.candle_error,
        promoted_version=promoted,
        served_version=served.version,
        kind=kind,
        trained_at=trained_at,
        skill=skill,
        test_after_fees=test_after_fees,
        newest_version=newest,
        newest_promoted=newest in promoted_versions if newest_meta else None,
        newest_reason=promotion_reason(newest_meta, newest in promoted_versions) if newest_meta else None,
        promoted_versions=promoted_versions,
        serving_ready=ready,
        serving_error=serving_error,
        refused=served.refused,
        forecast_error=seen.forecast_error,
        store_error=seen.store_error,
        run=summary.run if summary else None,
        offline=seen.offline,
        live=live_status(summary.track)
        if summary and summary.track
        else (record.status.live if record.status else None),
        changes=served_changes(record, summary),
    )


def served_changes(record: PairRecord, summary: StoreSummary | None) -> tuple[ModelChange, ...]:
    """Who changed the served version, when and why, newest first: from latest.json when it was read, else from
    the pair's status."""
    if summary is not None and summary.latest is not None:
        trail = reversed(summary.latest.changes)
        return tuple(ModelChange.model_validate(c.model_dump(by_alias=True, exclude={"evidence"})) for c in trail)
    model = record.status.model if record.status else None
    return tuple(model.history) if model else ()
