"""The one Kubernetes API client of the operator, the dashboard and the tracker: login, JSON over aiohttp,
retries, errors.

Login (`load_credentials`): --kubeconfig, else $KUBECONFIG, else the pod's service account, else ~/.kube/config.
A kubeconfig user may log in with a bearer token (inline or tokenFile), a client certificate (data or file),
basic auth, or an exec plugin (client.authentication.k8s.io ExecCredential: a token and/or a client certificate).
This small reader, not the kubernetes package's: that one is a test dependency only, and importing it loads the
whole generated client (thousands of model classes) into images that need five verbs.

Requests (`KubeClient.request`) retry with jittered exponential backoff, honouring Retry-After, on 429, 5xx,
dropped connections and timeouts, and on 409 conflicts of updates that pin no resourceVersion. Creates are safe
to retry because every object has a fixed name: a retried POST that already went through answers 409, which
callers treat as done. A 401, or an expired exec credential, logs in again. Every failure is a KubeError, made
in one function (`api_error`).

aiohttp, not httpx: the operator creating 1,000 pairs spent a third of its CPU in httpx and httpcore (py-spy,
bench/results/operator.md), about 1 ms a request, most of it scanning its connection pool; aiohttp, which kopf's
own watches already use, takes a fraction of that.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import ssl
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import yaml

from makeusrich import __version__
from makeusrich.errors import KubeAlreadyExists, KubeConflict, KubeError, KubeGone, KubeNotFound, excerpt
from makeusrich.net import backoff_delay_s, retry_after_s

log = logging.getLogger("makeusrich.kube")

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
RETRIED_STATUSES = frozenset({0, 429, 500, 502, 503, 504})  # 0: no answer (refused, dropped, timed out)
NO_LOGIN = "no credentials: run in a pod with a service account, or set KUBECONFIG"


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

    def path(self, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
        """The URL path of the collection (all namespaces when `namespace` is None), an object or a subresource."""
        path = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace is not None:
            path += f"/namespaces/{quote(namespace)}"
        path += f"/{self.plural}"
        if name is not None:
            path += f"/{quote(name)}"
        return path + (f"/{subresource}" if subresource else "")


PAIRS = Ref("makeusrich.io", "v1alpha1", "currencypairs", "CurrencyPair")
ISVCS = Ref("serving.kserve.io", "v1beta1", "inferenceservices", "InferenceService")
CRONJOBS = Ref("batch", "v1", "cronjobs", "CronJob")
JOBS = Ref("batch", "v1", "jobs", "Job")
PODS = Ref("", "v1", "pods", "Pod")


# --- login ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """Where the API server is and how to log in to it. PEM data is bytes; `expires` is when an exec plugin's
    credential runs out (the client then runs the plugin again)."""

    server: str
    authorization: str | None = None  # the Authorization header: "Bearer ..." or "Basic ..."
    ca_file: str | None = None
    ca_data: bytes | None = None
    insecure: bool = False
    cert_file: str | None = None
    key_file: str | None = None
    cert_data: bytes | None = None
    key_data: bytes | None = None
    expires: datetime | None = None

    def same_connection(self, other: Credentials) -> bool:
        """True when only the Authorization header differs: the open connections may be kept."""
        return replace(self, authorization=None, expires=None) == replace(other, authorization=None, expires=None)

    def ssl_context(self) -> ssl.SSLContext | bool:
        """TLS settings: the CA to trust, the client certificate, or no verification at all."""
        if not self.server.startswith("https"):
            return True
        try:
            context = ssl.create_default_context(cafile=self.ca_file, cadata=(self.ca_data or b"").decode() or None)
            if self.insecure:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            if self.cert_file:
                context.load_cert_chain(self.cert_file, self.key_file)
            elif self.cert_data:
                with tempfile.TemporaryDirectory() as folder:  # ssl reads certificates only from files
                    cert, key = Path(folder, "cert.pem"), Path(folder, "key.pem")
                    cert.write_bytes(self.cert_data)
                    key.write_bytes(self.key_data or b"")
                    context.load_cert_chain(cert, key if self.key_data else None)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise KubeError(f"cannot use the TLS settings of {self.server}: {exc}") from None
        return context


Login = Callable[[], Credentials]


def _pem(data: str | None) -> bytes | None:
    """kubeconfig's *-data fields are base64; PEM given directly is used as it is."""
    if not data:
        return None
    raw = data.encode()
    return raw if raw.lstrip().startswith(b"-----BEGIN") else base64.b64decode(raw)


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise KubeError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None


def credentials_from_kubeconfig(paths: str | os.PathLike[str] | list[Path], context: str | None = None) -> Credentials:
    """The current (or named) context of one kubeconfig, or of several merged as kubectl merges $KUBECONFIG (the
    first file wins each name); runs the user's exec plugin if it has one."""
    files = [Path(p).expanduser() for p in (paths if isinstance(paths, list) else [paths])]
    where, current = " ".join(map(str, files)), context
    named: dict[str, dict[str, tuple[dict[str, Any], Path]]] = {"contexts": {}, "clusters": {}, "users": {}}
    for path in files:  # each entry keeps its file: relative paths in it are relative to that file
        try:
            config = yaml.safe_load(_read(path, "kubeconfig")) or {}
        except yaml.YAMLError as exc:
            raise KubeError(f"the kubeconfig {path} is not valid YAML: {exc}") from None
        current = current or config.get("current-context")
        for kind, entries in named.items():
            for item in config.get(kind) or []:
                entries.setdefault(str(item.get("name")), (dict(item.get(kind[:-1]) or {}), path))

    def entry(kind: str, name: str | None) -> tuple[dict[str, Any], Path]:
        if str(name) not in named[kind]:
            raise KubeError(f"the kubeconfig {where} has no {kind[:-1]} named {name!r}")
        return named[kind][str(name)]

    if not current:
        raise KubeError(f"the kubeconfig {where} has no current-context; pass --kube-context")
    ctx, _ = entry("contexts", current)
    cluster, cluster_file = entry("clusters", ctx.get("cluster"))
    user, user_file = entry("users", ctx.get("user")) if ctx.get("user") else ({}, files[0])

    def relative(base: Path, path: str | None) -> str | None:
        return str(base.parent / path) if path and not os.path.isabs(path) else path

    server = str(cluster.get("server") or "").rstrip("/")
    if not server:
        raise KubeError(f"cluster {ctx.get('cluster')!r} in {cluster_file} has no server")
    if "auth-provider" in user:
        raise KubeError(
            f"the kubeconfig user {ctx.get('user')!r} logs in through an auth-provider plugin, which Kubernetes "
            "retired; use an exec plugin (kubelogin, gke-gcloud-auth-plugin, ...), a token or a certificate"
        )
    authorization = None
    token_file = relative(user_file, user.get("tokenFile"))
    if user.get("token"):
        authorization = f"Bearer {user['token']}"
    elif token_file:
        authorization = f"Bearer {_read(Path(token_file), 'token file').strip()}"
    elif user.get("username") and user.get("password"):
        authorization = "Basic " + base64.b64encode(f"{user['username']}:{user['password']}".encode()).decode()
    ca_data = _pem(cluster.get("certificate-authority-data"))
    credentials = Credentials(
        server=server,
        authorization=authorization,
        ca_file=None if ca_data else relative(cluster_file, cluster.get("certificate-authority")),
        ca_data=ca_data,
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        cert_file=relative(user_file, user.get("client-certificate")),
        key_file=relative(user_file, user.get("client-key")),
        cert_data=_pem(user.get("client-certificate-data")),
        key_data=_pem(user.get("client-key-data")),
    )
    if user.get("exec"):
        return exec_credentials(credentials, user["exec"], user_file, str(ctx.get("user")))
    return credentials


def exec_credentials(credentials: Credentials, spec: Mapping[str, Any], base: Path, user: str) -> Credentials:
    """Run a kubeconfig exec plugin and add what its ExecCredential gives: a token, a client certificate, or
    both, and when they expire."""
    command = str(spec.get("command") or "")
    if os.sep in command and not os.path.isabs(command):
        command = str(base.parent / command)  # relative to the kubeconfig, as kubectl does
    info = {"apiVersion": spec.get("apiVersion"), "kind": "ExecCredential", "spec": {"interactive": False}}
    env = {**os.environ, **{e["name"]: e["value"] for e in spec.get("env") or []}}
    env["KUBERNETES_EXEC_INFO"] = json.dumps(info)
    what = f"the exec plugin {command!r} of the kubeconfig user {user!r}"
    try:
        done = subprocess.run(
            [command, *map(str, spec.get("args") or [])], env=env, capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        hint = f" ({spec['installHint'].strip()})" if spec.get("installHint") else ""
        raise KubeError(f"cannot run {what}: {getattr(exc, 'strerror', None) or exc}{hint}") from None
    if done.returncode != 0:
        raise KubeError(f"{what} failed (exit {done.returncode}): {done.stderr.strip()[-300:]}")
    try:
        status = json.loads(done.stdout)["status"]
        token, cert, key = status.get("token"), status.get("clientCertificateData"), status.get("clientKeyData")
        expires = datetime.fromisoformat(status["expirationTimestamp"]) if status.get("expirationTimestamp") else None
    except (ValueError, KeyError, TypeError, AttributeError):
        raise KubeError(f"{what} printed no ExecCredential: {excerpt(done.stdout)}") from None
    if not token and not (cert and key):
        raise KubeError(f"{what} gave neither a token nor a client certificate")
    if expires is not None and expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    return replace(
        credentials,
        authorization=f"Bearer {token}" if token else credentials.authorization,
        cert_file=None if cert else credentials.cert_file,
        key_file=None if key else credentials.key_file,
        cert_data=cert.encode() if cert else credentials.cert_data,
        key_data=key.encode() if key else credentials.key_data,
        expires=expires,
    )


def in_cluster_credentials(
    env: Mapping[str, str] | None = None, service_account: Path = SERVICE_ACCOUNT
) -> Credentials | None:
    """The pod's service account (its token read now: kubelet rotates it), or None outside a cluster."""
    env = os.environ if env is None else env
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    token = service_account / "token"
    if not host or not port or not token.exists():
        return None
    host = f"[{host}]" if ":" in host else host
    return Credentials(
        server=f"https://{host}:{port}",
        authorization=f"Bearer {_read(token, 'service-account token').strip()}",
        ca_file=str(service_account / "ca.crt"),
    )


def load_credentials(
    kubeconfig: str | None = None,
    context: str | None = None,
    env: Mapping[str, str] | None = None,
    service_account: Path = SERVICE_ACCOUNT,
) -> Credentials:
    """--kubeconfig, else $KUBECONFIG, else the in-cluster service account, else ~/.kube/config."""
    env = os.environ if env is None else env
    paths = [Path(p) for p in env.get("KUBECONFIG", "").split(os.pathsep) if p]
    if kubeconfig or paths:
        return credentials_from_kubeconfig([Path(kubeconfig)] if kubeconfig else paths, context)
    inside = in_cluster_credentials(env, service_account)
    if inside is not None:
        return inside
    default = Path(env.get("HOME") or Path.home()) / ".kube" / "config"
    if default.exists():
        return credentials_from_kubeconfig(default, context)
    raise KubeError(NO_LOGIN)


# --- errors and retries -------------------------------------------------------------------------------------------


def api_error(status: int, payload: Any, method: str, path: str) -> KubeError:
    """The one translation of an answer (or of none: status 0) into the KubeError classes."""
    payload = payload if isinstance(payload, Mapping) else {}
    default = {0: "Unreachable", 404: "NotFound", 409: "Conflict"}.get(status, "Error")
    reason, message = str(payload.get("reason") or default), str(payload.get("message") or "")
    code = f"HTTP {status} " if status else ""
    text = f"{method} {path}: {code}{reason}: {message}".rstrip(": ")
    conflict = KubeAlreadyExists if method == "POST" else KubeConflict
    return {404: KubeNotFound, 409: conflict}.get(status, KubeError)(text, status, method)


def retryable(method: str, status: int, body: Any) -> bool:
    """Worth another try: no answer, throttled, a server error, or a conflict of an update that pins no
    resourceVersion (a pinned one fails again: someone else changed the object)."""
    if status == 409:
        pinned = isinstance(body, Mapping) and (body.get("metadata") or {}).get("resourceVersion")
        return method != "POST" and not pinned
    return status in RETRIED_STATUSES


def transient(error: KubeError) -> bool:
    """Whether a failed request may pass without anyone acting, so that a reconcile is tried again soon: no answer,
    a conflict, throttling or a server error. 403, 404 and 422 need a person (RBAC, KServe missing, a bad object)."""
    return error.status in (0, 409, 429) or error.status >= 500


# --- the client ---------------------------------------------------------------------------------------------------


class KubeClient:
    """JSON requests to the API server with retries. `login` gives fresh credentials: called at the first
    request, again on a 401 (tokens rotate) and when an exec credential has expired."""

    def __init__(
        self,
        login: Login,
        credentials: Credentials | None = None,
        *,
        agent: str = "makeusrich",
        attempts: int = 7,
        base_delay: float = 0.1,
        max_delay: float = 5.0,
        max_retry_after: float = 30.0,
        timeout: float = 30.0,
        connections: int = 8,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._login = login
        self._credentials = credentials
        self.user_agent = f"{agent}/{__version__}"
        self.attempts, self.base_delay, self.max_delay = attempts, base_delay, max_delay
        self.max_retry_after = max_retry_after
        # Per socket operation, not per request: a request may wait its turn for one of the `connections` (a
        # thousand pairs reconciled at once), and that wait is no sign of a server that does not answer.
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=min(timeout, 10.0), sock_read=timeout)
        self.connections = connections
        self._sleep = sleep
        self._http: aiohttp.ClientSession | None = None
        self._lock = asyncio.Lock()

    @property
    def server(self) -> str:
        return self._credentials.server if self._credentials else ""

    async def _session(self, stale: Credentials | None = None) -> tuple[aiohttp.ClientSession, Credentials]:
        """The open client and the credentials it sends; logs in when there are none, when they are `stale`
        (a 401 answered them) or expired. Concurrent callers share one login."""
        async with self._lock:
            current = self._credentials
            expired = current is not None and current.expires is not None and datetime.now(UTC) >= current.expires
            if current is None or current is stale or expired:
                fresh = await asyncio.to_thread(self._login)
                if self._http is not None and (current is None or not current.same_connection(fresh)):
                    await self._http.close()  # new TLS material: the open connections cannot be kept
                    self._http = None
                current = self._credentials = fresh
            if self._http is None:
                self._http = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=self.connections, ssl=current.ssl_context()),
                    timeout=self.timeout,
                    headers={"User-Agent": self.user_agent, "Accept": "application/json"},
                )
            return self._http, current

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        stale: Credentials | None = None  # the credentials a 401 answered: logged in again, once
        content = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        for attempt in range(self.attempts):
            http, credentials = await self._session(stale)
            headers = {"Authorization": credentials.authorization} if credentials.authorization else {}
            if content is not None:
                headers["Content-Type"] = content_type
            retry_after = None
            url = credentials.server.rstrip("/") + path  # a server URL may have a path of its own (a proxy's)
            try:
                async with http.request(method, url, data=content, params=params, headers=headers) as response:
                    status, raw = response.status, await response.read()
                    retry_after = retry_after_s(response.headers.get("Retry-After"))
            except (aiohttp.ClientError, TimeoutError) as exc:
                detail = f"the Kubernetes API at {credentials.server} did not answer ({type(exc).__name__}: {exc})"
                error = api_error(0, {"message": detail}, method, path)
            else:
                try:
                    payload = json.loads(raw) if raw else {}
                except ValueError:  # a proxy's page, a cut-off body: an error even with a 2xx
                    payload = None
                if status < 400 and isinstance(payload, dict):
                    return payload
                if payload is None:
                    payload = {"reason": "NotJSON", "message": excerpt(raw.decode("utf-8", errors="replace"))}
                error = api_error(status, payload, method, path)
            if error.status == 401 and stale is None:  # the token rotated or expired
                stale = credentials
                continue
            if not retryable(method, error.status, body) or attempt == self.attempts - 1:
                raise error
            delay = backoff_delay_s(attempt, self.base_delay, self.max_delay)
            if retry_after is not None:  # what Retry-After asks, when longer, up to max_retry_after
                delay = max(delay, min(retry_after, self.max_retry_after))
            log.debug("retrying %s %s in %.2f s after %s", method, path, delay, error)
            await self._sleep(delay)
        raise api_error(0, {"message": "no attempt was made"}, method, path)

    async def get(self, ref: Ref, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when there is none."""
        try:
            return await self.request("GET", ref.path(namespace, name))
        except KubeNotFound:
            return None

    async def list(
        self, ref: Ref, namespace: str | None, selector: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """The objects in one namespace (or all), with all the labels of `selector`."""
        wanted = dict(selector or {})
        params = {"labelSelector": ",".join(f"{k}={v}" for k, v in wanted.items())} if wanted else None
        items = (await self.request("GET", ref.path(namespace), params=params)).get("items") or []
        # Filtering again costs nothing and keeps us right with servers (or emulators) that ignore selectors.
        return [item for item in items if wanted.items() <= ((item.get("metadata") or {}).get("labels") or {}).items()]

    async def watch(
        self, ref: Ref, namespace: str | None, selector: str, resource_version: str, timeout_s: int
    ) -> AsyncIterator[dict[str, Any]]:
        """The changes after `resource_version` (ADDED, MODIFIED, DELETED, BOOKMARK), one event at a time, until the
        server ends the watch (after about `timeout_s`); a KubeError when it cannot start or breaks off, KubeGone
        when that version is too old to watch from (list again)."""
        http, credentials = await self._session()
        headers = {"Authorization": credentials.authorization} if credentials.authorization else {}
        params = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(timeout_s),
            **({"labelSelector": selector} if selector else {}),
        }
        path = ref.path(namespace)
        url = credentials.server.rstrip("/") + path
        try:
            # No read timeout: a quiet watch is not a dead one; the server ends it after timeout_s.
            timeout = aiohttp.ClientTimeout(total=timeout_s + 30, sock_connect=self.timeout.sock_connect)
            async with http.get(url, params=params, headers=headers, timeout=timeout) as response:
                if response.status == 410:
                    raise KubeGone(f"watch {path}: HTTP 410, too old a resourceVersion")
                if response.status >= 400:
                    raw = await response.read()
                    try:
                        payload = json.loads(raw)
                    except ValueError:
                        payload = {"message": excerpt(raw.decode("utf-8", errors="replace"))}
                    raise api_error(response.status, payload, "GET", path)
                async for line in response.content:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        if status.get("code") == 410:
                            raise KubeGone(f"watch {path}: {status.get('message', 'too old a resourceVersion')}")
                        raise api_error(int(status.get("code") or 0), status, "GET", path)
                    yield event
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise api_error(0, {"message": f"the watch broke off ({type(exc).__name__}: {exc})"}, "GET", path) from None

    async def create(self, ref: Ref, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("POST", ref.path(namespace), body=dict(body))

    async def patch(
        self, ref: Ref, namespace: str, name: str, body: Mapping[str, Any], subresource: str | None = None
    ) -> dict[str, Any]:
        """A JSON merge patch: the fields given replace those stored; lists are replaced whole; None removes."""
        path = ref.path(namespace, name, subresource)
        return await self.request("PATCH", path, body=dict(body), content_type="application/merge-patch+json")

    async def delete(self, ref: Ref, namespace: str, name: str) -> None:
        await self.request("DELETE", ref.path(namespace, name))
