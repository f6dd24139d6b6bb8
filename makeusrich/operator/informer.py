"""The operator's own watches of its children (CronJobs, Jobs, InferenceServices): a list, then a watch from the
list's resourceVersion, keeping one in-memory index per kind by the pair each child belongs to.

kopf watches the pairs (their handlers, Events, probes); it watched the children too, and at 10,000 pairs its
per-event machinery (a worker, a logger, a patch and every handler's arguments for each event) took a third of the
operator's CPU for events that are mostly our own writes coming back (bench/results/operator.md). Here an event
costs a JSON parse and a dict update. What kopf's indices promised stays: a pair is reconciled only once every
kind has been listed (`listed`), so a restart never re-creates what exists.

A watch that ends is started again from the last version seen; one whose version the server no longer keeps
(410 Gone) lists again, and what vanished meanwhile is reported as deleted. A kind the cluster does not have
(KServe not installed) counts as listed and empty, and is looked for again every ABSENT_RETRY_S. Errors wait and
try again, for ever: the index keeps what it had, and the periodic reconcile carries on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from makeusrich.errors import KubeError, KubeGone, KubeNotFound
from makeusrich.kube import KubeClient, Ref
from makeusrich.net import backoff_delay_s

log = logging.getLogger("makeusrich.operator")

PairKey = tuple[str, str]  # (namespace, pair name)
WATCH_TIMEOUT_S = 300  # the server ends a watch after this; it is started again at once (a dead one is noticed)
ABSENT_RETRY_S = 30.0  # how soon a kind the cluster does not have (KServe not installed) is looked for again


class ChildIndex(Mapping[PairKey, Iterable[Any]]):
    """A kind's children by pair: index[(namespace, pair)] iterates the items (one per child, by name)."""

    def __init__(self) -> None:
        self._by_pair: dict[PairKey, dict[str, Any]] = {}

    def __getitem__(self, key: PairKey) -> Iterable[Any]:
        return self._by_pair[key].values()

    def __iter__(self) -> Iterator[PairKey]:
        return iter(self._by_pair)

    def __len__(self) -> int:
        return len(self._by_pair)

    def put(self, key: PairKey, name: str, item: Any) -> None:
        self._by_pair.setdefault(key, {})[name] = item

    def remove(self, key: PairKey, name: str) -> None:
        children = self._by_pair.get(key)
        if children is not None:
            children.pop(name, None)
            if not children:
                del self._by_pair[key]


Change = Callable[[str, dict[str, Any], PairKey], None]
"""Told of each change after the first listing: the event's type (ADDED, MODIFIED, DELETED), the object (of a
deletion found by listing again, only its uid, namespace and name) and the pair it belongs to."""


class Informer:
    """One kind of child in one namespace (None: all), selected by label; `key` says which pair an object belongs
    to (None: to none, ignored) and `item` what the index keeps of it. `listed` is set once the first listing is
    in the index."""

    def __init__(
        self,
        api: KubeClient,
        ref: Ref,
        namespace: str | None,
        selector: str,
        key: Callable[[dict[str, Any]], PairKey | None],
        item: Callable[[dict[str, Any]], Any],
        on_change: Change,
        index: ChildIndex | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.api, self.ref, self.namespace, self.selector = api, ref, namespace, selector
        self.key, self.item, self.on_change, self._sleep = key, item, on_change, sleep
        self.index = ChildIndex() if index is None else index  # informers of one kind in several namespaces share one
        self.listed = asyncio.Event()
        self._version = ""
        self._known: dict[str, tuple[PairKey, str]] = {}  # uid -> where the index holds the object

    async def run(self) -> None:
        """List and watch until cancelled."""
        failures = 0
        while True:
            try:
                if not self._version:
                    await self._list()
                    if not self._version:  # the cluster has no such kind (yet): nothing of it to watch
                        await self._sleep(ABSENT_RETRY_S)
                        continue
                async for event in self.api.watch(
                    self.ref, self.namespace, self.selector, self._version, WATCH_TIMEOUT_S
                ):
                    self._apply(event)
                failures = 0
            except (KubeGone, KubeNotFound) as exc:
                log.info("the %s watch cannot resume (%s): listing again", self.ref.plural, exc)
                self._version = ""
            except KubeError as exc:
                delay = backoff_delay_s(failures, 0.5, 30.0)
                failures += 1
                log.warning("watching %s: %s (trying again in %.1f s)", self.ref.plural, exc, delay)
                await self._sleep(delay)

    async def _list(self) -> None:
        """Replace the index with a listing (of nothing, when the kind does not exist: its objects are gone)."""
        params = {"labelSelector": self.selector} if self.selector else None
        try:
            answer = await self.api.request("GET", self.ref.path(self.namespace), params=params)
        except KubeNotFound:
            answer = {}
        seen: set[str] = set()
        api_version = f"{self.ref.group}/{self.ref.version}" if self.ref.group else self.ref.version
        for obj in answer.get("items") or []:
            obj.setdefault("apiVersion", api_version)  # a list's items carry neither (a watch's objects do)
            obj.setdefault("kind", self.ref.kind)
            seen.add(self._put(obj, "ADDED" if self.listed.is_set() else ""))
        for uid in set(self._known) - seen:  # deleted while we were not watching
            key, name = self._known.pop(uid)
            self.index.remove(key, name)
            self.on_change("DELETED", {"metadata": {"uid": uid, "namespace": key[0], "name": name}}, key)
        self._version = str((answer.get("metadata") or {}).get("resourceVersion") or "")
        self.listed.set()

    def _apply(self, event: Mapping[str, Any]) -> None:
        obj = event.get("object") or {}
        version = (obj.get("metadata") or {}).get("resourceVersion")
        kind = event.get("type")
        if kind == "DELETED":
            uid = (obj.get("metadata") or {}).get("uid", "")
            where = self._known.pop(uid, None)
            if where is not None:
                self.index.remove(*where)
                self.on_change("DELETED", obj, where[0])
        elif kind in ("ADDED", "MODIFIED"):
            self._put(obj, kind)
        if version:
            self._version = str(version)

    def _put(self, obj: dict[str, Any], kind: str) -> str:
        """Index the object (moved, when its pair label changed); tell of the change unless listing first."""
        meta = obj.get("metadata") or {}
        uid, name = str(meta.get("uid") or ""), str(meta.get("name") or "")
        key = self.key(obj)
        before = self._known.pop(uid, None)
        if before is not None and before != (key, name):
            self.index.remove(*before)
        if key is not None:
            self.index.put(key, name, self.item(obj))
            self._known[uid] = (key, name)
            if kind:
                self.on_change(kind, obj, key)
        return uid
