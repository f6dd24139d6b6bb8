"""The model store as the operator reads it: read-only (a missing bucket is an error, never created), through the
shared StoreReader (one client, each version's metadata read once), its blocking calls on a few threads of its own."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from makeusrich.errors import MakeUsRichError, NotFoundError
from makeusrich.store import Latest, ModelMetadata, ObjectStore, StoreReader, TrackFiles, TrackSummary, open_store

log = logging.getLogger("makeusrich.operator")

T = TypeVar("T")


def open_for_reading(url: str) -> ObjectStore:
    """The store as the operator needs it: it only reads, so it never creates a missing bucket (a typo in the
    bucket name shows as a StoreError condition instead of an empty new bucket)."""
    return open_store(url, create_bucket=False)


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
