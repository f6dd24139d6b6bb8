"""Where a store is: its URL or folder, checked without I/O, and opening it (S3 through makeusrich.store.s3, a
folder through makeusrich.store.local)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from makeusrich.errors import StoreError
from makeusrich.store.base import ObjectStore, PairStore, version_key
from makeusrich.store.local import LocalStore

# A folder below the working directory: what `make run` and the other commands use when told nothing.
DEFAULT_STORE = ".makeusrich/store"
STORE_ENV = "MAKEUSRICH_STORE"
STORE_HELP = "model store: a folder (relative ones start from the working directory) or s3://bucket[/prefix]"

STORE_FORMS = "a folder (./models, /srv/models, file:./models or file:///srv/models) or s3://bucket[/prefix]"


def store_location(url: str) -> tuple[str, str]:
    """What a store URL names, checked without any I/O: ("file", absolute folder) or ("s3", the URL).

    A folder is a plain path or a `file:` URL; a relative one (`./models`, `file:./models`, `file:models`) is
    resolved against the working directory, so that the store names itself by its absolute path."""
    if not url.strip():
        raise StoreError(f"the store URL is empty; use {STORE_FORMS}")
    parsed = urlparse(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            relative = f"{parsed.netloc}{parsed.path}"
            raise StoreError(
                f"store URL {url!r} names the host {parsed.netloc!r}; for a folder relative to the working "
                f"directory write file:{relative} or {relative}, for an absolute one file:///absolute/path"
            )
        return "file", str(Path(unquote(parsed.path)).expanduser().resolve())
    if parsed.scheme == "":
        return "file", str(Path(url).expanduser().resolve())
    if parsed.scheme == "s3":
        if not parsed.netloc or parsed.query or parsed.fragment:
            raise StoreError(f"{url!r} is not an S3 store URL; use s3://bucket or s3://bucket/prefix")
        return "s3", url
    raise StoreError(f"unsupported store URL {url!r}: use {STORE_FORMS}")


def open_store(url: str, *, create_bucket: bool | None = None) -> ObjectStore:
    """An object store from a URL or path (see `store_location`). `s3://bucket[/prefix]` is S3, with endpoint,
    credentials and TLS from the environment (see makeusrich.store.s3); opening it checks the bucket, and creates a
    missing one unless `create_bucket` is False (or S3_CREATE_BUCKET=0 when it is None)."""
    kind, where = store_location(url)
    if kind == "file":
        return LocalStore(where)
    from makeusrich.store.s3 import S3Store  # minio: loaded only for an S3 store

    return S3Store.from_url(where, create_bucket=create_bucket)


def storage_uri(url: str, namespace: str, pair: str, version: str) -> str:
    """The folder a version lives in (the storageUri KServe mounts), from the store's URL alone: what
    `PairStore.storage_uri` says once the store is open, with no I/O (render works offline)."""
    kind, where = store_location(url)
    key = version_key(namespace, pair, version)
    if kind == "file":
        return LocalStore(where).uri(key)
    parsed = urlparse(where)
    prefix = parsed.path.strip("/")
    return f"s3://{parsed.netloc}/{prefix + '/' if prefix else ''}{key}"


def pair_store(url: str, namespace: str, pair: str) -> PairStore:
    return PairStore(open_store(url), namespace, pair)
