"""A pair's children, as the operator sees and makes them: the trainer CronJob, its Jobs (the first one, and one
when the live record turns Degraded) and the InferenceService.

Children are read from the informers' in-memory indices of the watched objects (makeusrich.operator.informer),
not fetched: a reconcile that finds everything in place makes no API request at all. Until the watch brings back
what we wrote, our own write's answer stands in for it, so a second reconcile does not create or patch the same
object again. Writes are idempotent (fixed names, merge patches).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from makeusrich.errors import KubeAlreadyExists, KubeError, KubeNotFound
from makeusrich.kube import CRONJOBS, ISVCS, JOBS, PODS, KubeClient, Ref, transient
from makeusrich.operator import status as st
from makeusrich.operator.objects import cronjob, degraded_job_name, inference_service, initial_job, is_subset
from makeusrich.operator.settings import OperatorSettings
from makeusrich.pair import CurrencyPair, CurrencyPairStatus, ModelStatus, TrainingStatus
from makeusrich.scoring import RANGES_TOO_NARROW

log = logging.getLogger("makeusrich.operator")

PairKey = tuple[str, str]  # (namespace, pair name), the key of every index
Index = Mapping[PairKey, Iterable[Any]]


def packed(body: Mapping[str, Any]) -> bytes:
    """An object as compact JSON: what the indices and the cache of our writes keep. At 10,000 pairs the dicts of
    every pair, CronJob and InferenceService took most of the operator's memory (bench/results/operator.md);
    their JSON is several times smaller, and is decoded only for a pair being reconciled. The API server's
    managedFields (often the largest part of an object, and read by nothing here) are left out."""
    meta = body.get("metadata")
    if isinstance(meta, Mapping) and "managedFields" in meta:
        body = {**body, "metadata": {key: value for key, value in meta.items() if key != "managedFields"}}
    return json.dumps(body, separators=(",", ":")).encode()


def unpacked(item: bytes | Mapping[str, Any]) -> dict[str, Any]:
    """An index's item as a plain dict of its own."""
    if isinstance(item, bytes):
        found: dict[str, Any] = json.loads(item)
        return found
    return dict(item)


def first_in(index: Index, key: PairKey, name: str | None = None) -> dict[str, Any] | None:
    """The first object an index holds for a pair (the one named `name`, if given), as a plain dict."""
    for item in index.get(key, ()):
        found = unpacked(item)
        if name is None or (found.get("metadata") or {}).get("name") == name:
            return found
    return None


def caught_up(seen: Mapping[str, Any], written: Mapping[str, Any]) -> bool:
    """The watch's copy is as fresh as our write's answer, by resourceVersion (numeric on every real API server)."""
    rv_seen, rv_written = (str((o.get("metadata") or {}).get("resourceVersion", "")) for o in (seen, written))
    return not (rv_seen.isdigit() and rv_written.isdigit()) or int(rv_seen) >= int(rv_written)


class Children:
    """The children of every pair: the informers' indices of them (bound at startup), our writes the watch has not
    brought back yet, the Jobs we started that the index does not hold yet, and why failed Jobs failed."""

    def __init__(self, settings: OperatorSettings, api: KubeClient) -> None:
        self.settings = settings
        self.api = api
        self.bind({}, {}, {})  # the informers' indices come at startup
        self._recent: dict[tuple[str, str, str], bytes] = {}  # what the API returned for our writes (packed)
        self._written: dict[tuple[str, str, str], str] = {}  # the resourceVersion of our last write of each child
        self._started: dict[str, st.JobSummary] = {}  # pair uid -> the Job we started, until the index has it
        self._starting: dict[str, str] = {}  # pair uid -> the Job being created (its create not answered yet)
        self._failures: dict[str, str] = {}  # job uid -> why it failed

    def bind(self, cronjobs: Index, jobs: Index, isvcs: Index) -> None:
        """The informers' live indices (the same objects stay current as events arrive)."""
        self.cronjobs, self.jobs, self.isvcs = cronjobs, jobs, isvcs

    def observed(self, index: Index, kind: str, namespace: str, pair: str, name: str) -> dict[str, Any] | None:
        """A child as last seen: the watch's copy, or our own write's answer while the watch has not caught up."""
        seen = first_in(index, (namespace, pair), name)
        recent = self._recent.get((kind, namespace, name))
        if recent is None:
            return seen
        written = unpacked(recent)
        if seen is not None and caught_up(seen, written):
            del self._recent[(kind, namespace, name)]
            return seen
        return written

    def deleted(self, kind: str, namespace: str, name: str) -> None:
        self._recent.pop((kind, namespace, name), None)
        self._written.pop((kind, namespace, name), None)

    def own_write(self, kind: str, namespace: str, name: str, resource_version: str | None) -> bool:
        """Whether a watch event brings back our own last write of the child, which was what its pair wanted
        then (a later change of the pair reconciles it through the pair's own event): nothing to compare."""
        return resource_version is not None and self._written.get((kind, namespace, name)) == resource_version

    def started_as(self, uid: str, job: st.JobSummary) -> bool:
        """Whether `job` is the Job we started for the pair `uid`, in the phase it was started in: its watch event
        often arrives before the reconcile that started it has written the status, even before its create is
        answered."""
        started = self._started.get(uid)
        if started is not None and started.uid == job.uid and started.phase == job.phase:
            return True
        return self._starting.get(uid) == job.name and job.phase == "Pending"

    def forget(self, uid: str, namespace: str, name: str) -> None:
        """Drop what we remember of a deleted pair's children (Kubernetes' garbage collector removes them)."""
        self._started.pop(uid, None)
        for key in [k for k in self._recent if k[1] == namespace and k[2] in (name, f"{name}-trainer")]:
            del self._recent[key]
        for key in [k for k in self._written if k[1] == namespace and k[2] in (name, f"{name}-trainer")]:
            del self._written[key]

    async def apply(
        self, ref: Ref, kind: str, desired: dict[str, Any], observed: dict[str, Any] | None, actions: list[str]
    ) -> dict[str, Any]:
        """Create the object, or patch it when a field we set differs (someone edited it, or the spec changed)."""
        namespace, name = desired["metadata"]["namespace"], desired["metadata"]["name"]
        result: dict[str, Any] | None = None
        if observed is None:
            try:
                result = await self.api.create(ref, namespace, desired)
                actions.append(f"created {ref.kind} {name}")
            except KubeAlreadyExists:  # made by an earlier attempt whose answer was lost, or not yet in the index
                observed = await self.api.get(ref, namespace, name)
        if result is None and observed is not None and is_subset(desired, observed):
            result = observed
        if result is None:
            try:
                result = await self.api.patch(ref, namespace, name, desired)
                actions.append(f"updated {ref.kind} {name}")
            except KubeNotFound:
                result = await self.api.create(ref, namespace, desired)
                actions.append(f"created {ref.kind} {name}")
        self._recent[(kind, namespace, name)] = packed(result)
        version = (result.get("metadata") or {}).get("resourceVersion")
        if version:
            self._written[(kind, namespace, name)] = version
        return result

    async def apply_trainer(
        self, pair: CurrencyPair, uid: str, previous: CurrencyPairStatus | None, actions: list[str]
    ) -> st.Problem | None:
        """The trainer CronJob, and the first Job when it is due."""
        desired = cronjob(pair, self.settings, uid)
        name = desired["metadata"]["name"]
        observed = self.observed(self.cronjobs, "cronjob", pair.namespace, pair.name, name)
        try:
            await self.apply(CRONJOBS, "cronjob", desired, observed, actions)
            if self._first_job_due(pair, uid, previous):
                job = initial_job(pair, self.settings, uid)
                try:
                    self._starting[uid] = job["metadata"]["name"]
                    made = await self.api.create(JOBS, pair.namespace, job)
                    self._started[uid] = st.job_summary(made)
                    actions.append(f"started Job {job['metadata']['name']}")
                except KubeAlreadyExists:
                    pass  # a replayed create event: the first Job is already there
                finally:
                    self._starting.pop(uid, None)
        except KubeError as exc:
            log.warning("%s/%s: cannot apply the trainer: %s", pair.namespace, pair.name, exc)
            text = f"cannot create or update the trainer CronJob {name}: {exc}"
            return st.Problem("TrainerNotApplied", text, transient(exc))
        return None

    def _first_job_due(self, pair: CurrencyPair, uid: str, previous: CurrencyPairStatus | None) -> bool:
        """The first Job is due while the pair has never trained and has no model: right after creation, but
        also when a pair created with an invalid spec becomes valid. Its fixed name makes a repeat a 409."""
        if not pair.spec.train_on_create or pair.spec.suspend or uid in self._started:
            return False
        if previous is not None and (previous.last_training is not None or previous.model is not None):
            return False
        return not any(True for _ in self.jobs.get((pair.namespace, pair.name), ()))

    def trainer_changed(self, namespace: str, pair: str, spec: CurrencyPair, uid: str | None) -> bool:
        """Whether the CronJob the index holds differs from what the pair wants (or is missing)."""
        desired = cronjob(spec, self.settings, uid)
        observed = first_in(self.cronjobs, (namespace, pair), desired["metadata"]["name"])
        return observed is None or not is_subset(desired, observed)

    async def apply_serving(
        self, pair: CurrencyPair, uid: str, model: ModelStatus | None, actions: list[str]
    ) -> tuple[dict[str, Any] | None, st.Problem | None]:
        """The InferenceService of the model to serve (none before a model): as it stands, and any problem."""
        isvc = self.observed(self.isvcs, "isvc", pair.namespace, pair.name, pair.name)
        if model is None or not model.storage_uri or not model.version:
            return isvc, None
        desired = inference_service(pair, self.settings, model.storage_uri, model.version, uid)
        try:
            return await self.apply(ISVCS, "isvc", desired, isvc, actions), None
        except KubeError as exc:
            return isvc, st.Problem("ServingNotApplied", isvc_error(pair.name, exc), transient(exc))

    async def training(
        self, pair: CurrencyPair, uid: str, previous: CurrencyPairStatus | None
    ) -> TrainingStatus | None:
        """The newest trainer Job's phase, why it failed when it did, and how many runs failed in a row."""
        jobs: list[st.JobSummary] = list(self.jobs.get((pair.namespace, pair.name), ()))
        started = self._started.get(uid)
        if started is not None:
            if any(job.uid == started.uid for job in jobs):
                del self._started[uid]
            else:
                jobs.append(started)
        job = st.newest_job(jobs)
        if job is None:
            return None
        failure = await self._failure(pair.namespace, job, previous) if job.phase == "Failed" else None
        return st.training_status(job, failure, st.failures_in_a_row(jobs))

    async def _failure(self, namespace: str, job: st.JobSummary, previous: CurrencyPairStatus | None) -> str:
        """Why a Job failed, read from its pods once (the pods may be gone later; the status keeps the words)."""
        if job.uid in self._failures:
            return self._failures[job.uid]
        last = previous.last_training if previous else None
        if last is not None and last.job == job.name and last.phase == "Failed" and last.message:
            self._failures[job.uid] = last.message
            return last.message
        try:
            pods = await self.api.list(PODS, namespace, {"job-name": job.name})
        except KubeError as exc:
            log.warning("cannot read the pods of Job %s/%s: %s", namespace, job.name, exc)
            return st.job_failure_message(job)  # not cached: the pods may be readable next time
        message = st.job_failure_message(job, pods)
        self._failures[job.uid] = message
        while len(self._failures) > 10_000:
            self._failures.pop(next(iter(self._failures)))
        return message

    async def retrain_if_degraded(
        self,
        pair: CurrencyPair,
        uid: str,
        previous: CurrencyPairStatus | None,
        new: CurrencyPairStatus,
        actions: list[str],
    ) -> None:
        """With spec.promotion.retrainWhenDegraded, a training Job at the moment the pair turns Degraded; one that
        first recalibrates the served LSTM's margins when its ranges turned too narrow."""
        if not pair.spec.promotion.retrain_when_degraded or pair.spec.suspend:
            return
        now = st.find_condition(new.conditions, "Degraded")
        before = st.find_condition(previous.conditions if previous else [], "Degraded")
        if now is None or now.status != "True" or (before is not None and before.status == "True"):
            return
        name = degraded_job_name(pair, now.last_transition_time)
        narrow = now.reason == RANGES_TOO_NARROW
        try:
            job = initial_job(pair, self.settings, uid, name=name, recalibrate_first=narrow)
            made = await self.api.create(JOBS, pair.namespace, job)
            self._started[uid] = st.job_summary(made)
            actions.append(f"started Job {name}: the live track record is degraded")
        except KubeAlreadyExists:
            pass  # this reconcile repeats one that started it
        except KubeError as exc:
            log.warning("%s/%s: cannot start the retraining Job %s: %s", pair.namespace, pair.name, name, exc)


def isvc_error(name: str, exc: KubeError) -> str:
    if isinstance(exc, KubeNotFound) and exc.method == "POST":
        return (
            f"cannot create InferenceService {name}: the API has no inferenceservices.serving.kserve.io "
            "(is KServe installed?) or the namespace is gone"
        )
    return f"cannot create or update InferenceService {name}: {exc}"
