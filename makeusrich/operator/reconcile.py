"""One level-based reconcile of a CurrencyPair: make the children match the spec and the status match the world.

Every trigger (the pair created, changed or resumed, a trainer Job that moved, the InferenceService that became
ready, the periodic timer) runs the same `Reconciler.reconcile`, so a missed event only delays the next one. The
children are made by makeusrich.operator.children, the store is read through makeusrich.operator.store_access,
the status is computed by makeusrich.operator.status (pure); one lock per pair keeps concurrent triggers from
interleaving.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable, Mapping
from typing import Any

from makeusrich.contract import iso_z
from makeusrich.errors import KubeError, KubeNotFound, NotFoundError, PairError, RetryLater
from makeusrich.kube import PAIRS, KubeClient
from makeusrich.operator import status as st
from makeusrich.operator.children import Children, Index, first_in, unpacked
from makeusrich.operator.settings import OperatorSettings
from makeusrich.operator.store_access import StoreAccess
from makeusrich.pair import CurrencyPair, CurrencyPairStatus, LiveStatus, ModelStatus, pair_from_resource
from makeusrich.scoring import live_status
from makeusrich.store import Latest

log = logging.getLogger("makeusrich.operator")

EventSink = Callable[[Mapping[str, Any], st.Event], None]


def plain(body: Mapping[str, Any]) -> dict[str, Any]:
    """A private deep copy of a kopf body (kopf's views change under us as new events arrive)."""
    return copy.deepcopy(dict(body))


def previous_live(previous: CurrencyPairStatus | None) -> bool:
    """Whether the status carries a live record (which a pair whose model is gone still shows)."""
    return previous is not None and previous.live is not None


class Reconciler:
    """The operator's state between events: indices (bound at startup), per-pair locks and small caches."""

    def __init__(self, settings: OperatorSettings, api: KubeClient, store: StoreAccess, events: EventSink) -> None:
        self.settings = settings
        self.api = api
        self.store = store
        self.events = events
        self.children = Children(settings, api)
        self.pairs: Index = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._written: dict[str, CurrencyPairStatus] = {}  # uid -> the status we wrote last
        self._models: dict[str, tuple[str | None, ModelStatus | None]] = {}  # uid -> (pin, model) last read
        self._store_read: dict[str, float] = {}  # uid -> when a reconcile last read the store (event loop time)
        self.reconciles = 0
        self.rounds = 0

    def bind(self, pairs: Index, cronjobs: Index, jobs: Index, isvcs: Index) -> None:
        """The live indices: kopf's of the pairs, the informers' of the children (current as events arrive)."""
        self.pairs = pairs
        self.children.bind(cronjobs, jobs, isvcs)

    def _known(self, body: Mapping[str, Any]) -> CurrencyPairStatus | None:
        """The status we wrote last, else the one the pair carries."""
        return self._written.get((body.get("metadata") or {}).get("uid", "")) or st.parse_status(body.get("status"))

    def pair_needs_reconcile(self, body: Mapping[str, Any]) -> bool:
        """Whether a pair's watch event calls for a reconcile: when this process has not reconciled the pair yet
        (created, or first seen after a restart) or its spec changed since (a new generation). Our own status
        writes, and changes of labels or annotations, come back as events that need none."""
        meta = body.get("metadata") or {}
        written = self._written.get(meta.get("uid", ""))
        return written is None or written.observed_generation != meta.get("generation")

    def child_deleted(self, kind: str, namespace: str, name: str) -> None:
        self.children.deleted(kind, namespace, name)

    def pair_body(self, namespace: str, name: str) -> dict[str, Any] | None:
        return first_in(self.pairs, (namespace, name))

    def forget(self, body: Mapping[str, Any]) -> None:
        """Drop what we remember of a deleted pair. Its children go with Kubernetes' garbage collector; its
        stored models stay where they are."""
        meta = body.get("metadata") or {}
        uid, namespace, name = meta.get("uid", ""), meta.get("namespace", ""), meta.get("name", "")
        for cache in (self._locks, self._written, self._models, self._store_read):
            cache.pop(uid, None)
        self.children.forget(uid, namespace, name)

    async def reconcile(self, body: Mapping[str, Any], *, read_store: bool) -> CurrencyPairStatus | None:
        """Bring one pair's children and status up to date; RetryLater when some part must be tried again."""
        meta = body.get("metadata") or {}
        uid = meta.get("uid")
        if not uid or not meta.get("name") or not meta.get("namespace") or meta.get("deletionTimestamp"):
            return None
        async with self._locks.setdefault(uid, asyncio.Lock()):
            self.reconciles += 1
            if read_store:
                self._store_read[uid] = asyncio.get_running_loop().time()
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
        trainer_problem = await self.children.apply_trainer(pair, uid, previous, actions)
        training = await self.children.training(pair, uid, previous)
        model, model_problem = await self._model(pair, uid, previous, read_store)
        isvc, serving_problem = await self.children.apply_serving(pair, uid, model, actions)
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
            # No model has served yet, so no track record exists to read (a new pair: one store read saved).
            live=await self._live(pair) if read_store and (model is not None or previous_live(previous)) else None,
        )
        new = st.compute_status(previous, observed, now)
        await self.children.retrain_if_degraded(pair, uid, previous, new, actions)
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
            latest = await self._latest(namespace, name, pinned=pin is not None)
            version = pin if pin is not None else (latest.version if latest is not None else None)
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
                uri = await self.store.storage_uri(namespace, name, version)
                model = st.model_status(version, uri, meta, latest, pinned=pin is not None)
        except Exception as exc:  # any store failure must end in a condition, never in a crashed handler
            log.warning("%s/%s: cannot read the store: %s", namespace, name, exc)
            text = f"cannot read the model store {self.store.url}: {exc}"
            keep = known if known is not None and (pin is None or known.version == pin) else None
            return keep, st.Problem("StoreError", text)
        self._models[uid] = (pin, model)
        return model, None

    async def _latest(self, namespace: str, name: str, pinned: bool) -> Latest | None:
        """latest.json: what to serve, or with a pin only its history (then a damaged one costs nothing)."""
        if not pinned:
            return await self.store.latest(namespace, name)
        try:
            return await self.store.latest(namespace, name)
        except Exception as exc:
            log.warning("%s/%s: cannot read latest.json for the history: %s", namespace, name, exc)
            return None

    async def _live(self, pair: CurrencyPair) -> LiveStatus | None:
        """The pair's track.json as the status carries it; None (the status keeps what it had) when there is
        none yet or it cannot be read now."""
        try:
            summary = await self.store.track_summary(pair.namespace, pair.name)
        except Exception as exc:  # a damaged or unreachable track.json must not stop the reconcile
            log.warning("%s/%s: cannot read track.json: %s", pair.namespace, pair.name, exc)
            return None
        return live_status(summary) if summary is not None else None

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
        for events that were missed (a new latest.json has no event at all). A pair whose store was read within
        the interval (created or changed meanwhile) waits for the next round: a burst of thousands of new pairs
        is not read twice."""
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
            fresh = loop.time() - interval  # read the store since then: not due yet (a burst of new pairs)
            bodies = [unpacked(item) for items in list(self.pairs.values()) for item in items]
            due = [body for body in bodies if self._store_read.get(body["metadata"].get("uid", ""), fresh) <= fresh]
            await asyncio.gather(*(one(body) for body in due))
            self.rounds += 1
            log.debug(
                "periodic reconcile of %d of %d pairs took %.2f s",
                len(due),
                len(bodies),
                loop.time() - started - interval,
            )

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
        if self.children.started_as((body.get("metadata") or {}).get("uid", ""), job):
            return False, False  # the Job we started, coming back as it was: its reconcile writes the status
        if last is not None and last.job and last.job != job.name:
            newest = st.newest_job(self.children.jobs.get((namespace, pair), ()))
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
        return self.children.trainer_changed(namespace, pair, spec, (body.get("metadata") or {}).get("uid"))
