"""One level-based reconcile of a CurrencyPair: make the children match the spec and the status match the world.

Every trigger (the pair created, changed or resumed, a trainer Job that moved, the InferenceService that became
ready, the periodic timer) runs the same `Reconciler.reconcile`, so a missed event only delays the next one.
Children are read from kopf's in-memory indices of the watched objects, not fetched: a reconcile that finds
everything in place makes no API request at all. Writes are idempotent (fixed names, merge patches), and one
lock per pair keeps concurrent triggers from interleaving.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlparse

from makeusrich.contract import iso_z
from makeusrich.errors import (
    KubeAlreadyExists,
    KubeError,
    KubeNotFound,
    MakeUsRichError,
    NotFoundError,
    PairError,
    RetryLater,
)
from makeusrich.kube import CRONJOBS, ISVCS, JOBS, PAIRS, PODS, KubeClient, Ref
from makeusrich.operator import status as st
from makeusrich.operator.objects import cronjob, degraded_job_name, inference_service, initial_job, is_subset
from makeusrich.operator.settings import OperatorSettings
from makeusrich.pair import (
    CurrencyPair,
    CurrencyPairStatus,
    LiveStatus,
    ModelStatus,
    TrainingStatus,
    pair_from_resource,
)
from makeusrich.scoring.live import live_status
from makeusrich.store import Latest, ModelMetadata, ObjectStore, StoreReader, TrackFiles, TrackSummary, open_store

log = logging.getLogger("makeusrich.operator")

T = TypeVar("T")
PairKey = tuple[str, str]  # (namespace, pair name), the key of every index
Index = Mapping[PairKey, Iterable[Any]]
EventSink = Callable[[Mapping[str, Any], st.Event], None]


def transient(exc: KubeError) -> bool:
    """Unreachable, throttled, conflicting or a server error: likely to pass. 403, 404, 422: not by waiting."""
    return exc.status in (0, 409, 429) or exc.status >= 500


def plain(body: Mapping[str, Any]) -> dict[str, Any]:
    """A private deep copy of a kopf body (kopf's views change under us as new events arrive)."""
    return copy.deepcopy(dict(body))


def _first(index: Index, key: PairKey, name: str | None = None) -> dict[str, Any] | None:
    for item in index.get(key, ()):
        if name is None or (item.get("metadata") or {}).get("name") == name:
            return dict(item)
    return None


def _caught_up(seen: Mapping[str, Any], written: Mapping[str, Any]) -> bool:
    """The watch's copy is as fresh as our write's answer, by resourceVersion (numeric on every real API server)."""
    rv_seen, rv_written = (str((o.get("metadata") or {}).get("resourceVersion", "")) for o in (seen, written))
    return not (rv_seen.isdigit() and rv_written.isdigit()) or int(rv_seen) >= int(rv_written)


def open_for_reading(url: str) -> ObjectStore:
    """The store as the operator needs it: it only reads, so it never creates a missing bucket (a typo in the
    bucket name shows as a StoreError condition instead of an empty new bucket)."""
    if urlparse(url).scheme == "s3":
        from makeusrich.store.s3 import S3Store

        return S3Store.from_url(url, create_bucket=False)
    return open_store(url)


class StoreAccess:
    """The model store as the operator reads it: the shared StoreReader (one client, metadata read once per
    version), read-only, its blocking calls on a few threads of the operator's own."""

    def __init__(self, url: str, workers: int = 4, opener: Callable[[str], ObjectStore] = open_for_reading) -> None:
        self.url = url
        self.reader = StoreReader(url, opener=opener)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="store")
        self.reads = 0

    async def _run(self, fn: Callable[[], T]) -> T:
        self.reads += 1
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def latest(self, namespace: str, name: str) -> Latest | None:
        return await self._run(lambda: self.reader.pair_store(namespace, name).latest())

    async def metadata(self, namespace: str, name: str, version: str) -> ModelMetadata:
        cached = self.reader.cached(namespace, name, version)  # no thread hop for what was read before
        return cached if cached is not None else await self._run(lambda: self.reader.metadata(namespace, name, version))

    async def described(self, namespace: str, name: str, version: str) -> ModelMetadata | None:
        """A version's metadata, or None (with a warning) when it is unreadable or malformed: the version is
        served anyway, because latest.json is written only after the server's own checks can pass.
        NotFoundError when the version is not in the store."""
        try:
            return await self.metadata(namespace, name, version)
        except NotFoundError:
            raise
        except MakeUsRichError as exc:
            log.warning("%s/%s: metadata of %s unreadable: %s", namespace, name, version, exc)
            return None

    async def track_summary(self, namespace: str, name: str) -> TrackSummary | None:
        return await self._run(lambda: TrackFiles(self.reader.pair_store(namespace, name)).read_summary())

    async def storage_uri(self, namespace: str, name: str, version: str) -> str:
        return await self._run(lambda: self.reader.pair_store(namespace, name).storage_uri(version))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class Reconciler:
    """The operator's state between events: indices (bound at startup), per-pair locks and small caches."""

    def __init__(self, settings: OperatorSettings, api: KubeClient, store: StoreAccess, events: EventSink) -> None:
        self.settings = settings
        self.api = api
        self.store = store
        self.events = events
        self.bind({}, {}, {}, {})  # kopf's indices come at startup
        self._locks: dict[str, asyncio.Lock] = {}
        self._written: dict[str, CurrencyPairStatus] = {}  # uid -> the status we wrote last
        self._models: dict[str, tuple[str | None, ModelStatus | None]] = {}  # uid -> (pin, model) last read
        self._recent: dict[tuple[str, str, str], dict[str, Any]] = {}  # what the API returned for our writes
        self._started: dict[str, st.JobSummary] = {}  # uid -> first Job, until the index has it
        self._failures: dict[str, str] = {}  # job uid -> why it failed
        self.reconciles = 0
        self.rounds = 0

    def bind(self, pairs: Index, cronjobs: Index, jobs: Index, isvcs: Index) -> None:
        """kopf's live indices (the same objects stay current as events arrive)."""
        self.pairs, self.cronjobs, self.jobs, self.isvcs = pairs, cronjobs, jobs, isvcs

    def _observed(self, index: Index, kind: str, namespace: str, pair: str, name: str) -> dict[str, Any] | None:
        """A child as last seen: the watch's copy, or our own write's answer while the watch has not caught up
        (then a second reconcile does not create or patch it again)."""
        seen = _first(index, (namespace, pair), name)
        written = self._recent.get((kind, namespace, name))
        if written is None:
            return seen
        if seen is not None and _caught_up(seen, written):
            del self._recent[(kind, namespace, name)]
            return seen
        return dict(written)

    def _known(self, body: Mapping[str, Any]) -> CurrencyPairStatus | None:
        """The status we wrote last, else the one the pair carries."""
        return self._written.get((body.get("metadata") or {}).get("uid", "")) or st.parse_status(body.get("status"))

    def child_deleted(self, kind: str, namespace: str, name: str) -> None:
        self._recent.pop((kind, namespace, name), None)

    def pair_body(self, namespace: str, name: str) -> dict[str, Any] | None:
        return _first(self.pairs, (namespace, name))

    def forget(self, body: Mapping[str, Any]) -> None:
        """Drop what we remember of a deleted pair. Its children go with Kubernetes' garbage collector; its
        stored models stay where they are."""
        meta = body.get("metadata") or {}
        uid, namespace, name = meta.get("uid", ""), meta.get("namespace", ""), meta.get("name", "")
        for cache in (self._locks, self._written, self._models, self._started):
            cache.pop(uid, None)
        for key in [k for k in self._recent if k[1] == namespace and k[2] in (name, f"{name}-trainer")]:
            del self._recent[key]

    async def reconcile(self, body: Mapping[str, Any], *, read_store: bool) -> CurrencyPairStatus | None:
        """Bring one pair's children and status up to date; RetryLater when some part must be tried again."""
        meta = body.get("metadata") or {}
        uid = meta.get("uid")
        if not uid or not meta.get("name") or not meta.get("namespace") or meta.get("deletionTimestamp"):
            return None
        async with self._locks.setdefault(uid, asyncio.Lock()):
            self.reconciles += 1
            return await self._reconcile(plain(body), uid, read_store)

    async def _reconcile(self, body: dict[str, Any], uid: str, read_store: bool) -> CurrencyPairStatus:
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        previous = self._known(body)
        now = iso_z()
        generation = meta.get("generation")
        try:
            pair = pair_from_resource(body)
        except PairError as exc:
            new = st.compute_status(previous, st.Observed(generation=generation, invalid=str(exc)), now)
            await self._write_status(body, uid, previous, new)
            return new

        actions: list[str] = []
        trainer_problem = await self._apply_trainer(pair, uid, previous, actions)
        training = await self._training(pair, uid, previous)
        model, model_problem = await self._model(pair, uid, previous, read_store)
        serving_problem = None
        isvc = self._observed(self.isvcs, "isvc", namespace, name, name)
        if model is not None and model.storage_uri and model.version:
            desired = inference_service(pair, self.settings, model.storage_uri, model.version, uid)
            try:
                isvc = await self._apply(ISVCS, "isvc", desired, isvc, actions)
            except KubeError as exc:
                serving_problem = st.Problem("ServingNotApplied", self._isvc_error(name, exc), transient(exc))
        observed = st.Observed(
            generation=generation,
            symbol=pair.spec.symbol,
            schedule=pair.spec.schedule,
            suspended=pair.spec.suspend,
            pinned=pair.spec.serving.pinned_version,
            trainer_problem=trainer_problem,
            training=training,
            model=model,
            model_problem=model_problem,
            serving=st.serving_observation(isvc),
            serving_problem=serving_problem,
            isvc_name=name,
            live=await self._live(pair) if read_store else None,
        )
        new = st.compute_status(previous, observed, now)
        await self._retrain_if_degraded(pair, uid, previous, new, actions)
        await self._write_status(body, uid, previous, new)
        if actions:
            log.info("%s/%s: %s", namespace, name, "; ".join(actions))
            self.events(body, st.Event("Normal", "Applied", "; ".join(actions)))
        # Outages are retried soon (kopf's handler retry); what needs a person (KServe missing, RBAC, a pinned
        # version that does not exist) waits for the periodic reconcile instead of spinning.
        problems = [p for p in (trainer_problem, serving_problem, model_problem) if p is not None and p.transient]
        if problems:
            raise RetryLater("; ".join(p.message for p in problems))
        return new

    async def _apply(
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
        self._recent[(kind, namespace, name)] = result
        return result

    async def _apply_trainer(
        self, pair: CurrencyPair, uid: str, previous: CurrencyPairStatus | None, actions: list[str]
    ) -> st.Problem | None:
        desired = cronjob(pair, self.settings, uid)
        name = desired["metadata"]["name"]
        observed = self._observed(self.cronjobs, "cronjob", pair.namespace, pair.name, name)
        try:
            await self._apply(CRONJOBS, "cronjob", desired, observed, actions)
            if self._first_job_due(pair, uid, previous):
                job = initial_job(pair, self.settings, uid)
                try:
                    made = await self.api.create(JOBS, pair.namespace, job)
                    self._started[uid] = st.job_summary(made)
                    actions.append(f"started Job {job['metadata']['name']}")
                except KubeAlreadyExists:
                    pass  # a replayed create event: the first Job is already there
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

    async def _training(
        self, pair: CurrencyPair, uid: str, previous: CurrencyPairStatus | None
    ) -> TrainingStatus | None:
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
        return st.training_status(job, failure)

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

    async def _model(
        self, pair: CurrencyPair, uid: str, previous: CurrencyPairStatus | None, read_store: bool
    ) -> tuple[ModelStatus | None, st.Problem | None]:
        """The model to serve: the pinned version if any, else the one latest.json names."""
        pin = pair.spec.serving.pinned_version
        known = previous.model if previous is not None else None
        if not read_store:
            if uid in self._models and self._models[uid][0] == pin:
                return self._models[uid][1], None
            if known is not None and known.version and (pin is None or known.version == pin):
                return known, None
        namespace, name = pair.namespace, pair.name
        try:
            version = pin
            if version is None:
                latest = await self.store.latest(namespace, name)
                version = latest.version if latest is not None else None
            model = None
            if version is not None:
                try:
                    meta = await self.store.described(namespace, name, version)
                except NotFoundError:
                    if pin is None:
                        raise  # latest.json names a version that is gone: a store error
                    served = f"; the InferenceService keeps version {known.version}" if known else ""
                    text = f"pinned version {pin} is not in the store {self.store.url}{served}"
                    return None, st.Problem("PinnedVersionMissing", text, transient=False)
                # Where the version is now, in the store the operator reads: a copied or moved store keeps the
                # storageUri it was written with in latest.json.
                model = st.model_status(version, await self.store.storage_uri(namespace, name, version), meta)
        except Exception as exc:  # any store failure must end in a condition, never in a crashed handler
            log.warning("%s/%s: cannot read the store: %s", namespace, name, exc)
            text = f"cannot read the model store {self.store.url}: {exc}"
            keep = known if known is not None and (pin is None or known.version == pin) else None
            return keep, st.Problem("StoreError", text)
        self._models[uid] = (pin, model)
        return model, None

    async def _live(self, pair: CurrencyPair) -> LiveStatus | None:
        """The pair's track.json as the status carries it; None (the status keeps what it had) when there is
        none yet or it cannot be read now."""
        try:
            summary = await self.store.track_summary(pair.namespace, pair.name)
        except Exception as exc:  # a damaged or unreachable track.json must not stop the reconcile
            log.warning("%s/%s: cannot read track.json: %s", pair.namespace, pair.name, exc)
            return None
        return live_status(summary) if summary is not None else None

    async def _retrain_if_degraded(
        self,
        pair: CurrencyPair,
        uid: str,
        previous: CurrencyPairStatus | None,
        new: CurrencyPairStatus,
        actions: list[str],
    ) -> None:
        """With spec.promotion.retrainWhenDegraded, a training Job at the moment the pair turns Degraded."""
        if not pair.spec.promotion.retrain_when_degraded or pair.spec.suspend:
            return
        now = st.find_condition(new.conditions, "Degraded")
        before = st.find_condition(previous.conditions if previous else [], "Degraded")
        if now is None or now.status != "True" or (before is not None and before.status == "True"):
            return
        name = degraded_job_name(pair, now.last_transition_time)
        try:
            made = await self.api.create(JOBS, pair.namespace, initial_job(pair, self.settings, uid, name=name))
            self._started[uid] = st.job_summary(made)
            actions.append(f"started Job {name}: the live track record is degraded")
        except KubeAlreadyExists:
            pass  # this reconcile repeats one that started it
        except KubeError as exc:
            log.warning("%s/%s: cannot start the retraining Job %s: %s", pair.namespace, pair.name, name, exc)

    def _isvc_error(self, name: str, exc: KubeError) -> str:
        if isinstance(exc, KubeNotFound) and exc.method == "POST":
            return (
                f"cannot create InferenceService {name}: the API has no inferenceservices.serving.kserve.io "
                "(is KServe installed?) or the namespace is gone"
            )
        return f"cannot create or update InferenceService {name}: {exc}"

    async def _write_status(
        self, body: Mapping[str, Any], uid: str, previous: CurrencyPairStatus | None, new: CurrencyPairStatus
    ) -> None:
        meta = body["metadata"]
        if previous is None or st.dump_status(previous) != st.dump_status(new):
            try:
                await self.api.patch(PAIRS, meta["namespace"], meta["name"], {"status": st.dump_status(new)}, "status")
            except KubeNotFound:
                return  # deleted meanwhile
            except KubeError as exc:
                raise RetryLater(f"cannot write the status: {exc}") from exc
        self._written[uid] = new
        for event in st.status_events(previous, new):
            level = logging.WARNING if event.type == "Warning" else logging.INFO
            log.log(level, "%s/%s: %s: %s", meta["namespace"], meta["name"], event.reason, event.message)
            self.events(body, event)

    async def periodic(self, interval: float, concurrency: int = 8) -> None:
        """Reconcile every known pair each `interval` seconds, reading the store: the level-based safety net
        for events that were missed (a new latest.json has no event at all)."""
        semaphore = asyncio.Semaphore(concurrency)
        loop = asyncio.get_running_loop()

        async def one(body: Mapping[str, Any]) -> None:
            async with semaphore:
                meta = body.get("metadata") or {}
                try:
                    await self.reconcile(body, read_store=True)
                except RetryLater as exc:
                    log.warning("%s/%s: %s (retrying next round)", meta.get("namespace"), meta.get("name"), exc)
                except Exception:  # one pair's bug must not stop the others' reconciles
                    log.exception("%s/%s: periodic reconcile failed", meta.get("namespace"), meta.get("name"))

        while True:
            started = loop.time()
            await asyncio.sleep(interval)
            bodies = [dict(item) for items in list(self.pairs.values()) for item in items]
            await asyncio.gather(*(one(body) for body in bodies))
            self.rounds += 1
            log.debug("periodic reconcile of %d pairs took %.2f s", len(bodies), loop.time() - started - interval)

    # --- triggers from children ---------------------------------------------------------------------------------

    def job_needs_reconcile(self, namespace: str, pair: str, job: st.JobSummary) -> tuple[bool, bool]:
        """(reconcile?, read the store?) for a Job event: only when the Job's phase is news to the status."""
        body = self.pair_body(namespace, pair)
        if body is None:
            return False, False
        known = self._known(body)
        last = known.last_training if known else None
        if last is not None and last.job == job.name and last.phase == job.phase:
            return False, False
        if last is not None and last.job and last.job != job.name:
            newest = st.newest_job(self.jobs.get((namespace, pair), ()))
            if newest is not None and newest.uid != job.uid:
                return False, False  # an older Job changed; the status speaks for the newest
        return True, job.phase == "Succeeded"

    def isvc_needs_reconcile(self, namespace: str, pair: str, isvc: Mapping[str, Any]) -> bool:
        body = self.pair_body(namespace, pair)
        if body is None:
            return False
        known = self._known(body)
        seen = st.serving_observation(isvc)
        return known is None or seen is None or known.serving != seen.status

    def cronjob_needs_reconcile(self, namespace: str, pair: str, event_type: str | None) -> bool:
        """A deleted or edited CronJob is put back; our own writes come back here too and compare equal."""
        body = self.pair_body(namespace, pair)
        if body is None:
            return False
        if event_type == "DELETED":
            self.child_deleted("cronjob", namespace, f"{pair}-trainer")
            return True
        try:
            spec = pair_from_resource({"metadata": {"name": pair, "namespace": namespace}, "spec": body.get("spec")})
        except PairError:
            return False
        uid = (body.get("metadata") or {}).get("uid")
        desired = cronjob(spec, self.settings, uid)
        observed = _first(self.cronjobs, (namespace, pair), desired["metadata"]["name"])
        return observed is None or not is_subset(desired, observed)
