"""Pure functions from what the operator observed to the CurrencyPair's status, and the Events its changes deserve.

The handlers gather observations (the pair, its Jobs, the store's latest.json, the InferenceService) and these
functions decide what the status says, so every condition and message is tested without a cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from makeusrich.operator.objects import MODEL_VERSION_ANNOTATION
from makeusrich.pair import (
    Condition,
    CurrencyPairStatus,
    LiveStatus,
    ModelChange,
    ModelStatus,
    ServingStatus,
    TrainingStatus,
)
from makeusrich.scoring import DEGRADED_REASONS, decision, degraded_verdict
from makeusrich.store import MODEL_KINDS, Change, Latest, ModelMetadata

ConditionType = Literal["Valid", "Trained", "Serving", "Ready", "Degraded"]
ConditionStatus = Literal["True", "False", "Unknown"]
Phase = Literal["Pending", "Running", "Succeeded", "Failed"]
Verdict = tuple[ConditionStatus, str, str]  # a condition's status, reason and message
# Reasons whose first appearance is not worth an Event: they say "nothing happened yet", or (Training) repeat the
# Applied Event of the reconcile that started a new pair's first Job. A later change to them is an Event.
QUIET_REASONS = frozenset({"SpecValid", "NoModel", "NoTrackRecord", "Training"})
WARNING_REASONS = frozenset(
    {
        "InvalidSpec",
        "TrainingFailed",
        "TrainerNotApplied",
        "StoreError",
        "PinnedVersionMissing",
        "ServingNotApplied",
        *DEGRADED_REASONS.values(),
    }
)
MAX_MESSAGE = 1000


def clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


@dataclass(frozen=True)
class Problem:
    """Why something could not be done: a CamelCase reason for machines, a sentence for people."""

    reason: str
    message: str
    transient: bool = True  # worth retrying soon (an outage), not something only a person can fix


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


# --- parsing what we read back -------------------------------------------------------------------------------


def parse_status(raw: Any) -> CurrencyPairStatus | None:
    """The status as stored, or None when absent or written by something else in a shape we do not know."""
    if not isinstance(raw, Mapping) or not raw:
        return None
    try:
        return CurrencyPairStatus.model_validate(raw)
    except ValidationError:
        return None


def dump_status(status: CurrencyPairStatus) -> dict[str, Any]:
    """The status as a merge patch: None values clear fields a previous status set."""
    return status.model_dump(by_alias=True, mode="json")


# --- Jobs ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobSummary:
    """The few facts of a trainer Job the status needs, small enough to keep for every Job in memory."""

    name: str
    uid: str
    created: str
    phase: Phase
    started: str | None = None
    finished: str | None = None
    reason: str | None = None
    message: str | None = None


def _condition(conditions: Any, kind: str) -> Mapping[str, Any] | None:
    for condition in conditions or ():
        if isinstance(condition, Mapping) and condition.get("type") == kind and condition.get("status") == "True":
            return condition
    return None


def job_summary(job: Mapping[str, Any]) -> JobSummary:
    meta = job.get("metadata") or {}
    status = job.get("status") or {}
    conditions = status.get("conditions")
    failed = _condition(conditions, "Failed")
    complete = _condition(conditions, "Complete") or _condition(conditions, "SuccessCriteriaMet")
    phase: Phase
    if failed is not None:
        phase, finished = "Failed", failed.get("lastTransitionTime") or status.get("completionTime")
    elif complete is not None or ((status.get("succeeded") or 0) > 0 and status.get("completionTime")):
        phase, finished = "Succeeded", status.get("completionTime") or (complete or {}).get("lastTransitionTime")
    elif (status.get("active") or 0) > 0 or status.get("startTime"):
        phase, finished = "Running", None
    else:
        phase, finished = "Pending", None
    return JobSummary(
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        created=str(meta.get("creationTimestamp") or ""),
        phase=phase,
        started=status.get("startTime"),
        finished=finished,
        reason=(failed or {}).get("reason"),
        message=(failed or {}).get("message"),
    )


def newest_job(jobs: Iterable[JobSummary]) -> JobSummary | None:
    """The Job that speaks for the pair's training now: the last one created."""
    return max(jobs, key=lambda job: (job.created, job.name), default=None)


def job_failure_message(job: JobSummary, pods: Sequence[Mapping[str, Any]] = ()) -> str:
    """Why a Job failed, in one line: the Job's own reason (BackoffLimitExceeded, DeadlineExceeded) and, from its
    newest failed pod, the container's end (OOMKilled, exit code) and the trainer's last words, which the
    FallbackToLogsOnError policy puts into the pod's termination message."""
    text = f"training Job {job.name} failed"
    if job.reason or job.message:
        text += f" ({': '.join(p for p in (job.reason, job.message) if p)})"
    for pod in sorted(pods, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""), reverse=True):
        status, pod_name = pod.get("status") or {}, (pod.get("metadata") or {}).get("name", "?")
        for container in status.get("containerStatuses") or ():
            terminated = (container.get("state") or {}).get("terminated") or {}
            if terminated.get("exitCode", 0) != 0:
                ended = terminated.get("reason") or "Error"
                text += f"; pod {pod_name}: {ended} (exit code {terminated.get('exitCode')})"
                lines = [line.strip() for line in str(terminated.get("message") or "").splitlines() if line.strip()]
                return clip(f"{text}: {lines[-1]}" if lines else text)
        if status.get("reason"):  # evicted, deadline exceeded before the container ran
            text += f"; pod {pod_name}: {status['reason']}"
            return clip(f"{text}: {status['message']}" if status.get("message") else text)
    return clip(text)


def failures_in_a_row(jobs: Iterable[JobSummary]) -> int:
    """How many of the newest finished Jobs failed, back to the last success (a run still going counts neither
    way): what "training is failing repeatedly" means."""
    count = 0
    for job in sorted(jobs, key=lambda j: (j.created, j.name), reverse=True):
        if job.phase == "Succeeded":
            break
        count += job.phase == "Failed"
    return count


def training_status(job: JobSummary, failure: str | None = None, failures: int = 0) -> TrainingStatus:
    return TrainingStatus(
        job=job.name,
        phase=job.phase,
        started_at=job.started,
        finished_at=job.finished,
        message=failure if job.phase == "Failed" else None,
        failures=failures,
    )


# --- the model and its serving ------------------------------------------------------------------------------------


def model_metrics(metadata: ModelMetadata | None) -> dict[str, Any] | None:
    """The model's own numbers per split (not the baselines'): enough to judge it from `kubectl get -o yaml`."""
    if metadata is None:
        return None
    metrics = metadata.metrics
    found: dict[str, Any] = without_nulls(
        {"validation": metrics.validation.model.to_json(), "test": metrics.test.model.to_json()}
    )
    return found


def without_nulls(value: Any) -> Any:
    """The document without its null fields, at every depth. A merge patch deletes a key it sets to null, so a
    status holding one would differ from what the API server keeps, and be written again on every round."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


HISTORY_SHOWN = 20


def model_change(change: Change) -> ModelChange:
    return ModelChange.model_validate(
        {
            "version": change.version,
            "from": change.from_,
            "action": change.action,
            "by": change.by,
            "at": change.at,
            "reason": clip(change.reason)[:1024],
        }
    )


def model_status(
    version: str, storage_uri: str, metadata: ModelMetadata | None, latest: Latest | None = None, pinned: bool = False
) -> ModelStatus:
    """The served version, and from latest.json how it came to be served (not when a person pinned it) and the
    newest changes."""
    change = latest.change if latest is not None and latest.version == version and not pinned else None
    return ModelStatus(
        version=version,
        kind=metadata.kind if metadata else None,
        trained_at=metadata.created_at if metadata else None,
        storage_uri=storage_uri,
        skill=metadata.metrics.test.model.rel_mae if metadata else None,
        after_fees=decision.headline(metadata.metrics.test.decision, "test split")
        if metadata and metadata.metrics.test.decision
        else None,
        metrics=model_metrics(metadata),
        change=model_change(change) if change is not None else None,
        history=[model_change(c) for c in reversed(latest.changes[-HISTORY_SHOWN:])] if latest else [],
    )


@dataclass(frozen=True)
class ServingObservation:
    status: ServingStatus
    message: str | None = None


def serving_observation(isvc: Mapping[str, Any] | None) -> ServingObservation | None:
    """What the InferenceService reports: the version it was given, its URL, and whether KServe says it is Ready
    for its current generation (a Ready left over from the previous version does not count)."""
    if not isvc:
        return None
    meta = isvc.get("metadata") or {}
    status = isvc.get("status") or {}
    ready_condition = next(
        (c for c in status.get("conditions") or () if isinstance(c, Mapping) and c.get("type") == "Ready"), None
    )
    generation, observed = meta.get("generation"), status.get("observedGeneration")
    current = generation is None or observed is None or observed >= generation
    ready = bool(ready_condition and ready_condition.get("status") == "True" and current)
    url = status.get("url") or (status.get("address") or {}).get("url")
    message = None
    if ready_condition and not ready:
        message = ready_condition.get("message") or ready_condition.get("reason")
    version = (meta.get("annotations") or {}).get(MODEL_VERSION_ANNOTATION)
    return ServingObservation(ServingStatus(version=version, url=url, ready=ready), message)


# --- conditions -----------------------------------------------------------------------------------------------------


def find_condition(conditions: Iterable[Condition], kind: str) -> Condition | None:
    return next((c for c in conditions if c.type == kind), None)


def make_condition(
    previous: Sequence[Condition], kind: ConditionType, status: ConditionStatus, reason: str, message: str, now: str
) -> Condition:
    """A condition whose lastTransitionTime moves only when its status does (the Kubernetes convention)."""
    old = find_condition(previous, kind)
    since = old.last_transition_time if old is not None and old.status == status else now
    return Condition(type=kind, status=status, reason=reason, message=clip(message), last_transition_time=since)


@dataclass(frozen=True)
class Observed:
    """Everything one reconcile learned about a pair; None means 'not known', never 'absent' unless stated."""

    generation: int | None = None
    symbol: str | None = None
    invalid: str | None = None
    schedule: str = ""
    suspended: bool = False
    pinned: str | None = None
    trainer_problem: Problem | None = None
    training: TrainingStatus | None = None
    model: ModelStatus | None = None
    model_problem: Problem | None = None
    serving: ServingObservation | None = None
    serving_problem: Problem | None = None
    isvc_name: str = ""
    live: LiveStatus | None = None


def _describe_model(model: ModelStatus) -> str:
    skill = f" (test MAE {model.skill:.4f} of persistence's)" if model.skill is not None else ""
    kind = f"the {MODEL_KINDS[model.kind]}, " if model.kind else ""
    return f"{kind}version {model.version}{skill}"


def _trained(observed: Observed) -> Verdict:
    job, model = observed.training, observed.model
    if observed.trainer_problem:
        return "False", observed.trainer_problem.reason, observed.trainer_problem.message
    if job is not None and job.phase == "Failed":
        keeps = f"; still serving version {model.version}" if model else "; no model is served yet"
        return "False", "TrainingFailed", (job.message or f"training Job {job.job} failed") + keeps
    if model is not None:
        text = f"{_describe_model(model)} is {'pinned' if observed.pinned else 'promoted'}"
        if observed.model_problem is not None:  # the store is down: say so, but the model is still known
            text += f"; newer versions are not seen now: {observed.model_problem.message}"
        return "True", ("Pinned" if observed.pinned else "Promoted"), text
    if observed.model_problem:
        problem = observed.model_problem
        return ("Unknown" if problem.reason == "StoreError" else "False"), problem.reason, problem.message
    if job is not None and job.phase in ("Pending", "Running"):
        return "False", "Training", f"training Job {job.job} is {job.phase.lower()}"
    if job is not None and job.phase == "Succeeded":
        text = (
            f"training Job {job.job} succeeded but promoted no model: it did not pass the gates on its test hours "
            "(see the version's metadata.json); the next scheduled run tries again"
        )
        return "False", "NotPromoted", text
    if observed.suspended:
        return "False", "NoModel", "no model promoted yet, and training is suspended (spec.suspend)"
    return "False", "NoModel", f"no model promoted yet; training runs on the schedule {observed.schedule!r}"


def _serving(observed: Observed) -> Verdict:
    model, seen = observed.model, observed.serving
    if observed.serving_problem:
        return "False", observed.serving_problem.reason, observed.serving_problem.message
    if model is None:
        problem = observed.model_problem
        if problem and problem.reason == "PinnedVersionMissing":
            return "False", problem.reason, problem.message
        return "False", "NoModel", "waiting for a promoted model"
    if seen is None:
        text = f"InferenceService {observed.isvc_name} is set to version {model.version}; waiting for KServe"
        return "False", "Deploying", text
    if seen.status.ready:
        where = f" at {seen.status.url}" if seen.status.url else ""
        if seen.status.version == model.version:
            return "True", "Ready", f"serving version {model.version}{where}"
        text = f"serving version {seen.status.version}{where} while version {model.version} rolls out"
        return "True", "RollingOut", text
    text = f"InferenceService {observed.isvc_name} is not ready for version {model.version}"
    return "False", "Deploying", (f"{text}: {seen.message}" if seen.message else text)


def compute_status(previous: CurrencyPairStatus | None, observed: Observed, now: str) -> CurrencyPairStatus:
    """The whole status for what was observed. Fields not observed this time keep their previous value, so a
    store outage or a Job removed by its history limit does not erase what the pair last knew."""
    before = previous or CurrencyPairStatus()
    old = before.conditions
    if observed.invalid is not None:
        valid = make_condition(old, "Valid", "False", "InvalidSpec", observed.invalid, now)
        kept = [
            find_condition(old, kind)
            or make_condition(old, kind, "Unknown", "InvalidSpec", "not reconciled while the spec is invalid", now)
            for kind in ("Trained", "Serving")
        ]
        ready = make_condition(old, "Ready", "False", "InvalidSpec", observed.invalid, now)
        return before.model_copy(
            update={"observed_generation": observed.generation, "conditions": [valid, *kept, ready]}
        )
    valid = make_condition(old, "Valid", "True", "SpecValid", "the spec is valid", now)
    trained = make_condition(old, "Trained", *_trained(observed), now)
    serving = make_condition(old, "Serving", *_serving(observed), now)
    if serving.status == "True":
        ready = make_condition(old, "Ready", "True", "Ready", serving.message, now)
    else:
        ready = make_condition(old, "Ready", "False", serving.reason, serving.message, now)
    live = observed.live or before.live
    degraded = make_condition(old, "Degraded", *degraded_verdict(live), now)
    return CurrencyPairStatus(
        observed_generation=observed.generation,
        symbol=observed.symbol,
        conditions=[valid, trained, serving, ready, degraded],
        model=observed.model or before.model,
        serving=observed.serving.status if observed.serving else before.serving,
        last_training=observed.training or before.last_training,
        live=live,
    )


def status_events(previous: CurrencyPairStatus | None, new: CurrencyPairStatus) -> list[Event]:
    """One Event per condition that changed (status or reason), and one per change of the served version."""
    events: list[Event] = []
    old = previous.conditions if previous else []
    for condition in new.conditions:
        if condition.type == "Ready":
            continue  # derived from Serving and Valid; its Event would repeat theirs
        before = find_condition(old, condition.type)
        if before is not None and (before.status, before.reason) == (condition.status, condition.reason):
            continue
        if before is None and condition.reason in QUIET_REASONS:
            continue
        if condition.status == "Unknown" and condition.reason == "InvalidSpec":
            continue  # a placeholder next to Valid=False, which has its own Event
        kind: Literal["Normal", "Warning"] = "Warning" if condition.reason in WARNING_REASONS else "Normal"
        events.append(Event(kind, condition.reason, f"{condition.type}: {condition.message}"))
    old_version = previous.model.version if previous and previous.model else None
    new_version = new.model.version if new.model else None
    if new_version and new_version != old_version:
        what = f"version {old_version} -> {new_version}" if old_version else f"version {new_version}"
        events.append(Event("Normal", "ModelChanged", f"the InferenceService now gets {what}"))
        change = new.model.change if new.model else None
        if change is not None and change.action == "rolled-back":
            text = f"version {change.from_} rolled back to {change.version} by {change.by}: {change.reason}"
            events.append(Event("Warning", "RolledBack", clip(text)))
    return events
