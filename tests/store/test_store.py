"""The model store of contract 3, against both backends: a local folder and a real S3 server (SeaweedFS)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import urllib3
from minio import Minio

from makeusrich.errors import NotFoundError, StoreError
from makeusrich.store import (
    DEFAULT_STORE,
    LATEST,
    METADATA,
    LocalStore,
    ObjectStore,
    PairStore,
    Why,
    new_version,
    open_store,
    pair_store,
    store_location,
)
from makeusrich.store.base import CHANGES_LIMIT
from makeusrich.store.s3 import S3Store, http_client, parse_endpoint
from tests.fixtures.s3server import S3Server, free_ports, unique_bucket

NAMESPACE = "default"
PAIR = "btc-usdt"
MODEL = f"{PAIR}/1/model.onnx"
CONFIG = f"{PAIR}/config.pbtxt"
T0 = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)


def version(i: int) -> str:
    return new_version(T0 + timedelta(hours=i))


def files_for(i: int) -> dict[str, bytes]:
    return {
        MODEL: bytes(range(256)) * 40 + f"model {i}".encode(),
        CONFIG: f'name: "{PAIR}"\nplatform: "onnxruntime_onnx"\n# {i}\n'.encode(),
    }


def publish(pair: PairStore, i: int, promote: bool) -> dict[str, Any]:
    return pair.publish(version(i), files_for(i), {"pair": PAIR, "interval": "1h", "run": i}, promote=promote)


def version_prefix(v: str) -> str:
    return f"{NAMESPACE}/{PAIR}/versions/{v}/"


LATEST_KEY = f"{NAMESPACE}/{PAIR}/{LATEST}"


@pytest.fixture
def pair(object_store: ObjectStore) -> PairStore:
    return PairStore(object_store, NAMESPACE, PAIR)


# --- the object store itself --------------------------------------------------------------------------------


def test_put_get_list_delete(object_store: ObjectStore) -> None:
    object_store.put("a/b/one.bin", bytes(range(256)))
    object_store.put("a/two.json", b"{}")
    object_store.put("c.txt", b"")
    assert object_store.get("a/b/one.bin") == bytes(range(256))
    assert object_store.get("c.txt") == b""

    object_store.put("a/b/one.bin", b"replaced")
    assert object_store.get("a/b/one.bin") == b"replaced"

    assert object_store.list("") == ["a/b/one.bin", "a/two.json", "c.txt"]
    assert object_store.list("a/") == ["a/b/one.bin", "a/two.json"]
    assert object_store.list("a/b") == ["a/b/one.bin"]
    assert object_store.list("a/t") == ["a/two.json"]
    assert object_store.list("nothing/") == []

    object_store.delete(["a/b/one.bin", "never/written"])
    object_store.delete([])
    assert object_store.list("") == ["a/two.json", "c.txt"]
    with pytest.raises(NotFoundError):
        object_store.get("a/b/one.bin")


def test_missing_key_raises_not_found(object_store: ObjectStore) -> None:
    object_store.put("folder/object", b"x")
    for key in ("missing", "folder/missing", "folder", "folder/"):
        with pytest.raises(NotFoundError):
            object_store.get(key)
    assert issubclass(NotFoundError, StoreError)


def test_uri(object_store: ObjectStore) -> None:
    key, folder = "ns/pair/latest.json", "ns/pair/versions/20261126T150000Z/"
    if isinstance(object_store, S3Store):
        assert object_store.uri(key) == f"s3://{object_store.bucket}/{key}"
        assert object_store.uri(folder) == f"s3://{object_store.bucket}/{folder}"
    else:
        assert isinstance(object_store, LocalStore)
        assert object_store.uri(key) == (object_store.root / key).as_uri()
        assert object_store.uri(folder) == (object_store.root / folder).as_uri() + "/"


# --- PairStore: publishing, reading, promotion --------------------------------------------------------------


def test_publish_writes_the_layout_of_contract_3(pair: PairStore, object_store: ObjectStore) -> None:
    files = files_for(1)
    stored = publish(pair, 1, promote=False)
    base = version_prefix(version(1))

    assert object_store.list(f"{NAMESPACE}/") == sorted([base + CONFIG, base + MODEL, base + METADATA])
    for path, data in files.items():
        assert stored["files"][path] == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        assert object_store.get(base + path) == data
    assert stored["storageUri"] == object_store.uri(base) == pair.storage_uri(version(1))
    assert stored["storageUri"].endswith(f"/{base}")
    assert stored["pair"] == PAIR and stored["run"] == 1
    assert json.loads(object_store.get(base + METADATA)) == stored == pair.metadata(version(1))
    assert pair.read_model(version(1)) == files[MODEL]
    assert pair.versions() == [version(1)]


def test_latest_json_is_written_only_on_promotion(pair: PairStore, object_store: ObjectStore) -> None:
    publish(pair, 1, promote=False)
    assert pair.latest() is None
    with pytest.raises(NotFoundError):
        object_store.get(LATEST_KEY)

    stored = publish(pair, 2, promote=True)
    raw = json.loads(object_store.get(LATEST_KEY))
    assert raw["version"] == version(2)
    assert raw["storageUri"] == pair.storage_uri(version(2)) == stored["storageUri"]
    assert raw["modelSha256"] == hashlib.sha256(files_for(2)[MODEL]).hexdigest()
    latest = pair.latest()
    assert latest is not None and latest.version == version(2)
    assert latest.model_sha256 == raw["modelSha256"]


def test_publishing_a_version_twice_is_refused(pair: PairStore) -> None:
    publish(pair, 1, promote=True)
    with pytest.raises(StoreError, match="already exists"):
        pair.publish(version(1), files_for(99), {"pair": PAIR}, promote=True)
    assert pair.read_model(version(1)) == files_for(1)[MODEL]
    assert pair.metadata(version(1))["run"] == 1


def test_a_run_in_the_same_second_as_the_last_gets_the_next_second(pair: PairStore, object_store: ObjectStore) -> None:
    """Two runs that start within one second (small models train that fast) must not share a name."""
    assert pair.next_version(T0) == version(0)
    publish(pair, 0, promote=True)
    assert pair.next_version(T0) == new_version(T0 + timedelta(seconds=1))
    object_store.put(version_prefix(version(2)) + MODEL, b"a crashed upload")  # a folder without metadata
    assert pair.next_version(T0) == new_version(T0 + timedelta(hours=2, seconds=1))
    assert pair.next_version(T0 + timedelta(hours=3)) == version(3)  # a later clock is used as it is


def test_versions_ignore_incomplete_versions(pair: PairStore, object_store: ObjectStore) -> None:
    publish(pair, 1, promote=False)
    # What a crash before metadata.json leaves behind, and a folder that is not a version at all.
    object_store.put(version_prefix(version(2)) + MODEL, b"half a model")
    object_store.put(f"{NAMESPACE}/{PAIR}/versions/not-a-version/{METADATA}", b"{}")
    publish(pair, 3, promote=False)
    assert pair.versions() == [version(1), version(3)]


def test_read_file_detects_a_corrupted_object(pair: PairStore, object_store: ObjectStore) -> None:
    publish(pair, 1, promote=True)
    object_store.put(version_prefix(version(1)) + MODEL, files_for(1)[MODEL][:-1] + b"X")
    with pytest.raises(StoreError, match="sha256"):
        pair.read_model(version(1))
    with pytest.raises(StoreError, match="sha256"):
        pair.promote(version(1))
    object_store.put(version_prefix(version(1)) + METADATA, b"{not json")
    with pytest.raises(StoreError, match="not valid JSON"):
        pair.metadata(version(1))


def test_prune_keeps_the_newest_and_the_promoted(pair: PairStore, object_store: ObjectStore) -> None:
    for i in range(5):
        publish(pair, i, promote=i == 0)
    assert pair.prune(keep=2) == [version(1), version(2)]
    assert pair.versions() == [version(0), version(3), version(4)]
    for gone in (version(1), version(2)):
        assert object_store.list(version_prefix(gone)) == []
    latest = pair.latest()
    assert latest is not None and latest.version == version(0)
    assert pair.read_model(version(0)) == files_for(0)[MODEL]
    assert pair.prune(keep=2) == []  # only the promoted one is older than the newest two
    with pytest.raises(StoreError):
        pair.prune(keep=0)


def test_latest_json_remembers_every_version_it_named(pair: PairStore) -> None:
    """Promoted means latest.json named it, not that its run decided to: a run killed between metadata.json and
    latest.json leaves a version whose metadata says promoted, and it must not count."""
    publish(pair, 0, promote=True)
    publish(pair, 1, promote=True)
    publish(pair, 2, promote=False)
    crashed = pair.publish(version(3), files_for(3), {"promotion": {"promoted": True}}, promote=False)
    assert crashed["promotion"]["promoted"] is True  # what the run decided before it died
    pair.promote(version(0))  # a rollback
    latest = pair.latest()
    assert latest is not None and latest.version == version(0) and latest.history == (version(1),)
    assert latest.promoted == {version(0), version(1)}
    assert version(3) not in latest.promoted and version(2) not in latest.promoted


def test_a_version_name_that_spells_no_time_is_refused_in_one_sentence(
    pair: PairStore, object_store: ObjectStore
) -> None:
    """20261399T256161Z matches the pattern but is no time: read as one, it failed wherever that happened (a
    strptime traceback from `train`, `up` gone). The store refuses it where it reads it."""
    publish(pair, 0, promote=True)
    key = f"{NAMESPACE}/{PAIR}/{LATEST}"
    named = {**json.loads(object_store.get(key)), "version": "20261399T256161Z"}
    object_store.put(key, json.dumps(named).encode())
    with pytest.raises(StoreError, match=r"^'20261399T256161Z' is not a model version; versions are the UTC time"):
        pair.latest()
    object_store.put(f"{NAMESPACE}/{PAIR}/versions/20261399T256161Z/{METADATA}", b"{}")
    assert pair.versions() == [version(0)]  # a folder of that name is no version either


def test_the_next_run_removes_what_crashed_runs_left(
    pair: PairStore, object_store: ObjectStore, tmp_path: Path
) -> None:
    publish(pair, 0, promote=True)
    for i in (1, 8):  # a crash after uploading the model, before metadata.json: 9 h and 2 h before run 10
        object_store.put(version_prefix(version(i)) + MODEL, files_for(i)[MODEL])
    removed = pair.clean_abandoned(version(10))
    assert version(1) in removed and version(8) not in removed  # a younger one may belong to a live run
    assert object_store.list(version_prefix(version(1))) == []
    assert object_store.list(version_prefix(version(8))) == [version_prefix(version(8)) + MODEL]
    assert pair.versions() == [version(0)] and pair.read_model(version(0)) == files_for(0)[MODEL]
    if isinstance(object_store, LocalStore):  # a folder also keeps the temporary files of interrupted puts
        folder = object_store.root / version_prefix(version(0))
        old, new = folder / ".tmp-old", folder / ".tmp-new"
        old.write_bytes(b"half"), new.write_bytes(b"half")
        os.utime(old, (time.time() - 7 * 3600,) * 2)
        assert pair.clean_abandoned(version(10)) == [version_prefix(version(0)) + ".tmp-old"]
        assert not old.exists() and new.exists()


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_local_files_follow_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    """mkstemp makes 0600 files; a server running as another user must still read a 022 store."""
    previous = os.umask(umask)
    try:
        store = LocalStore(tmp_path / f"store-{umask:o}")
        store.put("default/btc-usdt/latest.json", b"{}")
    finally:
        os.umask(previous)
    assert (store.root / "default/btc-usdt/latest.json").stat().st_mode & 0o777 == mode


def test_local_listing_stays_inside_the_root(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("outside")
    store = LocalStore(tmp_path / "store")
    for prefix in ("../", "../secret", "a/../../"):
        with pytest.raises(StoreError, match="escapes the store root"):
            store.list(prefix)


def test_promote_rolls_back_to_an_older_version(pair: PairStore) -> None:
    publish(pair, 1, promote=True)
    publish(pair, 2, promote=True)
    latest = pair.latest()
    assert latest is not None and latest.version == version(2)

    rolled = pair.promote(version(1))
    latest = pair.latest()
    assert latest == rolled
    assert latest.version == version(1)
    assert latest.storage_uri == pair.storage_uri(version(1))
    assert latest.model_sha256 == hashlib.sha256(files_for(1)[MODEL]).hexdigest()
    assert pair.versions() == [version(1), version(2)]


def test_a_rollback_is_recorded_with_its_evidence_and_its_version_is_never_served_again_by_rollback(
    pair: PairStore, object_store: ObjectStore
) -> None:
    publish(pair, 1, promote=True)
    pair.publish(version(2), files_for(2), {"run": 2}, promote=True, why=Why("trainer", "beats the champion"))
    evidence = {"decision": "rollback-point", "statistic": 3.1e5, "threshold": 2.16e5, "hours": 31}
    with pytest.raises(StoreError, match=f"serves {version(2)}, not {version(1)}: the rollback is moot"):
        pair.rollback(version(1), version(1), Why("makeusrich track"))
    rolled = pair.rollback(version(1), version(2), Why("makeusrich track", "worse than 20260101", evidence))
    latest = pair.latest()
    assert latest == rolled and latest.version == version(1) and latest.rolled_back == (version(2),)
    first, promoted, back = latest.changes
    assert (first.version, first.from_, first.action, first.by) == (version(1), None, "promoted", "trainer")
    assert (promoted.from_, promoted.reason) == (version(1), "beats the champion")
    assert (back.version, back.from_, back.action, back.by) == (
        version(1),
        version(2),
        "rolled-back",
        "makeusrich track",
    )
    assert back.evidence == evidence and back.at == latest.promoted_at and latest.change == back
    # one put holds it all, in the document's own names
    raw = json.loads(object_store.get(f"{NAMESPACE}/{PAIR}/{LATEST}"))
    assert raw["rolledBack"] == [version(2)] and raw["changes"][-1]["from"] == version(2)
    # a person may serve it again; the evidence against it stays, so no rollback returns to it
    pair.promote(version(2))
    publish(pair, 3, promote=True)
    with pytest.raises(StoreError, match="was rolled back before; only a person serves it again"):
        pair.rollback(version(2), version(3), Why("makeusrich track"))
    assert pair.latest().rolled_back == (version(2),)  # type: ignore[union-attr]


def test_the_trail_is_bounded_and_a_latest_json_without_one_still_reads(
    pair: PairStore, object_store: ObjectStore
) -> None:
    key = f"{NAMESPACE}/{PAIR}/{LATEST}"
    publish(pair, 1, promote=True)
    publish(pair, 0, promote=True)
    older = {k: v for k, v in json.loads(object_store.get(key)).items() if k not in ("changes", "rolledBack")}
    object_store.put(key, json.dumps(older).encode())  # as written before the trail existed
    latest = pair.latest()
    assert latest is not None and latest.changes == () and latest.rolled_back == () and latest.change is None
    for i in range(1, CHANGES_LIMIT + 5):
        pair.promote(version(i % 2))
    latest = pair.latest()
    assert latest is not None and len(latest.changes) == CHANGES_LIMIT
    object_store.put(key, json.dumps({**older, "changes": [{"version": "yesterday"}]}).encode())
    with pytest.raises(StoreError, match="malformed change: version"):
        pair.latest()


def test_candle_cache_round_trip(pair: PairStore, object_store: ObjectStore) -> None:
    frame = pd.DataFrame(
        {
            "open_time": pd.date_range("2024-01-01", periods=4, freq="h", tz="UTC"),
            "close_time": pd.date_range("2024-01-01 00:59:59.999", periods=4, freq="h", tz="UTC"),
            "close": [42000.5, 42100.25, 41999.0, 42010.75],
            "trades": pd.array([1200, None, 980, 1500], dtype="Int64"),
        }
    )
    assert pair.read_candles("1h") is None
    pair.write_candles("1h", frame)
    assert object_store.list(f"{NAMESPACE}/{PAIR}/candles/") == [f"{NAMESPACE}/{PAIR}/candles/1h.parquet"]

    back = pair.read_candles("1h")
    assert back is not None
    pd.testing.assert_frame_equal(back, frame)
    assert dict(back.dtypes) == dict(frame.dtypes)
    assert str(back["open_time"].dt.tz) == "UTC"
    assert back["trades"].dtype == "Int64" and back["trades"].isna().tolist() == [False, True, False, False]
    assert pair.read_candles("1d") is None

    object_store.put(pair.candles_key("1h"), b"not parquet")
    with pytest.raises(StoreError, match="unreadable"):
        pair.read_candles("1h")


# --- crash safety -------------------------------------------------------------------------------------------


class InjectedCrash(Exception):
    """The simulated crash; not a StoreError, so nothing can mistake it for an ordinary store failure."""


class CrashingStore:
    """Fault injection around a REAL store, not a fake: every call goes to the wrapped LocalStore or S3Store,
    except that put number `crash_at` (1-based) crashes, either before it writes (`when="before"`) or just
    after its write landed (`when="after"`: the process died before it learned of the success)."""

    def __init__(self, inner: ObjectStore, crash_at: int | None = None, when: str = "before") -> None:
        self.inner = inner
        self.crash_at = crash_at
        self.when = when
        self.put_keys: list[str] = []

    def put(self, key: str, data: bytes) -> None:
        number = len(self.put_keys) + 1
        if number == self.crash_at and self.when == "before":
            raise InjectedCrash(f"crash before put {number} ({key})")
        self.inner.put(key, data)
        self.put_keys.append(key)
        if number == self.crash_at and self.when == "after":
            raise InjectedCrash(f"crash after put {number} ({key})")

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def list(self, prefix: str) -> list[str]:
        return self.inner.list(prefix)

    def delete(self, keys: Iterable[str]) -> None:
        self.inner.delete(keys)

    def sweep(self, prefix: str, older_than_s: float) -> Sequence[str]:
        return self.inner.sweep(prefix, older_than_s)

    def uri(self, key: str) -> str:
        return self.inner.uri(key)


def test_a_crash_at_any_put_leaves_the_promoted_model_in_place(pair: PairStore, object_store: ObjectStore) -> None:
    publish(pair, 1, promote=True)
    latest_before = object_store.get(LATEST_KEY)

    # A successful publish, counted, to learn the order of its puts (in another namespace of the same store).
    counter = CrashingStore(object_store)
    PairStore(counter, "counting", PAIR).publish(version(1), files_for(1), {}, promote=True)
    written = [key.removeprefix(f"counting/{PAIR}/versions/{version(1)}/") for key in counter.put_keys]
    assert sorted(written[:2]) == sorted([CONFIG, MODEL])
    assert written[2:] == [METADATA, f"counting/{PAIR}/{LATEST}"]  # metadata.json, then latest.json last
    total = len(written)

    cases = [("before", n) for n in range(1, total + 1)] + [("after", n) for n in range(1, total)]
    for run, (when, crash_at) in enumerate(cases, start=10):
        case = f"crash {when} put {crash_at} of {total}"
        broken = version(run)
        crashing = PairStore(CrashingStore(object_store, crash_at, when), NAMESPACE, PAIR)
        with pytest.raises(InjectedCrash):
            crashing.publish(broken, files_for(run), {"pair": PAIR}, promote=True)

        assert object_store.get(LATEST_KEY) == latest_before, case
        latest = pair.latest()
        assert latest is not None and latest.version == version(1), case
        assert pair.read_model(version(1)) == files_for(1)[MODEL], case

        metadata_landed = crash_at > total - 1 or (when == "after" and crash_at == total - 1)
        listed = pair.versions()
        if metadata_landed:
            # Complete (every file and metadata.json uploaded) but never promoted: listed, and sound.
            assert broken in listed, case
            assert pair.read_model(broken) == files_for(run)[MODEL], case
        else:
            assert broken not in listed, case
        for v in listed:  # nothing listed is broken
            for path in pair.metadata(v)["files"]:
                pair.read_file(v, path)

    # The store still works after all that: the next run publishes and promotes normally.
    publish(pair, 99, promote=True)
    latest = pair.latest()
    assert latest is not None and latest.version == version(99)


# --- S3 only: credentials, configuration from the environment -----------------------------------------------


def test_a_wrong_secret_key_is_a_clear_store_error(s3_server: S3Server, s3_store: S3Store) -> None:
    s3_store.put("models/latest.json", b"{}")
    wrong = S3Store(s3_server.client(secret_key="not-the-secret"), s3_store.bucket, endpoint=s3_server.endpoint)
    with pytest.raises(StoreError) as caught:
        wrong.get("models/latest.json")
    # Not NotFoundError: a wrong key must not look like "nothing was promoted yet".
    assert not isinstance(caught.value, NotFoundError)
    message = str(caught.value)
    assert "SignatureDoesNotMatch" in message and "AWS_SECRET_ACCESS_KEY" in message
    assert s3_server.secret_key not in message
    with pytest.raises(StoreError, match="SignatureDoesNotMatch"):
        wrong.put("models/latest.json", b"overwritten")
    with pytest.raises(StoreError, match="SignatureDoesNotMatch"):
        wrong.list("")
    assert s3_store.get("models/latest.json") == b"{}"


def test_open_store_with_a_wrong_secret_fails_at_once(s3_env: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(StoreError, match="AWS_SECRET_ACCESS_KEY"):
        open_store(f"s3://{unique_bucket()}")


def test_open_store_from_the_environment(s3_env: S3Server) -> None:
    bucket = unique_bucket()
    url = f"s3://{bucket}/team/models"
    store = open_store(url)
    assert isinstance(store, S3Store)
    store.put("ns/x.json", b"{}")
    assert store.uri("ns/x.json") == f"s3://{bucket}/team/models/ns/x.json"
    assert store.list("") == ["ns/x.json"]

    pair = pair_store(url, NAMESPACE, PAIR)
    stored = publish(pair, 1, promote=True)
    assert stored["storageUri"] == f"s3://{bucket}/team/models/{version_prefix(version(1))}"

    raw = s3_env.client()
    names = sorted(o.object_name or "" for o in raw.list_objects(bucket, recursive=True))
    assert names == sorted([f"team/models/{key}" for key in store.list("")]) and f"team/models/{LATEST_KEY}" in names
    assert open_store(url).get(LATEST_KEY) == store.get(LATEST_KEY)  # a second store sees the same objects
    raw.remove_bucket(bucket)


def test_endpoint_without_scheme_and_aws_endpoint_url(s3_env: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = unique_bucket()
    monkeypatch.setenv("S3_ENDPOINT", s3_env.host)  # no scheme: S3_USE_HTTPS decides
    monkeypatch.setenv("S3_USE_HTTPS", "0")
    open_store(f"s3://{bucket}").put("k", b"via host:port")

    monkeypatch.delenv("S3_ENDPOINT")
    monkeypatch.delenv("S3_USE_HTTPS")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_env.endpoint)
    assert open_store(f"s3://{bucket}").get("k") == b"via host:port"
    s3_env.client().remove_bucket(bucket)


def test_a_403_on_bucket_creation_is_a_clear_store_error(
    s3_env: S3Server, s3_store: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_env.limited_access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_env.limited_secret_key)
    bucket = unique_bucket()
    with pytest.raises(StoreError, match=rf"bucket {bucket} does not exist .* may not create it"):
        open_store(f"s3://{bucket}")
    assert not s3_env.client().bucket_exists(bucket)
    # The same identity works on a bucket that exists: only the creation was refused.
    store = open_store(f"s3://{s3_store.bucket}")
    store.put("k", b"v")
    assert s3_store.get("k") == b"v"


def test_bucket_is_not_created_when_forbidden(s3_env: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3_CREATE_BUCKET", "0")
    bucket = unique_bucket()
    with pytest.raises(StoreError, match="does not exist"):
        open_store(f"s3://{bucket}")
    assert not s3_env.client().bucket_exists(bucket)


def test_a_missing_bucket_is_not_a_missing_object(s3_server: S3Server) -> None:
    store = S3Store(s3_server.client(), unique_bucket(), endpoint=s3_server.endpoint)
    with pytest.raises(StoreError, match="NoSuchBucket") as caught:
        store.get("default/btc-usdt/latest.json")
    assert not isinstance(caught.value, NotFoundError)


def test_an_unreachable_endpoint_is_a_clear_store_error(monkeypatch: pytest.MonkeyPatch) -> None:
    (port,) = free_ports(1)  # nothing listens there
    monkeypatch.setenv("S3_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    backoffs: list[float] = []  # urllib3's waits before each retry, recorded instead of slept

    def recorded(retry: urllib3.Retry, response: object = None) -> None:
        backoffs.append(retry.get_backoff_time())

    monkeypatch.setattr(urllib3.Retry, "sleep", recorded)
    with pytest.raises(StoreError, match=rf"cannot reach S3 at http://127\.0\.0\.1:{port}.*S3_ENDPOINT"):
        open_store("s3://models")
    # A few quick retries, not minio's five-minute default.
    assert len(backoffs) == 3 and sum(backoffs) < 2.0, backoffs


def test_tls_to_a_plain_http_server_is_a_clear_store_error(s3_env: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3_ENDPOINT", f"https://{s3_env.host}")
    monkeypatch.setenv("S3_VERIFY_TLS", "0")
    with pytest.raises(StoreError, match=r"cannot reach S3 at https://.*SSLError.*S3_USE_HTTPS"):
        open_store(f"s3://{unique_bucket()}")


def test_an_invalid_bucket_name_is_a_clear_store_error(s3_env: S3Server) -> None:
    with pytest.raises(StoreError, match=r"InvalidBucketName.*fix the bucket name"):
        open_store("s3://Models_2026")


def test_connections_are_reused(s3_server: S3Server, s3_store: S3Store) -> None:
    pool = http_client()
    client = Minio(
        s3_server.host,
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
        secure=False,
        http_client=pool,
    )
    store = S3Store(client, s3_store.bucket, endpoint=s3_server.endpoint)
    for i in range(20):
        store.put(f"k{i}", b"x" * 1000)
        assert store.get(f"k{i}") == b"x" * 1000
        with pytest.raises(NotFoundError):
            store.get(f"missing{i}")
    assert len(store.list("")) == 20
    # 60 requests went through this pool on one or two kept-alive connections: a response not handed back
    # would open a new connection for every request.
    assert 1 <= pool.connection_from_url(s3_server.endpoint).num_connections <= 2


def test_parse_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("S3_USE_HTTPS", raising=False)
    assert parse_endpoint("http://127.0.0.1:8333") == ("127.0.0.1:8333", False)
    assert parse_endpoint("https://minio.example/") == ("minio.example", True)
    assert parse_endpoint(None) == ("s3.amazonaws.com", True)
    assert parse_endpoint("minio:9000") == ("minio:9000", True)
    monkeypatch.setenv("S3_USE_HTTPS", "0")
    assert parse_endpoint("minio:9000") == ("minio:9000", False)
    assert parse_endpoint("https://minio:9000") == ("minio:9000", True)  # the scheme wins
    for bad in ("ftp://minio", "http://minio:9000/bucket", "http://"):
        with pytest.raises(StoreError):
            parse_endpoint(bad)
    monkeypatch.setenv("S3_USE_HTTPS", "maybe")
    with pytest.raises(StoreError, match="S3_USE_HTTPS"):
        parse_endpoint("minio:9000")
    for secret in ("http://user:hunter2@minio:9000", "admin:hunter2@minio:9000", "https://hunter2@minio/bucket"):
        with pytest.raises(StoreError, match="user name or password") as caught:
            parse_endpoint(secret)
        assert "hunter2" not in str(caught.value) and "AWS_SECRET_ACCESS_KEY" in str(caught.value)


def test_http_client_has_bounded_timeouts_and_retries() -> None:
    pool = http_client(verify_tls=False)
    assert pool.connection_pool_kw["cert_reqs"] == "CERT_NONE"
    assert http_client().connection_pool_kw["cert_reqs"] == "CERT_REQUIRED"
    timeout = pool.connection_pool_kw["timeout"]
    assert timeout.connect_timeout <= 10 and timeout.read_timeout <= 120
    assert 0 < pool.connection_pool_kw["retries"].total <= 5
    assert pool.connection_pool_kw["maxsize"] >= 2


@pytest.mark.parametrize("url", ["s3://", "s3:///prefix", "s3://bucket?x=1"])
def test_malformed_s3_urls_are_refused(url: str) -> None:
    with pytest.raises(StoreError, match="s3://bucket"):
        open_store(url)


def test_local_stores_relative_or_absolute_are_folders_named_by_their_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default store is a relative folder: each spelling of a folder means one place below the working folder."""
    monkeypatch.chdir(tmp_path)
    expected = str(tmp_path / "models")
    for url in ("models", "./models", "file:models", "file:./models", f"file://{tmp_path}/models", expected):
        assert store_location(url) == ("file", expected), url
        store = open_store(url)
        assert isinstance(store, LocalStore) and str(store.root) == expected
    assert store_location(DEFAULT_STORE) == ("file", str(tmp_path / ".makeusrich" / "store"))
    open_store(DEFAULT_STORE).put("k", b"v")  # usable as it is, no URL rewriting needed
    assert (tmp_path / ".makeusrich" / "store" / "k").read_bytes() == b"v"


@pytest.mark.parametrize(
    ("url", "advice"),
    [
        ("file://./.makeusrich/store", "write file:./.makeusrich/store or ./.makeusrich/store"),
        ("file://models", "write file:models or models"),
        ("s4://bucket", "use a folder (./models"),
        ("", "the store URL is empty"),
    ],
)
def test_store_urls_that_name_no_store_say_what_to_write(url: str, advice: str) -> None:
    with pytest.raises(StoreError, match=re.escape(advice)):
        store_location(url)
