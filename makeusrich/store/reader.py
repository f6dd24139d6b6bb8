"""Reading the store for many pairs at once (the dashboard, the operator, the track record): one client, one
metadata cache, and the views they share. Blocking: callers on an event loop run these in threads."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from makeusrich.errors import StoreError
from makeusrich.store.base import Latest, ObjectStore, PairStore
from makeusrich.store.documents import ModelMetadata, RunState, TrackSummary
from makeusrich.store.location import open_store
from makeusrich.store.runs import read_run_state
from makeusrich.store.track import TrackFiles

if TYPE_CHECKING:  # pandas only for the track rows: the operator reads summaries without it
    import pandas as pd


@dataclass(frozen=True)
class Damaged:
    """A version whose metadata.json cannot be read or is malformed: shown as such, the others as usual."""

    reason: str


Readable = ModelMetadata | Damaged


@dataclass(frozen=True)
class StoreSummary:
    """One pair's models: the promoted version, every complete version, the metadata that was asked for, and
    the newest training run of `makeusrich up` (None elsewhere)."""

    latest: Latest | None
    versions: list[str]
    metadata: dict[str, Readable] = field(default_factory=dict)
    run: RunState | None = None
    track: TrackSummary | None = None  # track.json, when asked for and written by `makeusrich track`
    track_error: str | None = None

    @property
    def newest(self) -> str | None:
        return self.versions[-1] if self.versions else None

    @property
    def promoted(self) -> frozenset[str]:
        """The versions latest.json has named: promoted ones, whatever an interrupted run's metadata says."""
        return self.latest.promoted if self.latest else frozenset()


class StoreReader:
    """Blocking reads of one store for many pairs: one client, opened on first use (a failure leaves it closed,
    so the next call tries again), and each version's metadata.json read once (a version never changes)."""

    def __init__(self, url: str, cache_size: int = 4096, opener: Callable[[str], ObjectStore] = open_store) -> None:
        self.url = url
        self._opener = opener
        self._objects: ObjectStore | None = None
        self._cache: OrderedDict[tuple[str, str, str], ModelMetadata] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def pair_store(self, namespace: str, name: str) -> PairStore:
        with self._lock:
            if self._objects is None:
                self._objects = self._opener(self.url)
        return PairStore(self._objects, namespace, name)

    def cached(self, namespace: str, name: str, version: str) -> ModelMetadata | None:
        """A version's metadata if it was read before (no I/O: safe on an event loop)."""
        key = (namespace, name, version)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        return None

    def metadata(self, namespace: str, name: str, version: str) -> ModelMetadata:
        key = (namespace, name, version)
        hit = self.cached(*key)
        if hit is not None:
            return hit
        value = self.pair_store(namespace, name).model_metadata(version)
        with self._lock:
            self._cache[key] = value
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return value

    def readable(self, namespace: str, name: str, version: str) -> Readable:
        """A version's metadata, or Damaged(why) when its metadata.json cannot be read or is malformed."""
        try:
            return self.metadata(namespace, name, version)
        except StoreError as exc:
            return Damaged(str(exc))

    def summary(
        self, namespace: str, name: str, wanted: Iterable[str | None] = (), runs: bool = False, track: bool = False
    ) -> StoreSummary:
        """latest.json, the version list, and metadata of the promoted, newest and `wanted` versions; with
        `runs`, the newest run `makeusrich up` recorded (a cluster records runs in the resource's status); with
        `track`, track.json (a damaged one is `track_error`, the rest reads as usual)."""
        store = self.pair_store(namespace, name)
        latest = store.latest()
        versions = store.versions()
        needed = {latest.version if latest else None, versions[-1] if versions else None, *wanted}
        chosen = sorted(x for x in needed if x and x in versions)
        metadata = {v: self.readable(namespace, name, v) for v in chosen}
        summary, problem = None, None
        if track:
            try:
                summary = TrackFiles(store).read_summary()
            except StoreError as exc:
                problem = str(exc)
        return StoreSummary(latest, versions, metadata, read_run_state(store) if runs else None, summary, problem)

    def track_rows(self, namespace: str, name: str, since: pd.Timestamp) -> pd.DataFrame:
        """The track rows of origins from `since` on (the month files that hold them), oldest first."""
        from makeusrich.store.track_schema import month_of

        track = TrackFiles(self.pair_store(namespace, name))
        return track.rows(track.fetch(month_of(since)), since)

    def history(self, namespace: str, name: str, limit: int = 30) -> dict[str, Readable]:
        """Metadata of the newest `limit` versions (a damaged one as Damaged)."""
        versions = self.pair_store(namespace, name).versions()[-limit:]
        return {v: self.readable(namespace, name, v) for v in versions}
