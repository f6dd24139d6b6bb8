"""The model store of contract 3, over any object store that can put, get, list and delete bytes.

Layout under the store's root (an S3 bucket, optionally a prefix in it, or a local folder):

    <namespace>/<pair>/versions/<version>/<pair>/config.pbtxt   Triton model repository = storageUri
    <namespace>/<pair>/versions/<version>/<pair>/1/model.onnx
    <namespace>/<pair>/versions/<version>/metadata.json
    <namespace>/<pair>/versions/<version>/backtest.json         a walk-forward backtest (makeusrich.store.backtests)
    <namespace>/<pair>/latest.json                              the promoted version, written last
    <namespace>/<pair>/candles/<interval>.parquet               candle cache
    <namespace>/<pair>/track/<YYYY-MM>.parquet, track.json      the track record (makeusrich.store.track)
    <namespace>/<pair>/runs/                                    `makeusrich up`'s runs (makeusrich.store.runs)

A version becomes visible only through latest.json, which is written after every other object of the version
was uploaded and read back with a matching checksum; a crash at any earlier step leaves the previous promotion.
latest.json also lists the versions it named before (`history`): a version counts as promoted only if
latest.json named it at some point, whatever its metadata.json decided. In the same put it keeps the audit trail
of the newest changes (`changes`: who promoted or rolled back what, when, why, on what evidence) and every version
ever rolled back (`rolledBack`), which is never promoted again but by a person.

A run that crashed leaves an incomplete version (no metadata.json, or no promotion) and, in a folder, temporary
files; the next run removes those that are old enough that no live run can still be writing them.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from makeusrich.contract import VERSION_FORMAT, is_version, iso_z, version_problem
from makeusrich.errors import NotFoundError, StoreError, excerpt
from makeusrich.store.documents import Change, ModelMetadata, parse_changes, parse_metadata

if TYPE_CHECKING:  # pandas is imported only by the candle cache: the operator never needs it
    import pandas as pd

METADATA = "metadata.json"
LATEST = "latest.json"
HISTORY_LIMIT = 200
CHANGES_LIMIT = 50
# An incomplete version or temporary file older than this comes from a run that died: training takes minutes,
# and runs of one pair never overlap (the CronJob's concurrencyPolicy Forbid, one run per pair on one machine).
ABANDONED_AFTER = timedelta(hours=6)


class ObjectStore(Protocol):
    """Bytes under string keys. `put` of one object must be atomic: readers see the old or the new bytes."""

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes:
        """The object's bytes; NotFoundError when there is none."""
        ...

    def list(self, prefix: str) -> list[str]:
        """Every key that starts with `prefix`, recursively, sorted."""
        ...

    def delete(self, keys: Iterable[str]) -> None: ...

    def sweep(self, prefix: str, older_than_s: float) -> Sequence[str]:
        """Remove what interrupted writes left below `prefix` (older than `older_than_s`); returns what went."""
        ...

    def uri(self, key: str) -> str:
        """Where a key (or a folder, when it ends in '/') lives, as s3://... or file://..."""
        ...


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def new_version(now: datetime | None = None, after: str | None = None) -> str:
    """A sortable UTC version name such as 20261126T150000Z; a second past `after` (the newest stored) when a
    run starts in the same second as the one before it, so names stay unique and in order."""
    moment = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    if after is not None:
        moment = max(moment, version_time(after) + timedelta(seconds=1))
    return moment.strftime(VERSION_FORMAT)


def check_version(version: str) -> str:
    problem = version_problem(version)
    if problem:
        raise StoreError(f"{excerpt(version)} {problem}")
    return version


def version_key(namespace: str, pair: str, version: str) -> str:
    """The folder of a version below the store's root (contract 3)."""
    return f"{namespace}/{pair}/versions/{check_version(version)}/"


def version_time(version: str) -> datetime:
    """When a version's run started: the UTC time its name spells."""
    return datetime.strptime(check_version(version), VERSION_FORMAT).replace(tzinfo=UTC)


@dataclass(frozen=True)
class Latest:
    """The content of latest.json: which version serving should load."""

    version: str
    storage_uri: str
    model_sha256: str
    promoted_at: str
    history: tuple[str, ...] = ()  # versions latest.json named before this one, oldest first
    changes: tuple[Change, ...] = ()  # the newest changes of the served version, oldest first
    rolled_back: tuple[str, ...] = ()  # every version ever rolled back, oldest first

    @property
    def promoted(self) -> frozenset[str]:
        """Every version latest.json has named: the promoted ones, now or before."""
        return frozenset((*self.history, self.version))

    @property
    def change(self) -> Change | None:
        """The change that made the served version current, where the trail records it."""
        last = self.changes[-1] if self.changes else None
        return last if last is not None and last.version == self.version else None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "storageUri": self.storage_uri,
            "modelSha256": self.model_sha256,
            "promotedAt": self.promoted_at,
            "history": list(self.history),
            "changes": [change.to_json() for change in self.changes],
            "rolledBack": list(self.rolled_back),
        }


@dataclass(frozen=True)
class Why:
    """Who changes the served version and why, for the audit trail."""

    by: str
    reason: str = ""
    evidence: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class PairStore:
    """One pair's models and candle cache in a store."""

    objects: ObjectStore
    namespace: str
    pair: str

    @property
    def prefix(self) -> str:
        return f"{self.namespace}/{self.pair}/"

    def version_prefix(self, version: str) -> str:
        return version_key(self.namespace, self.pair, version)

    def storage_uri(self, version: str) -> str:
        """The folder KServe mounts: a Triton model repository holding `<pair>/config.pbtxt`."""
        return self.objects.uri(self.version_prefix(version))

    def model_path(self) -> str:
        """Path of the ONNX file inside a version folder."""
        return f"{self.pair}/1/model.onnx"

    def config_path(self) -> str:
        return f"{self.pair}/config.pbtxt"

    def weights_path(self) -> str:
        """Path of an LSTM's trained weights, which a later run may start from (beside metadata.json: a Triton
        repository takes only folders for models)."""
        return "weights.pt"

    # --- reading -------------------------------------------------------------------------------------

    def _get_json(self, key: str) -> dict[str, Any]:
        raw = self.objects.get(key)
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, or absurdly nested
            reason = str(exc)[:120]
            raise StoreError(f"{self.objects.uri(key)} is not valid JSON ({reason}); the store is damaged") from None
        if not isinstance(value, dict):
            raise StoreError(f"{self.objects.uri(key)} does not hold a JSON object; the store is damaged")
        return value

    def latest(self) -> Latest | None:
        """The promoted version, or None when nothing was ever promoted."""
        try:
            raw = self._get_json(self.prefix + LATEST)
        except NotFoundError:
            return None
        if not all(isinstance(raw.get(k), str) for k in ("version", "storageUri", "modelSha256", "promotedAt")):
            raise StoreError(
                f"{self.objects.uri(self.prefix + LATEST)} lacks a text field among version, storageUri, "
                "modelSha256, promotedAt; promote a version again to rewrite it"
            )
        where = self.objects.uri(self.prefix + LATEST)
        history, rolled_back = raw.get("history", []), raw.get("rolledBack", [])
        for name, versions in (("history", history), ("rolledBack", rolled_back)):
            if not isinstance(versions, list) or not all(isinstance(v, str) and is_version(v) for v in versions):
                raise StoreError(
                    f"{where} has a {name} that is not a list of versions; promote a version again to rewrite it"
                )
        return Latest(
            version=check_version(raw["version"]),
            storage_uri=raw["storageUri"],
            model_sha256=raw["modelSha256"],
            promoted_at=raw["promotedAt"],
            history=tuple(history),
            changes=parse_changes(raw.get("changes", []), where),
            rolled_back=tuple(rolled_back),
        )

    def metadata(self, version: str) -> dict[str, Any]:
        """A version's metadata.json as stored (the store checks only its own part, `files`)."""
        return self._get_json(self.version_prefix(version) + METADATA)

    def model_metadata(self, version: str) -> ModelMetadata:
        """A version's metadata.json, checked against the contract; StoreError names what is malformed."""
        return parse_metadata(self.metadata(version), self.objects.uri(self.version_prefix(version) + METADATA))

    def versions(self) -> list[str]:
        """Complete versions (those whose metadata.json exists), oldest first."""
        return sorted(self._version_folders(complete=True))

    def next_version(self, now: datetime | None = None) -> str:
        """The name of a new version: after every folder there is (a crashed upload's too), so never taken."""
        return new_version(now, after=max(self._version_folders(), default=None))

    def read_file(self, version: str, path: str, expected_sha256: str | None = None) -> bytes:
        """A file of a version, checked against the checksum recorded in its metadata."""
        if expected_sha256 is None:
            files = self.metadata(version).get("files", {})
            if path not in files:
                raise StoreError(f"version {version} of {self.pair} records no file {path}")
            expected_sha256 = str(files[path]["sha256"])
        data = self.objects.get(self.version_prefix(version) + path)
        if sha256(data) != expected_sha256:
            raise StoreError(
                f"{self.objects.uri(self.version_prefix(version) + path)} does not match its recorded "
                "sha256: the upload was damaged; retrain or promote another version"
            )
        return data

    def read_model(self, version: str) -> bytes:
        return self.read_file(version, self.model_path())

    # --- writing -------------------------------------------------------------------------------------

    def publish(
        self,
        version: str,
        files: Mapping[str, bytes],
        metadata: Mapping[str, Any],
        promote: bool,
        why: Why = Why("trainer"),
    ) -> dict[str, Any]:
        """Upload a version, verify it, and promote it when asked (`why` goes into the audit trail). Returns the
        metadata as stored.
        Order matters for crash safety: files, then metadata.json (which makes the version complete), then a
        read-back of every object, then latest.json."""
        base = self.version_prefix(version)
        if self.objects.list(base):
            raise StoreError(f"version {version} of {self.pair} already exists; versions are never overwritten")
        if self.model_path() not in files:
            raise StoreError(f"a version must contain {self.model_path()}")
        stored = dict(metadata)
        stored["files"] = {path: {"sha256": sha256(data), "bytes": len(data)} for path, data in files.items()}
        stored["storageUri"] = self.storage_uri(version)
        for path, data in files.items():
            self.objects.put(base + path, data)
        encoded = json.dumps(stored, indent=2, sort_keys=True, default=str).encode()
        self.objects.put(base + METADATA, encoded)
        for path, info in stored["files"].items():
            self.read_file(version, path, info["sha256"])
        if self.metadata(version) != json.loads(encoded):
            raise StoreError(f"metadata of version {version} read back differently from what was written")
        if promote:
            self._write_latest(version, stored["files"][self.model_path()]["sha256"], "promoted", why)
        return stored

    def promote(self, version: str, why: Why = Why("a person")) -> Latest:
        """Point latest.json at a complete, verified version: a new one (the trainer), or any (a person)."""
        return self._write_latest(version, self._verified_model(version), "promoted", why)

    def rollback(self, to: str, served: str, why: Why) -> Latest:
        """Serve `to` again instead of `served`, recording why. Refused when `served` is no longer served (a
        newer promotion came first: the evidence was about a version that left), and when `to` was rolled back
        itself (the evidence against it stands until a person decides otherwise)."""
        model_sha = self._verified_model(to)
        current = self.latest()
        if current is None or current.version != served:
            now = current.version if current else "nothing"
            raise StoreError(
                f"{self.pair} serves {now}, not {served}: the rollback is moot "
                "(a newer change came first; nothing was rolled back)"
            )
        if to in current.rolled_back:
            raise StoreError(
                f"version {to} of {self.pair} was rolled back before; only a person serves it again "
                "(spec.serving.pinnedVersion)"
            )
        return self._write_latest(to, model_sha, "rolled-back", why)

    def _verified_model(self, version: str) -> str:
        """The checksum of a complete version's model, after reading the model back against it."""
        meta = self.metadata(version)
        model_sha = str(meta["files"][self.model_path()]["sha256"])
        self.read_file(version, self.model_path(), model_sha)
        return model_sha

    def _write_latest(self, version: str, model_sha: str, action: str, why: Why) -> Latest:
        """latest.json: one atomic put, the last write of a promotion, remembering what it named before, and
        who changed it, when and why."""
        try:
            previous = self.latest()
        except StoreError:  # a damaged latest.json: the promotion rewrites it, without its history
            previous = None
        earlier = (*previous.history, previous.version) if previous else ()
        at = iso_z()
        change = Change.model_validate(
            {
                "version": version,
                "from": previous.version if previous else None,
                "action": action,
                "by": why.by,
                "at": at,
                "reason": why.reason,
                "evidence": dict(why.evidence or {}),
            }
        )
        rolled_back = previous.rolled_back if previous else ()
        if action == "rolled-back" and previous is not None and previous.version not in rolled_back:
            rolled_back = (*rolled_back, previous.version)
        latest = Latest(
            version=version,
            storage_uri=self.storage_uri(version),
            model_sha256=model_sha,
            promoted_at=at,
            history=tuple(v for v in earlier if v != version)[-HISTORY_LIMIT:],
            changes=((*previous.changes, change) if previous else (change,))[-CHANGES_LIMIT:],
            rolled_back=rolled_back,
        )
        self.objects.put(self.prefix + LATEST, json.dumps(latest.to_json(), indent=2).encode())
        return latest

    def _version_folders(self, complete: bool = False) -> set[str]:
        """Version folders: every one (a crash can leave one half-uploaded), or only those with a metadata.json."""
        base = f"{self.prefix}versions/"
        parts = (key[len(base) :].partition("/") for key in self.objects.list(base))
        return {version for version, _, name in parts if is_version(version) and (name == METADATA or not complete)}

    def prune(self, keep: int) -> list[str]:
        """Delete all but the newest `keep` complete versions, never the promoted one, and the incomplete ones
        older than the newest complete version (a crashed upload). Returns what was deleted."""
        if keep < 1:
            raise StoreError("prune must keep at least one version")
        latest = self.latest()
        promoted = latest.version if latest else None
        versions = self.versions()
        newest = versions[-1] if versions else ""
        incomplete = {v for v in self._version_folders() - set(versions) if v < newest}
        doomed = sorted(({v for v in versions[:-keep] if v != promoted}) | incomplete)
        for version in doomed:
            self._delete_version(version)
        return doomed

    def _delete_version(self, version: str) -> None:
        base = self.version_prefix(version)
        # metadata.json first: a crash half-way leaves an incomplete version that versions() ignores.
        self.objects.delete([base + METADATA])
        self.objects.delete(self.objects.list(base))

    def clean_abandoned(self, current: str, older_than: timedelta = ABANDONED_AFTER) -> list[str]:
        """Remove what crashed runs left: incomplete versions whose run started `older_than` before the
        `current` run, and temporary files as old. Never a complete version, never a younger one (a live run may
        still be writing it). Returns the versions and files removed."""
        cutoff = version_time(current) - older_than
        abandoned = sorted(v for v in self._version_folders() - set(self.versions()) if version_time(v) < cutoff)
        for version in abandoned:
            self._delete_version(version)
        return [*abandoned, *self.objects.sweep(f"{self.prefix}versions/", older_than.total_seconds())]

    # --- candle cache --------------------------------------------------------------------------------

    def candles_key(self, interval: str) -> str:
        return f"{self.prefix}candles/{interval}.parquet"

    def read_candles(self, interval: str) -> pd.DataFrame | None:
        import pandas as pd

        try:
            raw = self.objects.get(self.candles_key(interval))
        except NotFoundError:
            return None
        try:
            return pd.read_parquet(io.BytesIO(raw))  # noqa: TID251 (the store is the one reader)
        except Exception as exc:  # callers may treat this as a cache miss and refetch
            raise StoreError(
                f"candle cache {self.objects.uri(self.candles_key(interval))} is unreadable: {exc}"
            ) from exc

    def write_candles(self, interval: str, frame: pd.DataFrame) -> None:
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        self.objects.put(self.candles_key(interval), buffer.getvalue())
