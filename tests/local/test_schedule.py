"""When `makeusrich up` trains a pair: the rules of the cluster (first Job at once, then the CronJob), pure."""

from __future__ import annotations

from datetime import UTC, datetime

from makeusrich.contract import iso_z
from makeusrich.local.schedule import due_at, retrain_when_degraded, spec_sha256
from makeusrich.pair import CurrencyPair, parse_pair
from makeusrich.store import RunState

NOW = datetime(2026, 12, 1, 17, 30, tzinfo=UTC)


def pair(**spec: object) -> CurrencyPair:
    fields = {"currency": "btc", "compare": "usdt", "schedule": "0 0 * * *", **spec}
    return parse_pair({"metadata": {"name": "btc-usdt"}, "spec": fields})


def run(of: CurrencyPair, state: str, started: datetime) -> RunState:
    return RunState(state=state, started_at=iso_z(started), spec_sha256=spec_sha256(of))  # type: ignore[arg-type]


def test_a_pair_without_a_model_trains_at_once() -> None:
    assert due_at(pair(), None, None, NOW) == NOW


def test_a_pair_with_a_model_waits_for_its_schedule_after_the_model() -> None:
    assert due_at(pair(), "20261201T120000Z", None, NOW) == datetime(2026, 12, 2, tzinfo=UTC)


def test_a_schedule_missed_while_nothing_ran_is_due_at_once() -> None:
    """As a CronJob runs a missed schedule: the model is from before the last midnight."""
    assert due_at(pair(), "20261130T120000Z", None, NOW) == datetime(2026, 12, 1, tzinfo=UTC) < NOW


def test_a_failed_first_training_waits_for_the_next_schedule_instead_of_looping() -> None:
    failed = run(pair(), "failed", datetime(2026, 12, 1, 17, 0, tzinfo=UTC))
    assert due_at(pair(), None, failed, NOW) == datetime(2026, 12, 2, tzinfo=UTC)


def test_a_run_stopped_half_way_counts_as_no_run() -> None:
    for state in ("interrupted", "training"):
        assert due_at(pair(), None, run(pair(), state, datetime(2026, 12, 1, 17, 0, tzinfo=UTC)), NOW) == NOW


def test_an_edited_spec_of_a_pair_without_a_model_trains_at_once() -> None:
    failed = run(pair(), "failed", datetime(2026, 12, 1, 17, 0, tzinfo=UTC))
    edited = pair(lookbackDays=90)
    assert spec_sha256(edited) != spec_sha256(pair())
    assert due_at(edited, None, failed, NOW) == NOW


def test_the_newest_of_the_model_and_the_last_run_sets_the_next_time() -> None:
    hourly = pair(schedule="0 * * * *")
    done = run(hourly, "succeeded", datetime(2026, 12, 1, 17, 5, tzinfo=UTC))
    assert due_at(hourly, "20261201T100000Z", done, NOW) == datetime(2026, 12, 1, 18, tzinfo=UTC)


def test_a_suspended_pair_is_never_due() -> None:
    assert due_at(pair(suspend=True), None, None, NOW) is None


def test_retrain_when_degraded_runs_once_per_episode_and_only_when_asked() -> None:
    since = "2026-12-01T12:00:00Z"
    asked = pair(promotion={"retrainWhenDegraded": True})
    assert retrain_when_degraded(asked, since, None)
    assert retrain_when_degraded(asked, since, run(asked, "succeeded", datetime(2026, 12, 1, 0, 0, tzinfo=UTC)))
    assert not retrain_when_degraded(asked, since, run(asked, "failed", datetime(2026, 12, 1, 13, 0, tzinfo=UTC)))
    assert not retrain_when_degraded(asked, None, None)  # not Degraded
    assert not retrain_when_degraded(pair(), since, None)  # not asked
    assert not retrain_when_degraded(pair(promotion={"retrainWhenDegraded": True}, suspend=True), since, None)
