"""A small async Kubernetes client for the dashboard: kubeconfig or in-cluster login, JSON over httpx.

The dashboard needs a handful of calls (list, get, create, merge-patch and delete CurrencyPairs; list
InferenceServices), so it does not carry kopf or the kubernetes client. Supported logins: a bearer token
(inline or tokenFile), a client certificate, basic auth, and the in-cluster service account; exec and
auth-provider plugins are not (run `kubectl proxy` and point a kubeconfig at it instead).
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import yaml

from makeusrich import __version__
from makeusrich.errors import MakeUsRichError

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
USER_AGENT = f"makeusrich-ui/{__version__}"


class KubeError(MakeUsRichError):
    """The API server refused a request or could not be reached; `status` is its HTTP status (0: no answer)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Credentials:
    """Where the API server is and how to log in to it."""

    server: str
    headers: dict[str, str] = field(default_factory=dict)
    ca_file: str | None = None
    ca_data: bytes | None = None
    cert_data: bytes | None = None
    key_data: bytes | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False
    token_file: str | None = None

    def verify(self) -> ssl.SSLContext | bool:
        if not self.server.startswith("https"):
            return True
        context = ssl.create_default_context()
        if self.ca_file:
            context.load_verify_locations(cafile=self.ca_file)
        elif self.ca_data:
            context.load_verify_locations(cadata=self.ca_data.decode())
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        elif self.cert_data:
            with tempfile.TemporaryDirectory() as folder:  # ssl reads certificates only from files
                cert, key = Path(folder, "cert.pem"), Path(folder, "key.pem")
                cert.write_bytes(self.cert_data)
                if self.key_data:
                    key.write_bytes(self.key_data)
                context.load_cert_chain(str(cert), str(key) if self.key_data else None)
        return context

    def auth_headers(self) -> dict[str, str]:
        """Headers with a fresh token: service-account tokens rotate, so a tokenFile is read per client."""
        headers = dict(self.headers)
        if self.token_file:
            try:
                headers["Authorization"] = f"Bearer {Path(self.token_file).read_text().strip()}"
            except OSError as exc:
                raise KubeError(f"cannot read the token file {self.token_file}: {exc.strerror or exc}") from None
        return headers


def _pem(data: str) -> bytes:
    raw = data.encode()
    return raw if raw.lstrip().startswith(b"-----BEGIN") else base64.b64decode(raw)


def _relative(base: Path, path: str | None) -> str | None:
    if not path:
        return None
    return str(path if os.path.isabs(path) else base.parent / path)


def credentials_from_kubeconfig(path: str | os.PathLike[str], context: str | None = None) -> Credentials:
    """The current (or named) context of a kubeconfig file."""
    file = Path(path).expanduser()
    try:
        config = yaml.safe_load(file.read_text()) or {}
    except OSError as exc:
        raise KubeError(f"cannot read the kubeconfig {file}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise KubeError(f"the kubeconfig {file} is not valid YAML: {exc}") from None

    def named(kind: str, name: str | None) -> dict[str, Any]:
        for item in config.get(kind) or []:
            if item.get("name") == name:
                return dict(item.get(kind[:-1]) or {})
        raise KubeError(f"the kubeconfig {file} has no {kind[:-1]} named {name!r}")

    context_name = context or config.get("current-context")
    if not context_name:
        raise KubeError(f"the kubeconfig {file} has no current-context; pass --kube-context")
    ctx = named("contexts", context_name)
    cluster = named("clusters", ctx.get("cluster"))
    user = named("users", ctx.get("user")) if ctx.get("user") else {}
    if "exec" in user or "auth-provider" in user:
        raise KubeError(
            f"the kubeconfig user {ctx.get('user')!r} logs in through an exec or auth-provider plugin, which the "
            "dashboard does not run; use a token or certificate, or `kubectl proxy` and a kubeconfig pointing at it"
        )
    server = str(cluster.get("server") or "").rstrip("/")
    if not server:
        raise KubeError(f"cluster {ctx.get('cluster')!r} in {file} has no server")
    headers: dict[str, str] = {}
    if user.get("token"):
        headers["Authorization"] = f"Bearer {user['token']}"
    elif user.get("username") and user.get("password"):
        basic = base64.b64encode(f"{user['username']}:{user['password']}".encode()).decode()
        headers["Authorization"] = f"Basic {basic}"
    return Credentials(
        server=server,
        headers=headers,
        ca_file=_relative(file, cluster.get("certificate-authority")),
        ca_data=_pem(cluster["certificate-authority-data"]) if cluster.get("certificate-authority-data") else None,
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        cert_file=_relative(file, user.get("client-certificate")),
        key_file=_relative(file, user.get("client-key")),
        cert_data=_pem(user["client-certificate-data"]) if user.get("client-certificate-data") else None,
        key_data=_pem(user["client-key-data"]) if user.get("client-key-data") else None,
        token_file=_relative(file, user.get("tokenFile")),
    )


def in_cluster_credentials(env: Mapping[str, str] | None = None) -> Credentials | None:
    """The pod's service account, or None outside a cluster."""
    env = os.environ if env is None else env
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    token = SERVICE_ACCOUNT / "token"
    if not host or not port or not token.exists():
        return None
    host = f"[{host}]" if ":" in host else host
    return Credentials(
        server=f"https://{host}:{port}",
        ca_file=str(SERVICE_ACCOUNT / "ca.crt"),
        token_file=str(token),
    )


def load_credentials(kubeconfig: str | None = None, context: str | None = None) -> Credentials:
    """--kubeconfig, else $KUBECONFIG, else the in-cluster service account, else ~/.kube/config."""
    path = kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
    if path:
        return credentials_from_kubeconfig(path, context)
    inside = in_cluster_credentials()
    if inside is not None:
        return inside
    default = Path.home() / ".kube" / "config"
    if default.exists():
        return credentials_from_kubeconfig(default, context)
    raise KubeError("no Kubernetes login found: pass --kubeconfig, set KUBECONFIG, or run inside a cluster")


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str

    def path(self, namespace: str | None, name: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace is not None:
            base += f"/namespaces/{quote(namespace)}"
        base += f"/{self.plural}"
        return base + (f"/{quote(name)}" if name else "")


PAIRS = Resource("makeusrich.io", "v1alpha1", "currencypairs")
ISVCS = Resource("serving.kserve.io", "v1beta1", "inferenceservices")


class KubeClient:
    """JSON requests to the API server; every failure is a KubeError with one readable sentence."""

    def __init__(self, credentials: Credentials, timeout: float = 10.0) -> None:
        self.credentials = credentials
        self._http = httpx.AsyncClient(
            base_url=credentials.server,
            verify=credentials.verify(),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> dict[str, Any]:
        headers = self.credentials.auth_headers()
        if body is not None:
            headers["Content-Type"] = content_type
        try:
            response = await self._http.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise KubeError(
                f"the Kubernetes API at {self.credentials.server} is unreachable ({type(exc).__name__}: {exc})"
            ) from None
        if response.status_code >= 400:
            try:
                message = str(response.json().get("message") or response.text)
            except ValueError:
                message = response.text[:300]
            raise KubeError(f"{method} {path} answered {response.status_code}: {message}", response.status_code)
        try:
            value = response.json() if response.content else {}
        except ValueError:
            raise KubeError(f"{method} {path} answered with something that is not JSON") from None
        return value if isinstance(value, dict) else {}

    async def list(self, resource: Resource, namespace: str | None) -> list[dict[str, Any]]:
        items = (await self.request("GET", resource.path(namespace))).get("items") or []
        return [item for item in items if isinstance(item, dict)]

    async def create(self, resource: Resource, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("POST", resource.path(namespace), dict(body))

    async def merge_patch(
        self, resource: Resource, namespace: str, name: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        return await self.request(
            "PATCH", resource.path(namespace, name), dict(body), content_type="application/merge-patch+json"
        )

    async def delete(self, resource: Resource, namespace: str, name: str) -> None:
        await self.request("DELETE", resource.path(namespace, name))
