"""kopf handlers: thin shells that turn watch events into calls of `Reconciler.reconcile`.

`build_registry(settings)` returns a registry of its own (not kopf's global one), so tests and the benchmark can
run several operators with different settings in one process.

What runs when:
- a pair is created, seen for the first time since the operator started, or its spec changes (a new
  generation): full reconcile, reading the store (and the first training Job while the pair has never trained);
  one that fails for a reason that may pass is tried again after RETRY_DELAY_S. These are plain watch-event
  handlers, not kopf's create/update/resume handlers: those keep their state in an annotation of every pair,
  one more write per pair and change (and its watch event), which the status's observedGeneration makes
  unnecessary;
- a trainer Job changes phase: the status records it; a success also re-reads the store (new model?);
- the InferenceService's status changes: the pair's serving status follows;
- the CronJob is deleted or edited by someone else: it is put back;
- every `reconcile_interval_s`: full reconcile of every pair, whatever was or was not seen (level-based).
kopf watches the pairs; the children are watched by the operator's own informers (makeusrich.operator.informer,
which says why), started with the operator, and no pair is reconciled before each of them has listed its kind.
Nothing here adds a finalizer: deleting a pair is never blocked by the operator being down.
"""

from __future__ import annotations

import asyncio
import contextvars
import fnmatch
import logging
import socket
from collections.abc import Coroutine, Mapping
from typing import Any

import kopf

from makeusrich.errors import KubeError, RetryLater
from makeusrich.kube import CRONJOBS, ISVCS, JOBS, PAIRS, Credentials, KubeClient, Login, load_credentials
from makeusrich.operator import status as st
from makeusrich.operator.children import packed
from makeusrich.operator.informer import Change, ChildIndex, Informer
from makeusrich.operator.objects import MANAGED_BY, MANAGER, PAIR_LABEL
from makeusrich.operator.reconcile import Reconciler, plain
from makeusrich.operator.settings import OperatorSettings
from makeusrich.operator.store_access import StoreAccess

log = logging.getLogger("makeusrich.operator")

# How soon a pair's reconcile is tried again after an outage ended it (API or store).
RETRY_DELAY_S = 5.0
# The informers of our children select them on the API server.
OURS_SELECTOR = f"{MANAGED_BY}={MANAGER},{PAIR_LABEL}"


def connection_info(credentials: Credentials) -> kopf.ConnectionInfo:
    """The shared login as kopf's watches take it; an exec credential's expiry makes kopf log in again."""
    scheme, _, token = (credentials.authorization or "").partition(" ")
    return kopf.ConnectionInfo(
        server=credentials.server,
        ca_path=credentials.ca_file,
        ca_data=credentials.ca_data,
        insecure=credentials.insecure,
        scheme=scheme or None,
        token=token or None,
        certificate_path=credentials.cert_file,
        certificate_data=credentials.cert_data,
        private_key_path=credentials.key_file,
        private_key_data=credentials.key_data,
        expiration=credentials.expires,
    )


class Runtime:
    """What the handlers share: settings, the login, the API client, the store and the reconciler."""

    def __init__(self, settings: OperatorSettings, login: Login = load_credentials) -> None:
        self.settings = settings
        self.login = login
        self.periodic: asyncio.Task[None] | None = None
        self.retries: dict[tuple[str, str], asyncio.Task[None]] = {}  # pairs whose reconcile is tried again soon
        self.api = KubeClient(login, agent="makeusrich-operator", connections=16)
        self.store = StoreAccess(settings.store_url)
        self.reconciler = Reconciler(settings, self.api, self.store, post_event)
        self.informers: list[Informer] = []
        self.tasks: set[asyncio.Task[Any]] = set()  # the informers, and reconciles their changes started
        self.context: contextvars.Context | None = None  # a pair handler's: where kopf's Event queue lives

    def spawn(self, coro: Coroutine[Any, Any, None], name: str, context: contextvars.Context | None = None) -> None:
        """A task kept until it ends; an error it did not handle is logged."""
        task = asyncio.get_running_loop().create_task(coro, name=name, context=context)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", task.get_name(), exc_info=task.exception())

    async def children_listed(self) -> None:
        """Until every informer has its kind's first listing in its index."""
        for informer in self.informers:
            await informer.listed.wait()


def post_event(body: Mapping[str, Any], event: st.Event) -> None:
    """A Kubernetes Event on the pair, posted in the background by kopf; Events are auxiliary, so a failure to
    queue one is logged and never fails a reconcile."""
    try:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)  # type: ignore[arg-type]
    except Exception as exc:  # kopf's posting queue lives in context variables of its handler tasks
        log.warning("cannot post the Event %s %s: %r", event.reason, event.message, exc)


def _pair_key(namespace: str | None, labels: Mapping[str, str]) -> tuple[str, str]:
    return (namespace or "", labels.get(PAIR_LABEL, ""))


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf's diff-base storage for an operator without create or update handlers (see the module's docstring):
    kopf builds every object's "essence" on every watch event, a deep copy of the whole body (a Job's pod
    template included), to find what changed for such handlers. With none, an empty essence, never stored."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def configure(kopf_settings: kopf.OperatorSettings, settings: OperatorSettings) -> None:
    """kopf's own settings: no state of its own on our objects (no diff base, progress looked for in the
    annotations only, the cheaper look), no peering objects, Events from the operator's name."""
    kopf_settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="makeusrich.io")
    kopf_settings.persistence.diffbase_storage = NoDiffBase()
    kopf_settings.peering.standalone = True
    # At most this many objects handled at once: each one in flight holds its events' bodies, requests and answers,
    # and 10,000 new pairs at once took 865 MiB at the peak without a limit, 534 MiB with this one (475 MiB with
    # 256, but 235 s instead of 136 s to settle: fewer requests in flight; bench/results/operator.md).
    kopf_settings.queueing.worker_limit = 1024
    kopf_settings.posting.reporting_component = MANAGER
    kopf_settings.posting.reporting_instance = socket.gethostname()
    # Re-open watches now and then: a connection that silently died is replaced within minutes.
    kopf_settings.watching.server_timeout = 300
    kopf_settings.watching.client_timeout = 330
    kopf_settings.networking.request_timeout = 60
    kopf_settings.networking.connect_timeout = 10
    # Exact namespaces need no namespace listing (and no RBAC for it); patterns do.
    if settings.namespaces and not has_patterns(settings.namespaces):
        kopf_settings.scanning.disabled = True


def has_patterns(namespaces: tuple[str, ...]) -> bool:
    """Whether any of the watched namespaces is a glob pattern (kopf's syntax) rather than a name."""
    return any(ch in ns for ns in namespaces for ch in "*?[!")


def build_registry(settings: OperatorSettings, runtime: Runtime | None = None) -> kopf.OperatorRegistry:
    """Every handler of the operator, bound to one Runtime."""
    rt = runtime or Runtime(settings)
    registry = kopf.OperatorRegistry()
    _register_lifecycle(registry, rt)
    _register_indices(registry)
    _register_pair(registry, rt)
    return registry


def run_operator(settings: OperatorSettings, liveness: str | None = None) -> None:
    """kopf's loop over these handlers until it is stopped (SIGINT, SIGTERM): without peering (one replica), in the
    settings' namespaces or cluster-wide, with a liveness endpoint when asked."""
    kopf.run(
        registry=build_registry(settings),
        standalone=True,
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        liveness_endpoint=liveness,
    )


def _register_lifecycle(registry: kopf.OperatorRegistry, rt: Runtime) -> None:
    """Login, startup (settings, the indices bound to the reconciler), cleanup and the liveness probe."""

    @kopf.on.login(id="login", registry=registry)
    def _login(**_: Any) -> kopf.ConnectionInfo:
        try:
            return connection_info(rt.login())
        except KubeError as exc:
            raise kopf.LoginError(str(exc)) from None

    @kopf.on.startup(id="startup", registry=registry)
    async def _startup(settings: kopf.OperatorSettings, **kwargs: Any) -> None:
        configure(settings, rt.settings)
        cronjobs, jobs, isvcs = start_informers(rt)
        rt.reconciler.bind(kwargs["makeusrich_pairs"], cronjobs, jobs, isvcs)

    @kopf.on.cleanup(id="cleanup", registry=registry)
    async def _cleanup(**_: Any) -> None:
        if rt.periodic is not None:
            rt.periodic.cancel()
        for task in [*rt.retries.values(), *rt.tasks]:
            task.cancel()
        await rt.api.aclose()
        rt.store.close()

    @kopf.on.probe(id="reconciles", registry=registry)
    def _probe(**_: Any) -> int:
        return rt.reconciler.reconciles


def _register_indices(registry: kopf.OperatorRegistry) -> None:
    """kopf's in-memory view of the pairs (the children's are the informers'). The function is a coroutine though
    it never waits: kopf runs a plain function in its thread pool, a hand-off per watch event that cost more than
    the function itself (py-spy at 10,000 pairs)."""

    @kopf.index(*PAIRS.selector, id="makeusrich_pairs", registry=registry)
    async def _pairs(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Any, Any]:
        return {(namespace or "", name): packed(dict(body))}


def start_informers(rt: Runtime) -> tuple[ChildIndex, ChildIndex, ChildIndex]:
    """An informer per child kind and watched namespace (one over all namespaces when the operator watches all
    or some by pattern), sharing one index per kind; their tasks run until cleanup."""
    namespaces = rt.settings.namespaces
    patterns = has_patterns(namespaces)
    scopes: list[str | None] = [None] if not namespaces or patterns else list(namespaces)

    def key(obj: Mapping[str, Any]) -> tuple[str, str] | None:
        meta = obj.get("metadata") or {}
        namespace, labels = meta.get("namespace") or "", meta.get("labels") or {}
        if patterns and not any(fnmatch.fnmatchcase(namespace, ns) for ns in namespaces):
            return None
        return _pair_key(namespace, labels) if labels.get(PAIR_LABEL) else None

    indices = {"cronjob": ChildIndex(), "job": ChildIndex(), "isvc": ChildIndex()}
    changes = {"cronjob": _cronjob_change(rt), "job": _job_change(rt), "isvc": _isvc_change(rt)}
    kinds = (("cronjob", CRONJOBS, packed), ("job", JOBS, st.job_summary), ("isvc", ISVCS, packed))
    for (kind, ref, item), scope in ((k, s) for k in kinds for s in scopes):
        informer = Informer(rt.api, ref, scope, OURS_SELECTOR, key, item, changes[kind], indices[kind])
        rt.informers.append(informer)
        rt.spawn(informer.run(), name=f"informer of {ref.plural} in {scope or 'all namespaces'}")
    return indices["cronjob"], indices["job"], indices["isvc"]


def _register_pair(registry: kopf.OperatorRegistry, rt: Runtime) -> None:
    """A pair's watch events: reconciled when new to this process or changed; they also start the periodic
    reconcile."""

    @kopf.on.event(*PAIRS.selector, id="pair-events", registry=registry)
    async def _pair_event(type: str, body: kopf.Body, **_: Any) -> None:
        await rt.children_listed()  # what kopf's indices promised: nothing is created twice after a restart
        if rt.context is None:
            rt.context = contextvars.copy_context()  # the informers' reconciles post Events through kopf's queue
        if rt.periodic is None:
            # One operator-wide loop, not a kopf timer per pair: kopf puts a finalizer on every object with a
            # timer, and a finalizer blocks `kubectl delete` whenever the operator is down. Started from a
            # handler so that it inherits kopf's context (the Event queue lives in context variables).
            rt.periodic = asyncio.get_running_loop().create_task(
                rt.reconciler.periodic(rt.settings.reconcile_interval_s), name="periodic reconcile"
            )
        if type == "DELETED":
            rt.reconciler.forget(body)
        elif rt.reconciler.pair_needs_reconcile(body):
            await _reconcile_pair(rt, plain(body))


async def _reconcile_pair(rt: Runtime, body: dict[str, Any]) -> None:
    """A full reconcile; when part of it must be tried again, it is, after RETRY_DELAY_S, on the pair as the
    watch knows it then (once per pair at a time: a newer event's reconcile may make it unneeded)."""
    try:
        await rt.reconciler.reconcile(body, read_store=True)
    except RetryLater as exc:
        meta = body.get("metadata") or {}
        key = (meta.get("namespace") or "", meta.get("name") or "")
        log.warning("%s/%s: %s (trying again in %g s)", *key, exc, RETRY_DELAY_S)
        if key not in rt.retries:
            rt.retries[key] = asyncio.get_running_loop().create_task(_retry(rt, key), name=f"retry {key}")


async def _retry(rt: Runtime, key: tuple[str, str]) -> None:
    await asyncio.sleep(RETRY_DELAY_S)
    del rt.retries[key]
    body = rt.reconciler.pair_body(*key)
    if body is not None:  # deleted meanwhile: nothing to do
        await _reconcile_pair(rt, body)


def _on_change(rt: Runtime, namespace: str, pair: str, read_store: bool) -> None:
    """A child's change reconciles its pair in a task of its own (the informer goes on with the next event); before
    any pair handler ran, the pairs' own first events reconcile every pair anyway."""
    if rt.context is not None:
        rt.spawn(_reconcile_child(rt, namespace, pair, read_store), f"reconcile {namespace}/{pair}", rt.context)


def _job_change(rt: Runtime) -> Change:
    def changed(type: str, body: dict[str, Any], key: tuple[str, str]) -> None:
        if type == "DELETED":
            return  # removed by a history limit or TTL: the status keeps what it recorded
        ns, pair = key
        go, read_store = rt.reconciler.job_needs_reconcile(ns, pair, st.job_summary(body))
        if go:
            _on_change(rt, ns, pair, read_store)

    return changed


def _isvc_change(rt: Runtime) -> Change:
    def changed(type: str, body: dict[str, Any], key: tuple[str, str]) -> None:
        ns, pair = key
        if type == "DELETED":
            rt.reconciler.child_deleted("isvc", ns, (body.get("metadata") or {}).get("name", ""))
        if rt.reconciler.isvc_needs_reconcile(ns, pair, {} if type == "DELETED" else body):
            _on_change(rt, ns, pair, read_store=False)

    return changed


def _cronjob_change(rt: Runtime) -> Change:
    def changed(type: str, body: dict[str, Any], key: tuple[str, str]) -> None:
        ns, pair = key
        version = (body.get("metadata") or {}).get("resourceVersion")
        if type != "DELETED" and rt.reconciler.children.own_write("cronjob", ns, f"{pair}-trainer", version):
            return  # our own write coming back: it was what the pair wanted
        if rt.reconciler.cronjob_needs_reconcile(ns, pair, type):
            _on_change(rt, ns, pair, read_store=False)

    return changed


async def _reconcile_child(rt: Runtime, namespace: str, pair: str, read_store: bool) -> None:
    """A reconcile triggered by a child: event handlers are not retried by kopf, so a failure is only logged
    (the periodic reconcile tries again)."""
    body = rt.reconciler.pair_body(namespace, pair)
    if body is None:
        return
    try:
        await rt.reconciler.reconcile(body, read_store=read_store)
    except RetryLater as exc:
        log.warning("%s/%s: %s (the periodic reconcile retries)", namespace, pair, exc)
