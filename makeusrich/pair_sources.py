"""Where the pairs come from, for the dashboard and the track record alike.

Two sources of pairs behind one protocol: `EmbeddedSource` reads pair files from a folder (one machine) and
`KubeSource` reads CurrencyPair resources, their status and their InferenceServices' URLs. Both write pairs
through the same pydantic spec. The model store and the candles are read by makeusrich.store.reader and
makeusrich.market.feed, whose blocking calls the callers run in worker threads (never on their event loop).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import yaml

from makeusrich.contract import DEFAULT_NAMESPACE, model_name
from makeusrich.errors import KubeAlreadyExists, KubeConflict, KubeError, MakeUsRichError, PairError
from makeusrich.kube import ISVCS, PAIRS, KubeClient
from makeusrich.pair import (
    CurrencyPair,
    CurrencyPairStatus,
    pair_document,
    pair_from_resource,
    parse_pair,
    read_pair_files,
)
from makeusrich.store import atomic_write

T = TypeVar("T")
Offload = Callable[[Callable[[], Any]], Awaitable[Any]]


async def to_thread(call: Callable[[], T]) -> T:
    """The default way to keep blocking work off the event loop (the app passes NiceGUI's io_bound instead)."""
    return await asyncio.to_thread(call)


@dataclass(frozen=True)
class PairRecord:
    """A pair as its source knows it; `pair` is None when the file or resource does not validate."""

    name: str
    namespace: str
    pair: CurrencyPair | None
    problem: str | None = None
    status: CurrencyPairStatus | None = None
    serving_url: str | None = None
    path: Path | None = None
    resource_version: str | None = None
    model: str | None = None  # its model's name at serving_url, when not the pair's name

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def model_name(self) -> str:
        """What to ask the model server for: the pair's model, whatever the server names it."""
        return self.model or self.name


class PairSource(Protocol):
    """Reads and writes pairs. Every method may raise MakeUsRichError with a sentence for the user."""

    kind: str
    store_url: str | None
    fixed_namespace: str | None  # where new pairs go; None: the user picks

    def describe(self) -> str: ...

    async def list_pairs(self) -> list[PairRecord]: ...

    async def save(self, pair: CurrencyPair, *, create: bool, previous: PairRecord | None = None) -> None: ...

    async def delete(self, record: PairRecord) -> None: ...

    async def aclose(self) -> None: ...


# --- pair files ------------------------------------------------------------------------------------------------


def pair_yaml(pair: CurrencyPair) -> str:
    return yaml.safe_dump(pair_document(pair), sort_keys=False)


class EmbeddedSource:
    """Pair files in a folder (`<pairs-dir>/<name>.yaml`) and any named ones, one model server for all of them;
    new pairs are written into the folder."""

    kind = "embedded"

    def __init__(
        self,
        pairs_dir: str | os.PathLike[str],
        store_url: str | None,
        server_url: str,
        offload: Offload = to_thread,
        files: Sequence[Path] = (),
    ) -> None:
        self.pairs_dir = Path(pairs_dir)
        self.files = tuple(files)  # pair files outside the folder (`makeusrich up -f`), listed first
        self.store_url = store_url
        self.server_url = server_url
        self.fixed_namespace: str | None = None
        self._offload = offload
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"pair files in {self.pairs_dir.resolve()}"

    def _scan(self) -> list[PairRecord]:
        records = []
        for found in read_pair_files(self.pairs_dir, self.files):
            name, namespace = (found.pair.name, found.pair.namespace) if found.pair else (found.path.stem, "default")
            model = model_name(namespace, name)  # one server for every namespace (`serve --all-namespaces`)
            records.append(
                PairRecord(
                    name,
                    namespace,
                    found.pair,
                    found.problem,
                    serving_url=self.server_url,
                    path=found.path,
                    model=model,
                )
            )
        return records

    async def list_pairs(self) -> list[PairRecord]:
        records: list[PairRecord] = await self._offload(self._scan)
        return records

    def _save(self, pair: CurrencyPair, create: bool, previous: PairRecord | None) -> None:
        with self._lock:
            existing = {r.key: r for r in self._scan()}
            key = f"{pair.namespace}/{pair.name}"
            target = self.pairs_dir / f"{model_name(pair.namespace, pair.name)}.yaml"
            if create:
                if key in existing or target.exists():
                    where = "" if pair.namespace == DEFAULT_NAMESPACE else f" in namespace {pair.namespace}"
                    raise PairError(f"a pair named {pair.name}{where} already exists in {self.pairs_dir}")
            else:
                # The file the form was loaded from, still declaring the same pair: never another file.
                path = previous.path if previous is not None else None
                old = existing.get(key)
                if old is None or old.path is None or (path is not None and old.path != path):
                    raise PairError(f"pair {key} no longer exists in {self.pairs_dir}; it was deleted meanwhile")
                target = old.path
            parse_pair(pair_document(pair), str(target))  # the file holds exactly what validates
            try:
                atomic_write(target, pair_yaml(pair).encode())
            except OSError as exc:
                raise PairError(f"cannot write {target}: {exc.strerror or exc}") from None

    async def save(self, pair: CurrencyPair, *, create: bool, previous: PairRecord | None = None) -> None:
        await self._offload(lambda: self._save(pair, create, previous))

    def _delete(self, record: PairRecord) -> None:
        if record.path is None:
            raise PairError(f"pair {record.key} has no file to delete")
        try:
            record.path.unlink()
        except FileNotFoundError:
            raise PairError(f"{record.path} was already deleted") from None
        except OSError as exc:
            raise PairError(f"cannot delete {record.path}: {exc.strerror or exc}") from None

    async def delete(self, record: PairRecord) -> None:
        await self._offload(lambda: self._delete(record))

    async def aclose(self) -> None:
        return None


# --- Kubernetes ------------------------------------------------------------------------------------------------


def isvc_url(isvc: dict[str, Any]) -> str | None:
    """The address a client inside the cluster reaches a predictor at: the cluster-local address first."""
    status = isvc.get("status") or {}
    address = (status.get("address") or {}).get("url")
    return str(address or status.get("url") or "") or None


def record_from_resource(resource: dict[str, Any], isvc: dict[str, Any] | None) -> PairRecord:
    meta = resource.get("metadata") or {}
    name, namespace = str(meta.get("name") or "?"), str(meta.get("namespace") or "default")
    status = None
    try:
        status = CurrencyPairStatus.model_validate(resource.get("status") or {})
    except ValueError:
        status = None  # an operator of another version wrote it: show the pair without its status
    url = (isvc_url(isvc) if isvc else None) or (status.serving.url if status and status.serving else None)
    try:
        pair, problem = pair_from_resource(resource), None
    except PairError as exc:
        pair, problem = None, str(exc)
    return PairRecord(name, namespace, pair, problem, status, url, resource_version=meta.get("resourceVersion"))


class KubeSource:
    """CurrencyPair resources in one namespace or all, and the URLs of their InferenceServices."""

    kind = "kubernetes"

    def __init__(self, client: KubeClient, namespace: str | None, store_url: str | None = None) -> None:
        self.client = client
        self.namespace = namespace
        self.fixed_namespace = namespace
        self.store_url = store_url

    def describe(self) -> str:
        where = f"namespace {self.namespace}" if self.namespace else "all namespaces"
        return f"CurrencyPairs in {where} at {self.client.server}"

    async def list_pairs(self) -> list[PairRecord]:
        def ident(item: dict[str, Any]) -> tuple[str, str]:
            meta = item.get("metadata") or {}
            return str(meta.get("namespace")), str(meta.get("name"))

        resources = await self.client.list(PAIRS, self.namespace)
        try:
            isvcs = {ident(item): item for item in await self.client.list(ISVCS, self.namespace)}
        except KubeError:  # KServe absent or not readable: fall back to the URL in each pair's status
            isvcs = {}
        records = [record_from_resource(resource, isvcs.get(ident(resource))) for resource in resources]
        return sorted(records, key=lambda r: r.key)

    async def save(self, pair: CurrencyPair, *, create: bool, previous: PairRecord | None = None) -> None:
        try:
            if create:
                await self.client.create(PAIRS, pair.namespace, pair_document(pair))
                return
            spec = pair.spec.model_dump(by_alias=True, mode="json")  # None values remove fields in a merge patch
            patch: dict[str, Any] = {"spec": spec}
            if previous is not None and previous.resource_version:
                patch["metadata"] = {"resourceVersion": previous.resource_version}  # refuse to overwrite news
            await self.client.patch(PAIRS, pair.namespace, pair.name, patch)
        except KubeAlreadyExists:
            raise PairError(f"a CurrencyPair {pair.namespace}/{pair.name} already exists") from None
        except KubeConflict:
            raise PairError(
                f"CurrencyPair {pair.namespace}/{pair.name} was changed by someone else meanwhile; "
                "reload it and edit again"
            ) from None

    async def delete(self, record: PairRecord) -> None:
        await self.client.delete(PAIRS, record.namespace, record.name)

    async def aclose(self) -> None:
        await self.client.aclose()


def describe_error(exc: BaseException) -> str:
    """One sentence for a card: our own errors are already written for users; others get their type."""
    if isinstance(exc, MakeUsRichError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
