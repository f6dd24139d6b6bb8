"""A small async Kubernetes API client for the operator's own writes (children, pair status, pod reads).

kopf brings its own client but keeps it private; this one reuses kopf's login result (a ConnectionInfo) and adds
what an operator needs around every call: bounded timeouts, and retries with jittered exponential backoff on
429, 5xx, 409 conflicts of updates, dropped connections and timeouts. Creates are safe to retry because every
object has a fixed name: a retried POST that already went through answers 409, which callers treat as done.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import random
import ssl
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from kopf import ConnectionInfo

from makeusrich import __version__

log = logging.getLogger("makeusrich.operator.kube")

RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
USER_AGENT = f"makeusrich-operator/{__version__}"


@dataclass(frozen=True)
class Ref:
    """A resource type: where its objects live in the API."""

    group: str
    version: str
    plural: str
    kind: str

    @property
    def selector(self) -> tuple[str, str, str]:
        """The resource as kopf's decorators name it."""
        return (self.group, self.version, self.plural)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        path = f"{base}/namespaces/{quote(namespace)}/{self.plural}"
        if name is not None:
            path += f"/{quote(name)}"
        if subresource:
            path += f"/{subresource}"
        return path


PAIRS = Ref("makeusrich.io", "v1alpha1", "currencypairs", "CurrencyPair")
CRONJOBS = Ref("batch", "v1", "cronjobs", "CronJob")
JOBS = Ref("batch", "v1", "jobs", "Job")
PODS = Ref("", "v1", "pods", "Pod")
ISVCS = Ref("serving.kserve.io", "v1beta1", "inferenceservices", "InferenceService")


class ApiError(Exception):
    """The API refused a request, or could not be reached even after retries."""

    def __init__(self, status: int, reason: str, message: str, what: str = "") -> None:
        self.status, self.reason, self.message, self.what = status, reason, message, what
        where = f"{what}: " if what else ""
        code = f"HTTP {status} " if status else ""
        super().__init__(f"{where}{code}{reason}: {message}".rstrip(": "))


class NotFound(ApiError):
    pass


class AlreadyExists(ApiError):
    pass


def _error(status: int, payload: Any, what: str) -> ApiError:
    payload = payload if isinstance(payload, Mapping) else {}
    reason = str(payload.get("reason") or {404: "NotFound", 409: "Conflict"}.get(status, "Error"))
    message = str(payload.get("message") or "")
    if status == 404:
        return NotFound(status, reason, message, what)
    if status == 409 and what.startswith("POST"):
        return AlreadyExists(status, reason, message, what)
    return ApiError(status, reason, message, what)


def _decoded(data: str | bytes) -> bytes:
    """kubeconfig's *-data fields are base64; PEM passed directly is used as it is."""
    raw = data.encode() if isinstance(data, str) else data
    return raw if raw.lstrip().startswith(b"-----BEGIN") else base64.b64decode(raw)


def ssl_context(info: ConnectionInfo) -> ssl.SSLContext | bool:
    """TLS settings from kopf's ConnectionInfo (CA, client certificate, insecure flag)."""
    if not info.server.startswith("https"):
        return True  # aiohttp's default for plain http
    context = ssl.create_default_context()
    if info.ca_path:
        context.load_verify_locations(cafile=os.fsdecode(info.ca_path))
    elif info.ca_data:
        context.load_verify_locations(cadata=_decoded(info.ca_data).decode())
    if info.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    cert, key = info.certificate_path, info.private_key_path
    with tempfile.TemporaryDirectory() as folder:
        if info.certificate_data:
            cert = os.path.join(folder, "cert.pem")
            with open(cert, "wb") as handle:
                handle.write(_decoded(info.certificate_data))
        if info.private_key_data:
            key = os.path.join(folder, "key.pem")
            with open(key, "wb") as handle:
                handle.write(_decoded(info.private_key_data))
        if cert:
            context.load_cert_chain(os.fsdecode(cert), os.fsdecode(key) if key else None)
    return context


def auth_headers(info: ConnectionInfo) -> dict[str, str]:
    """Authorization exactly as kopf sends it (bearer token, other schemes, or basic auth)."""
    return dict(info.as_http_headers())


class KubeApi:
    """JSON over HTTP to the API server, with retries. `login` gives fresh credentials (called again on 401,
    since service-account tokens rotate)."""

    def __init__(
        self,
        login: Callable[[], ConnectionInfo],
        *,
        attempts: int = 7,
        base_delay: float = 0.1,
        max_delay: float = 5.0,
        timeout: float = 30.0,
        connections: int = 32,
    ) -> None:
        self._login = login
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 10.0))
        self.connections = connections
        self._session: aiohttp.ClientSession | None = None
        self._server = ""
        self.requests = 0  # counted for the benchmark's requests-per-pair figure

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            info = self._login()
            self._server = info.server.rstrip("/")
            connector = aiohttp.TCPConnector(limit=self.connections, ssl=ssl_context(info))
            headers = {"User-Agent": USER_AGENT, "Accept": "application/json", **auth_headers(info)}
            self._session = aiohttp.ClientSession(connector=connector, headers=headers, timeout=self.timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        delay = min(self.max_delay, self.base_delay * 2**attempt) * random.uniform(0.5, 1.0)
        if retry_after:
            with contextlib.suppress(ValueError):
                delay = max(delay, min(float(retry_after), 30.0))
        return float(delay)

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        what = f"{method} {path}"
        relogged = False
        last: ApiError | None = None
        for attempt in range(self.attempts):
            session = self._open()
            retry_after = None
            try:
                self.requests += 1
                async with session.request(
                    method,
                    self._server + path,
                    data=None if body is None else json.dumps(body, separators=(",", ":")).encode(),
                    params=params,
                    headers={"Content-Type": content_type} if body is not None else None,
                ) as response:
                    if response.status < 400:
                        return await response.json(content_type=None) if response.content_length != 0 else {}
                    try:
                        payload = await response.json(content_type=None)
                    except (ValueError, aiohttp.ContentTypeError):
                        payload = {"message": (await response.text())[:300]}
                    last = _error(response.status, payload, what)
                    retry_after = response.headers.get("Retry-After")
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
                last = ApiError(0, "Unreachable", str(exc) or type(exc).__name__, what)
            if last.status == 401 and not relogged:
                relogged = True  # the token rotated: log in again, once
                await self.close()
                continue
            retried = last.status in RETRIED_STATUSES or last.status == 0 or (last.status == 409 and method != "POST")
            if not retried or attempt == self.attempts - 1:
                raise last
            delay = self._delay(attempt, retry_after)
            log.debug("retrying %s in %.2f s after %s", what, delay, last)
            await asyncio.sleep(delay)
        raise last or ApiError(0, "Unreachable", "no attempt was made", what)

    # --- verbs -------------------------------------------------------------------------------------------------

    async def get(self, ref: Ref, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = await self.request("GET", ref.path(namespace, name))
        except NotFound:
            return None
        return result

    async def list(self, ref: Ref, namespace: str, selector: Mapping[str, str]) -> list[dict[str, Any]]:
        params = {"labelSelector": ",".join(f"{k}={v}" for k, v in selector.items())}
        result = await self.request("GET", ref.path(namespace), params=params)
        items = result.get("items") or []
        # Filtering again costs nothing and keeps us right with servers (or emulators) that ignore selectors.
        return [
            item
            for item in items
            if all(((item.get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in selector.items())
        ]

    async def create(self, ref: Ref, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", ref.path(namespace), body=body)
        return result

    async def patch(
        self,
        ref: Ref,
        namespace: str,
        name: str,
        body: Mapping[str, Any],
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """A JSON merge patch: the fields given replace those stored; lists are replaced whole; None removes."""
        result: dict[str, Any] = await self.request(
            "PATCH",
            ref.path(namespace, name, subresource),
            body=body,
            content_type="application/merge-patch+json",
        )
        return result
