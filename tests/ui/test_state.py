"""The pure half of the dashboard's refresh: what a card shows, from what one refresh observed."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from makeusrich.operator.status import model_status
from makeusrich.pair import CurrencyPairStatus
from makeusrich.pair_sources import PairRecord
from makeusrich.store import Damaged, Latest, StoreSummary, parse_metadata
from makeusrich.ui.card import Observed, Served, build_state
from tests.fixtures.metadata import metadata_document
from tests.fixtures.models import small_pair

V1, V2, V3 = "20260101T000000Z", "20260102T000000Z", "20260103T000000Z"


def record(**more: object) -> PairRecord:
    pair = small_pair()
    return PairRecord(pair.name, pair.namespace, pair, **more)  # type: ignore[arg-type]


def latest(version: str, *history: str) -> Latest:
    return Latest(version, f"file:///s/{version}/", "0" * 64, "2026-01-01T00:00:00Z", history)


def candles(n: int) -> pd.DataFrame:
    opened = pd.date_range("2026-01-01", periods=n, freq="1h", tz="UTC")
    return pd.DataFrame({"open_time": opened, "close": [100.0 + i for i in range(n)]})


def test_a_pair_that_does_not_validate_shows_its_problem_and_nothing_else() -> None:
    broken = PairRecord("x", "default", None, problem="spec.interval: not an interval")
    state = build_state(broken, Observed(served=Served(version=V1, ready=True)))
    assert state.problem == "spec.interval: not an interval" and state.served_version is None


def test_before_any_promotion_a_server_that_knows_no_model_is_not_an_error() -> None:
    quiet = build_state(record(), Observed(served=Served(ready=False, error="has no model", not_found=True)))
    assert quiet.serving_error is None and quiet.promoted_version is None and quiet.skill is None
    summary = StoreSummary(latest(V1), [V1], {V1: parse_metadata(metadata_document(V1))})
    seen = Observed(summary=summary, served=Served(ready=False, error="has no model", not_found=True))
    assert build_state(record(), seen).serving_error == "has no model"  # promoted, yet not served: say so


def test_skill_comes_from_the_shown_version_and_an_unpromoted_newest_version_says_why() -> None:
    promoted = parse_metadata(metadata_document(V1))
    crashed = parse_metadata(metadata_document(V2))  # its run decided to promote, then died before latest.json
    summary = StoreSummary(latest(V1), [V1, V2, V3], {V1: promoted, V2: crashed, V3: Damaged("not JSON")})
    state = build_state(record(), Observed(summary=summary, served=Served(version=V1, window=24, ready=True)))
    assert state.promoted_version == state.served_version == V1 and state.serving_ready is True
    assert state.skill is not None and state.skill.test == promoted.metrics.test.model
    assert state.trained_at == promoted.created_at and state.promoted_versions == {V1}
    assert state.newest_version == V3 and state.newest_promoted is False
    assert state.newest_reason == "damaged: not JSON"
    older = StoreSummary(latest(V1), [V1, V2], summary.metadata)
    state = build_state(record(), Observed(summary=older, served=Served(version=V1)))
    assert state.newest_promoted is False and state.newest_reason is not None
    assert state.newest_reason.endswith("its run ended before latest.json named it, so it was never promoted")


def test_without_a_store_the_status_gives_the_skill_and_readiness() -> None:
    meta = parse_metadata(metadata_document(V1))
    metrics = meta.metrics
    status = CurrencyPairStatus.model_validate(
        {
            "conditions": [{"type": "Ready", "status": "True", "reason": "Serving", "lastTransitionTime": "t"}],
            "model": model_status(V1, "file:///s/", meta).model_dump(by_alias=True),
        }
    )
    state = build_state(record(status=status), Observed(served=Served(version=V1)))
    assert state.promoted_version == V1 and state.serving_ready is True
    assert state.skill is not None and state.skill.test == metrics.test.model
    assert state.trained_at == "2026-01-01T00:30:00Z"
    other = build_state(record(status=status), Observed(served=Served(version=V2)))
    assert other.skill is None  # the status describes another version than the one served


def test_prices_are_named_by_candle_close_and_the_sparkline_is_short() -> None:
    forecast = pd.DataFrame({"close": [150.5], "close_time": [pd.Timestamp("2026-01-03 05:00", tz="UTC")]})
    seen = Observed(served=Served(version=V1), candles=candles(52), forecast=forecast, forecast_error=None)
    state = build_state(record(), seen, spark_candles=48)
    assert state.last_close == 151.0 and len(state.closes) == 48 and state.closes[-1] == 151.0
    assert state.last_close_time == datetime(2026, 1, 3, 4, tzinfo=UTC)  # opened 03:00, closed 04:00
    assert state.forecast == (150.5,) and state.forecast_times == (datetime(2026, 1, 3, 5, tzinfo=UTC),)
    empty = build_state(record(), Observed(candles=candles(0), candle_error="candles: none"))
    assert empty.last_close is None and empty.closes == () and empty.candle_error == "candles: none"
