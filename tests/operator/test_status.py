"""The pure status functions: what the pair's conditions say for each observed situation."""

from __future__ import annotations

from typing import Any

from makeusrich.operator import status as st
from makeusrich.pair import CurrencyPairStatus, ModelStatus, ServingStatus, TrainingStatus
from makeusrich.store import Change, Latest, parse_metadata
from tests.fixtures.metadata import metadata_document

LAST_WORDS = "makeusrich train: Binance refused the symbol BTCUSDX; check spec.compare"
T0, T1, T2 = "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z"
METADATA = parse_metadata(metadata_document())


def conditions(status: CurrencyPairStatus) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}


def job(phase_status: dict[str, Any], name: str = "p-trainer-1", created: str = T0) -> st.JobSummary:
    return st.job_summary(
        {"metadata": {"name": name, "uid": name, "creationTimestamp": created}, "status": phase_status}
    )


def model(version: str = "20260101T000000Z") -> ModelStatus:
    return st.model_status(version, f"s3://b/ns/p/versions/{version}/", METADATA)


def test_job_phases_from_job_status() -> None:
    assert job({}).phase == "Pending"
    assert job({"active": 1, "startTime": T0}).phase == "Running"
    done = job(
        {
            "startTime": T0,
            "completionTime": T1,
            "succeeded": 1,
            "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}],
        }
    )
    assert (done.phase, done.started, done.finished) == ("Succeeded", T0, T1)
    failed = job(
        {
            "startTime": T0,
            "failed": 2,
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "lastTransitionTime": T2,
                    "message": "Job has reached the specified backoff limit",
                }
            ],
        }
    )
    assert (failed.phase, failed.finished, failed.reason) == ("Failed", T2, "BackoffLimitExceeded")
    assert st.newest_job([done, job({}, "p-trainer-2", T1), failed]).name == "p-trainer-2"


def test_failure_message_names_the_job_reason_and_the_trainer_s_last_words() -> None:
    failed = job({"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]})
    pods = [
        {
            "metadata": {"name": "p-trainer-1-abcde", "creationTimestamp": T1},
            "status": {
                "containerStatuses": [
                    {
                        "state": {
                            "terminated": {
                                "exitCode": 1,
                                "reason": "Error",
                                "message": f"INFO fetching\n{LAST_WORDS}\n",
                            }
                        }
                    }
                ]
            },
        },
        {"metadata": {"name": "p-trainer-1-older", "creationTimestamp": T0}, "status": {"reason": "Evicted"}},
    ]
    text = st.job_failure_message(failed, pods)
    assert text == (
        "training Job p-trainer-1 failed (BackoffLimitExceeded); pod p-trainer-1-abcde: Error (exit code 1): "
        f"{LAST_WORDS}"
    )
    oom = [
        {
            "metadata": {"name": "x"},
            "status": {"containerStatuses": [{"state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]},
        }
    ]
    assert st.job_failure_message(failed, oom).endswith("pod x: OOMKilled (exit code 137)")
    assert st.job_failure_message(failed) == "training Job p-trainer-1 failed (BackoffLimitExceeded)"


def test_model_status_keeps_the_model_s_own_metrics() -> None:
    status = model()
    assert status.skill == 0.95 and status.trained_at == "2026-01-01T00:30:00Z"
    assert status.metrics is not None and set(status.metrics) == {"validation", "test"}  # no baselines
    recorded = metadata_document()["metrics"]["validation"]["model"]
    assert status.metrics["validation"] == {k: v for k, v in recorded.items() if v is not None}
    # a null would be deleted by the merge patch and the status written again every round: unknown is absent
    assert status.metrics["test"]["relMae"] == 0.95 and "directional" not in status.metrics["test"]
    assert st.model_status("v", "uri", None).skill is None
    assert status.after_fees is None  # a version from before the rules has no answer after fees, and says none


def test_serving_observation_needs_ready_for_the_current_generation() -> None:
    isvc: dict[str, Any] = {
        "metadata": {"generation": 2, "annotations": {"makeusrich.io/model-version": "V2"}},
        "status": {
            "url": "http://p.ns.example",
            "observedGeneration": 1,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }
    seen = st.serving_observation(isvc)
    assert seen is not None and seen.status == ServingStatus(version="V2", url="http://p.ns.example", ready=False)
    isvc["status"]["observedGeneration"] = 2
    seen = st.serving_observation(isvc)
    assert seen is not None and seen.status.ready is True
    assert st.serving_observation(None) is None


def test_a_new_pair_waits_for_its_first_model() -> None:
    observed = st.Observed(generation=1, symbol="BTCUSDT", schedule="0 0 * * *")
    status = st.compute_status(None, observed, T0)
    assert conditions(status) == {
        "Valid": ("True", "SpecValid"),
        "Trained": ("False", "NoModel"),
        "Serving": ("False", "NoModel"),
        "Ready": ("False", "NoModel"),
        "Degraded": ("Unknown", "NoTrackRecord"),
    }
    assert status.observed_generation == 1 and status.symbol == "BTCUSDT"
    assert st.status_events(None, status) == []  # nothing happened yet
    training = st.training_status(job({"active": 1}))
    status2 = st.compute_status(status, st.Observed(generation=1, training=training), T1)
    assert conditions(status2)["Trained"] == ("False", "Training")
    assert status2.last_training == TrainingStatus(job="p-trainer-1", phase="Running")
    assert [e.reason for e in st.status_events(status, status2)] == ["Training"]  # a change: an Event
    # a new pair's first status with its first Job running: the reconcile's Applied Event already says so
    first = st.compute_status(None, st.Observed(generation=1, training=training), T0)
    assert conditions(first)["Trained"] == ("False", "Training") and st.status_events(None, first) == []


def test_a_served_model_makes_the_pair_ready_and_transition_times_move_only_on_change() -> None:
    served = st.ServingObservation(ServingStatus(version="20260101T000000Z", url="http://u", ready=True))
    first = st.compute_status(None, st.Observed(generation=1, model=model()), T0)
    assert conditions(first)["Serving"] == ("False", "Deploying")
    second = st.compute_status(first, st.Observed(generation=1, model=model(), serving=served), T1)
    assert conditions(second) == {
        "Valid": ("True", "SpecValid"),
        "Trained": ("True", "Promoted"),
        "Serving": ("True", "Ready"),
        "Ready": ("True", "Ready"),
        "Degraded": ("Unknown", "NoTrackRecord"),
    }
    times = {c.type: c.last_transition_time for c in second.conditions}
    assert times == {"Valid": T0, "Trained": T0, "Serving": T1, "Ready": T1, "Degraded": T0}
    assert second.serving == served.status and second.model == model()
    events = st.status_events(first, second)
    assert [(e.type, e.reason) for e in events] == [("Normal", "Ready")]
    assert [e.reason for e in st.status_events(None, first)] == ["Promoted", "Deploying", "ModelChanged"]


def test_a_new_version_rolls_out_while_the_old_one_keeps_serving() -> None:
    old = st.ServingObservation(ServingStatus(version="20260101T000000Z", url="http://u", ready=True))
    status = st.compute_status(None, st.Observed(model=model("20260102T000000Z"), serving=old), T0)
    assert conditions(status)["Serving"] == ("True", "RollingOut") and conditions(status)["Ready"][0] == "True"


def test_a_rollback_shows_in_the_model_status_and_is_a_warning_event() -> None:
    v1, v2 = "20260101T000000Z", "20260102T000000Z"
    trail = (
        Change.model_validate({"version": v1, "action": "promoted", "by": "makeusrich train", "at": T0}),
        Change.model_validate({"version": v2, "from": v1, "action": "promoted", "by": "makeusrich train", "at": T1}),
        Change.model_validate(
            {"version": v1, "from": v2, "action": "rolled-back", "by": "makeusrich track", "at": T2, "reason": "worse"}
        ),
    )
    latest = Latest(v1, "uri", "0" * 64, T2, (v2,), trail, (v2,))
    before = st.compute_status(None, st.Observed(model=model(v2)), T0)
    rolled = st.model_status(v1, "uri", METADATA, latest)
    assert rolled.change is not None and (rolled.change.action, rolled.change.from_) == ("rolled-back", v2)
    assert [c.version for c in rolled.history] == [v1, v2, v1]  # newest first
    after = st.compute_status(before, st.Observed(model=rolled), T2)
    events = [(e.type, e.reason, e.message) for e in st.status_events(before, after)]
    assert ("Warning", "RolledBack", f"version {v2} rolled back to {v1} by makeusrich track: worse") in events
    assert st.model_status(v1, "uri", METADATA, latest, pinned=True).change is None  # a person's pin
    assert "from" in st.dump_status(after)["model"]["change"]  # the trail's own name on the resource


def test_failures_are_counted_in_a_row_back_to_the_last_success() -> None:
    failed, succeeded = {"conditions": [{"type": "Failed", "status": "True"}]}, {"succeeded": 1, "completionTime": T0}
    runs = [("a", succeeded, T0), ("b", failed, T1), ("c", failed, T2)]
    jobs = [job(status, name, created) for name, status, created in runs]
    assert st.failures_in_a_row(jobs) == 2
    assert st.failures_in_a_row([*jobs, job({"active": 1}, "d", "2026-01-01T03:00:00Z")]) == 2  # a retry running
    assert st.failures_in_a_row([*jobs, job(succeeded, "d", "2026-01-01T03:00:00Z")]) == 0
    assert st.failures_in_a_row(jobs[1:]) == 2 and st.failures_in_a_row([]) == 0
    assert st.training_status(jobs[-1], "job c failed", 2).failures == 2


def test_a_failed_training_says_why_and_keeps_the_model() -> None:
    failed = st.training_status(job({"conditions": [{"type": "Failed", "status": "True"}]}), "job X failed: OOM")
    served = st.ServingObservation(ServingStatus(version="20260101T000000Z", url="http://u", ready=True))
    status = st.compute_status(None, st.Observed(training=failed, model=model(), serving=served), T0)
    trained = next(c for c in status.conditions if c.type == "Trained")
    assert (trained.status, trained.reason) == ("False", "TrainingFailed")
    assert trained.message == "job X failed: OOM; still serving version 20260101T000000Z"
    assert conditions(status)["Ready"] == ("True", "Ready")
    assert ("Warning", "TrainingFailed") in [(e.type, e.reason) for e in st.status_events(None, status)]


def test_an_invalid_spec_says_why_and_keeps_the_rest() -> None:
    good = st.compute_status(None, st.Observed(generation=1, model=model()), T0)
    bad = st.compute_status(good, st.Observed(generation=2, invalid="spec.schedule: never fires"), T1)
    assert conditions(bad)["Valid"] == ("False", "InvalidSpec") and conditions(bad)["Ready"][0] == "False"
    assert conditions(bad)["Trained"] == conditions(good)["Trained"] and bad.model == good.model
    assert bad.observed_generation == 2
    fresh = st.compute_status(None, st.Observed(generation=1, invalid="bad"), T0)
    assert conditions(fresh)["Trained"] == ("Unknown", "InvalidSpec")
    assert [(e.type, e.reason) for e in st.status_events(None, fresh)] == [("Warning", "InvalidSpec")]


def test_store_trouble_is_reported_without_losing_the_model() -> None:
    problem = st.Problem("StoreError", "cannot read the model store s3://b: timeout")
    unknown = st.compute_status(None, st.Observed(model_problem=problem), T0)
    assert conditions(unknown)["Trained"] == ("Unknown", "StoreError")
    known = st.compute_status(None, st.Observed(model=model(), model_problem=problem), T0)
    trained = next(c for c in known.conditions if c.type == "Trained")
    assert trained.status == "True" and "cannot read the model store" in trained.message
    missing = st.Problem("PinnedVersionMissing", "pinned version 20250101T000000Z is not in the store")
    pinned = st.compute_status(None, st.Observed(model_problem=missing, pinned="20250101T000000Z"), T0)
    assert conditions(pinned)["Serving"] == ("False", "PinnedVersionMissing")


def test_status_round_trips_through_the_merge_patch_form() -> None:
    status = st.compute_status(None, st.Observed(generation=3, model=model()), T0)
    dumped = st.dump_status(status)
    assert dumped["serving"] is None and dumped["model"]["skill"] == 0.95  # None clears a stale field
    assert st.parse_status(dumped) == status
    assert st.parse_status({"conditions": [{"type": "Bogus"}]}) is None and st.parse_status({}) is None
