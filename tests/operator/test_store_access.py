"""How the operator reads the model store: read-only, metadata read once per version."""

from __future__ import annotations

import pytest

from makeusrich.errors import StoreError
from makeusrich.operator.store_access import StoreAccess
from makeusrich.store import PairStore
from makeusrich.store.s3 import S3Store
from tests.fixtures.metadata import metadata_document
from tests.fixtures.s3server import S3Server, unique_bucket

VERSION = "20260101T000000Z"


async def test_a_missing_bucket_is_an_error_not_a_new_bucket(s3_env: S3Server) -> None:
    bucket = unique_bucket()
    access = StoreAccess(f"s3://{bucket}")
    try:
        with pytest.raises(StoreError):
            await access.latest("default", "btc-usdt")
        assert not s3_env.client().bucket_exists(bucket)
    finally:
        access.close()


async def test_latest_and_metadata_come_from_the_store_and_metadata_is_cached(
    s3_env: S3Server, s3_store: S3Store
) -> None:
    PairStore(s3_store, "default", "btc-usdt").publish(
        VERSION, {"btc-usdt/1/model.onnx": b"onnx"}, metadata_document(VERSION), promote=True
    )
    access = StoreAccess(f"s3://{s3_store.bucket}")
    try:
        latest = await access.latest("default", "btc-usdt")
        assert latest is not None and latest.version == VERSION
        assert latest.storage_uri == await access.storage_uri("default", "btc-usdt", VERSION)
        first = await access.metadata("default", "btc-usdt", VERSION)
        reads = access.reads
        assert await access.metadata("default", "btc-usdt", VERSION) == first and access.reads == reads
        assert await access.latest("default", "other") is None
    finally:
        access.close()
