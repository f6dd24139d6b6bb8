"""Model store (contract 3): S3/MinIO or a local folder behind one interface."""

from __future__ import annotations

from urllib.parse import unquote, urlparse

from makeusrich.errors import StoreError
from makeusrich.store.base import Latest, ObjectStore, PairStore, new_version
from makeusrich.store.local import LocalStore

__all__ = ["Latest", "LocalStore", "ObjectStore", "PairStore", "new_version", "open_store", "pair_store"]


def open_store(url: str) -> ObjectStore:
    """An object store from a URL: `file:///path` or a plain path for a folder, `s3://bucket[/prefix]` for S3
    (endpoint, credentials and TLS from the environment; see makeusrich.store.s3)."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise StoreError(f"store URL {url!r} names a host; a local store is file:///absolute/path")
        return LocalStore(unquote(parsed.path))
    if parsed.scheme == "":
        return LocalStore(url)
    if parsed.scheme == "s3":
        from makeusrich.store.s3 import S3Store

        return S3Store.from_url(url)
    raise StoreError(f"unsupported store URL {url!r}: use file:///path/to/folder or s3://bucket[/prefix]")


def pair_store(url: str, namespace: str, pair: str) -> PairStore:
    return PairStore(open_store(url), namespace, pair)
