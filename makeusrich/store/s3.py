"""S3 (MinIO, AWS, SeaweedFS, ...) as an object store, through the `minio` client.

Configuration comes from the environment, the same variables KServe's storage initializer reads, so one Secret
serves the trainer, the operator and the predictor:

    S3_ENDPOINT or AWS_ENDPOINT_URL   http://127.0.0.1:8333, https://minio.example, or host[:port]
                                      (default s3.amazonaws.com); a scheme decides TLS
    S3_USE_HTTPS                      0/1, TLS for an endpoint without a scheme (default 1)
    S3_VERIFY_TLS                     0 skips certificate checks (self-signed MinIO); default 1
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
    AWS_REGION or AWS_DEFAULT_REGION  optional
    S3_CREATE_BUCKET                  0 refuses to create a missing bucket; default 1
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn
from urllib.parse import urlparse

import certifi
import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import InvalidResponseError, S3Error, ServerError

from makeusrich.errors import NotFoundError, StoreError

DEFAULT_ENDPOINT = "s3.amazonaws.com"
# Connect fast so a wrong endpoint fails within seconds; reads may wait on a busy server, but not forever
# (minio's own default is five minutes for both).
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0
# A few quick retries ride out a server restart or a dropped keep-alive connection; urllib3 retries reads
# only for idempotent methods (GET, PUT, DELETE, HEAD), so a multi-delete POST is never sent twice.
RETRIES = urllib3.Retry(
    total=3,
    connect=3,
    read=2,
    status=2,
    backoff_factor=0.2,
    status_forcelist=(500, 502, 503, 504),
    raise_on_status=False,  # hand the last answer to minio, which turns it into an S3Error with the reason
)
POOL_SIZE = 10

CREDENTIAL_CODES = frozenset(
    {"AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId", "InvalidToken", "ExpiredToken"}
)
HINTS = {
    "NoSuchBucket": "create the bucket or fix the s3:// URL",
    "InvalidBucketName": "fix the bucket name in the s3:// URL (lower-case letters, digits, dots and hyphens)",
    "AuthorizationHeaderMalformed": "set AWS_REGION to the bucket's region",
    **dict.fromkeys(CREDENTIAL_CODES, "check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the bucket's permissions"),
}
# What minio and urllib3 raise besides S3Error: a bad name, an answer that is not S3's, no answer at all.
FAILURES = (ValueError, ServerError, InvalidResponseError, urllib3.exceptions.HTTPError, OSError)
CONTENT_TYPES = {".json": "application/json", ".pbtxt": "text/plain", ".onnx": "application/octet-stream"}


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise StoreError(f"{name}={value!r} is not a yes/no value; set it to 1 or 0")


USERINFO = re.compile(r"^([a-z][a-z0-9+.-]*://)?[^/@]*@", re.IGNORECASE)
"""A user name and password written into a URL (`http://user:pass@host`), which minio would not use anyway."""


def parse_endpoint(value: str | None) -> tuple[str, bool]:
    """`(host[:port], secure)` from an endpoint setting: a scheme wins, S3_USE_HTTPS decides without one."""
    value = (value or "").strip() or DEFAULT_ENDPOINT
    shown = USERINFO.sub(r"\1", value)  # what a message may repeat: never a password written into the URL
    if shown != value:
        raise StoreError(
            f"S3 endpoint {shown!r} had a user name or password before '@' (not repeated here); remove it and give "
            "the credentials in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    if "://" not in value:
        host, secure = value.rstrip("/"), _flag("S3_USE_HTTPS", True)
    else:
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise StoreError(f"S3 endpoint {value!r} is not a URL like http://host:port or https://host")
        if parsed.path.strip("/") or parsed.query:
            raise StoreError(f"S3 endpoint {value!r} has a path; give only scheme, host and port")
        host, secure = parsed.netloc, parsed.scheme == "https"
    if "/" in host or not host:
        raise StoreError(f"S3 endpoint {value!r} is not host[:port]; give only scheme, host and port")
    return host, secure


def http_client(verify_tls: bool = True) -> urllib3.PoolManager:
    """A pool with bounded timeouts and a small retry policy (minio's default waits five minutes)."""
    return urllib3.PoolManager(
        num_pools=4,
        maxsize=POOL_SIZE,
        timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S),
        retries=RETRIES,
        cert_reqs="CERT_REQUIRED" if verify_tls else "CERT_NONE",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
    )


class S3Store:
    """Objects under `prefix` in one bucket. S3 replaces an object in a single step, so `put` is atomic."""

    def __init__(self, client: Minio, bucket: str, prefix: str = "", *, endpoint: str = "") -> None:
        if not bucket:
            raise StoreError("an S3 store needs a bucket name: use s3://bucket[/prefix]")
        self.client = client
        self.bucket = bucket
        prefix = prefix.strip("/")
        self.prefix = prefix + "/" if prefix else ""
        self.endpoint = endpoint or "the S3 endpoint"

    @classmethod
    def from_url(cls, url: str, *, create_bucket: bool | None = None) -> S3Store:
        """A store for `s3://bucket[/prefix]`, configured from the environment (see the module docstring).
        Checks the bucket at once, so a wrong endpoint, key or bucket fails here with a clear message rather
        than half-way through a training run; creates it when missing unless S3_CREATE_BUCKET=0."""
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc or parsed.query or parsed.fragment:
            raise StoreError(f"{url!r} is not an S3 store URL; use s3://bucket or s3://bucket/prefix")
        env = os.environ
        host, secure = parse_endpoint(env.get("S3_ENDPOINT") or env.get("AWS_ENDPOINT_URL"))
        access_key = env.get("AWS_ACCESS_KEY_ID") or None
        secret_key = env.get("AWS_SECRET_ACCESS_KEY") or None
        if bool(access_key) != bool(secret_key):
            raise StoreError("set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither (anonymous)")
        try:
            client = Minio(
                host,
                access_key=access_key,
                secret_key=secret_key,
                session_token=env.get("AWS_SESSION_TOKEN") or None,
                secure=secure,
                region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
                http_client=http_client(_flag("S3_VERIFY_TLS", True)),
            )
        except ValueError as exc:
            raise StoreError(f"cannot use S3 endpoint {host!r}: {exc}; check S3_ENDPOINT") from exc
        store = cls(client, parsed.netloc, parsed.path, endpoint=("https://" if secure else "http://") + host)
        store.ensure_bucket(create=_flag("S3_CREATE_BUCKET", True) if create_bucket is None else create_bucket)
        return store

    def __repr__(self) -> str:
        return f"S3Store({self.uri('')!r} at {self.endpoint})"

    # --- the ObjectStore protocol ------------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        if not key or key.endswith("/"):
            raise StoreError(f"cannot write {self.uri(key)}: an object key must not be empty or end in '/'")
        content_type = CONTENT_TYPES.get(os.path.splitext(key)[1], "application/octet-stream")
        with self._translate("write", key):
            self.client.put_object(self.bucket, self._name(key), io.BytesIO(data), len(data), content_type=content_type)

    def get(self, key: str) -> bytes:
        if not key or key.endswith("/"):  # a folder, as in LocalStore (SeaweedFS would answer with b"")
            raise NotFoundError(f"{self.uri(key)} is a folder, not an object")
        response = None
        try:
            with self._translate("read", key):
                response = self.client.get_object(self.bucket, self._name(key))
                return response.read()
        finally:
            if response is not None:
                response.close()
                response.release_conn()

    def list(self, prefix: str) -> list[str]:
        keys = []
        with self._translate("list", prefix):
            for obj in self.client.list_objects(self.bucket, prefix=self.prefix + prefix, recursive=True):
                name = obj.object_name
                # Folder markers (keys ending in "/", made by web consoles and some tools) are not objects.
                if name is None or obj.is_dir or name.endswith("/"):
                    continue
                keys.append(name[len(self.prefix) :])
        return sorted(keys)

    def delete(self, keys: Iterable[str]) -> None:
        objects = [DeleteObject(self._name(key)) for key in keys]
        if not objects:
            return
        with self._translate("delete", objects[0].name[len(self.prefix) :]):
            errors = [e for e in self.client.remove_objects(self.bucket, objects) if e.code != "NoSuchKey"]
        if errors:
            first = errors[0]
            raise StoreError(
                f"S3 did not delete {len(errors)} object(s), first s3://{self.bucket}/{first.name or ''} "
                f"({first.code}: {first.message}); check the credentials' delete permission and retry"
            )

    def sweep(self, prefix: str, older_than_s: float) -> Sequence[str]:
        """Nothing to do: an S3 put is whole or absent (an interrupted multipart upload is invisible, and the
        bucket's lifecycle rule AbortIncompleteMultipartUpload is what reclaims its parts)."""
        return []

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"

    # --- bucket ------------------------------------------------------------------------------------------

    def ensure_bucket(self, create: bool = True) -> None:
        """Make sure the bucket exists, creating it when allowed."""
        with self._translate("check the bucket", ""):
            if self.client.bucket_exists(self.bucket):
                return
        if not create:
            raise StoreError(
                f"bucket {self.bucket} does not exist at {self.endpoint}; create it or fix the s3:// URL "
                "(S3_CREATE_BUCKET=0 forbids creating it)"
            )
        try:
            self.client.make_bucket(self.bucket)
        except S3Error as exc:
            if exc.code == "BucketAlreadyOwnedByYou":  # created by someone else between our check and now
                return
            if exc.code in CREDENTIAL_CODES or getattr(exc.response, "status", None) == 403:
                raise StoreError(
                    f"bucket {self.bucket} does not exist at {self.endpoint} and these credentials may not "
                    f"create it ({exc.code}); create the bucket or grant s3:CreateBucket"
                ) from exc
            self._fail("create the bucket", "", exc)
        except FAILURES as exc:
            self._fail("create the bucket", "", exc)

    # --- helpers -----------------------------------------------------------------------------------------

    def _name(self, key: str) -> str:
        return self.prefix + key

    @contextmanager
    def _translate(self, action: str, key: str) -> Iterator[None]:
        """Turn whatever minio or urllib3 raise into NotFoundError or one StoreError sentence."""
        try:
            yield
        except S3Error as exc:
            if exc.code == "NoSuchKey" and action == "read":
                raise NotFoundError(f"{self.uri(key)} does not exist") from None
            self._fail(action, key, exc)
        except FAILURES as exc:
            self._fail(action, key, exc)

    def _fail(self, action: str, key: str, exc: Exception) -> NoReturn:
        where = self.uri(key)
        if isinstance(exc, S3Error):
            reason = f"{exc.code}: {exc.message}" if exc.message else str(exc.code)
            hint = HINTS.get(str(exc.code), "retry, or look at the S3 server's log")
            message = f"S3 at {self.endpoint} refused to {action} {where} ({reason}); {hint}"
        elif isinstance(exc, ServerError | InvalidResponseError):
            message = (
                f"S3 at {self.endpoint} gave an unusable answer when asked to {action} {where} ({exc}); "
                "check that S3_ENDPOINT points at an S3 server and retry"
            )
        elif isinstance(exc, ValueError):
            message = f"cannot {action} {where}: {exc}; fix the bucket name or key"
        else:
            cause = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason else exc
            message = (
                f"cannot reach S3 at {self.endpoint} to {action} {where} ({type(cause).__name__}: {cause}); "
                "check S3_ENDPOINT, S3_USE_HTTPS and that the server is running"
            )
        raise StoreError(message) from exc
