"""The one Kubernetes client (makeusrich.kube): every login a kubeconfig or a pod offers, the retry policy and the
status-to-exception mapping, against the API emulator over loopback HTTP."""

from __future__ import annotations

import asyncio
import ssl
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from makeusrich.errors import KubeAlreadyExists, KubeConflict, KubeError, KubeNotFound
from makeusrich.kube import (
    CRONJOBS,
    NO_LOGIN,
    PAIRS,
    Credentials,
    KubeClient,
    api_error,
    credentials_from_kubeconfig,
    in_cluster_credentials,
    load_credentials,
    retryable,
)
from makeusrich.net import retry_after_s
from tests.fixtures.kube_emulator import NAMESPACE, Emulator, write_kubeconfig
from tests.fixtures.waiting import eventually_sync

CRON = {"metadata": {"name": "c"}, "spec": {"schedule": "0 0 * * *"}}

# An exec plugin as kubectl runs it: it counts its runs, and prints an ExecCredential whose token names the run
# and whose expiry is whatever the file `expiry` next to it says.
PLUGIN = f"""#!{sys.executable}
import json, os, pathlib, sys
assert json.loads(os.environ["KUBERNETES_EXEC_INFO"])["kind"] == "ExecCredential"
here = pathlib.Path(sys.argv[0]).parent
runs = here / "runs"
n = int(runs.read_text()) + 1 if runs.exists() else 1
runs.write_text(str(n))
status = {{"token": f"{{os.environ['TOKEN_PREFIX']}}-{{n}}", "expirationTimestamp": (here / "expiry").read_text()}}
print(json.dumps({{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential", "status": status}}))
"""
PAST, FUTURE = "2000-01-01T00:00:00Z", "2999-01-01T00:00:00Z"


def url(kube: Emulator) -> str:
    return str(kube.url).rstrip("/")


def tokens(kube: Emulator) -> list[str]:
    """The Authorization header of every request the emulator saw, in order."""
    return [r.headers.get("Authorization", "") for r in kube.requests]


def exec_kubeconfig(kube: Emulator, tmp_path: Path, expiry: str) -> Path:
    plugin = tmp_path / "bin" / "plugin"
    plugin.parent.mkdir()
    plugin.write_text(PLUGIN)
    plugin.chmod(0o755)
    (plugin.parent / "expiry").write_text(expiry)
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": "./bin/plugin",  # relative to the kubeconfig, as kubectl resolves it
            "env": [{"name": "TOKEN_PREFIX", "value": "exec"}],
        }
    }
    return write_kubeconfig(tmp_path / "kubeconfig", url(kube), user)


async def test_an_exec_plugin_logs_in_and_runs_again_when_its_credential_expires_or_is_refused(
    kube: Emulator, tmp_path: Path
) -> None:
    config = exec_kubeconfig(kube, tmp_path, PAST)
    api = KubeClient(lambda: credentials_from_kubeconfig(config))
    try:
        await api.get(CRONJOBS, NAMESPACE, "c")
        await api.get(CRONJOBS, NAMESPACE, "c")  # the credential had expired: the plugin runs again
        assert tokens(kube) == ["Bearer exec-1", "Bearer exec-2"]
        (tmp_path / "bin" / "expiry").write_text(FUTURE)
        await api.get(CRONJOBS, NAMESPACE, "c")  # exec-2 expired too: run 3, valid until 2999
        await api.get(CRONJOBS, NAMESPACE, "c")
        assert tokens(kube)[2:] == ["Bearer exec-3", "Bearer exec-3"]
        kube.fail("GET", "/cronjobs/c$", 401)  # revoked early: a 401 runs the plugin once more
        assert await api.get(CRONJOBS, NAMESPACE, "c") is None
        assert tokens(kube)[4:] == ["Bearer exec-3", "Bearer exec-4"]
        assert (tmp_path / "bin" / "runs").read_text() == "4"
    finally:
        await api.aclose()


async def test_concurrent_requests_refused_together_log_in_once(kube: Emulator) -> None:
    logins: list[int] = []
    refusals = kube.fail("GET", "/cronjobs/c$", 401, times=0)

    def login() -> Credentials:  # in a worker thread: it may block until the emulator has refused all five
        logins.append(1)
        eventually_sync(lambda: refusals.times == 0, what="all five concurrent requests refused", interval=0.005)
        return Credentials(url(kube), f"Bearer t{len(logins)}")

    api = KubeClient(login)
    try:
        await api.get(CRONJOBS, NAMESPACE, "c")
        refusals.times = 5
        assert await asyncio.gather(*(api.get(CRONJOBS, NAMESPACE, "c") for _ in range(5))) == [None] * 5
        assert len(logins) == 2 and tokens(kube)[-5:] == ["Bearer t2"] * 5
    finally:
        await api.aclose()


def test_exec_plugins_that_fail_say_why(tmp_path: Path) -> None:
    def config(exec_spec: dict[str, Any]) -> Path:
        return write_kubeconfig(tmp_path / "kubeconfig", "https://k8s:6443", {"exec": exec_spec})

    missing = {"command": "no-such-plugin-here", "installHint": "install it with brew"}
    with pytest.raises(KubeError, match=r"cannot run the exec plugin 'no-such-plugin-here'.*\(install it with brew\)"):
        credentials_from_kubeconfig(config(missing))
    failing = {"command": sys.executable, "args": ["-c", "import sys; sys.exit('token expired, log in again')"]}
    with pytest.raises(KubeError, match=r"failed \(exit 1\): token expired, log in again$"):
        credentials_from_kubeconfig(config(failing))
    with pytest.raises(KubeError, match="printed no ExecCredential: 'hello"):
        credentials_from_kubeconfig(config({"command": sys.executable, "args": ["-c", "print('hello')"]}))
    certificate = {"status": {"clientCertificateData": "-----BEGIN CERT", "clientKeyData": "-----BEGIN KEY"}}
    code = f"import json; print(json.dumps({certificate!r}))"
    creds = credentials_from_kubeconfig(config({"command": sys.executable, "args": ["-c", code]}))
    assert creds.cert_data == b"-----BEGIN CERT" and creds.key_data == b"-----BEGIN KEY"
    assert creds.authorization is None and creds.expires is None


async def test_a_token_file_is_read_again_after_a_401(kube: Emulator, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-file\n")
    config = write_kubeconfig(tmp_path / "kubeconfig", url(kube), {"tokenFile": "token"})  # relative to the file
    api = KubeClient(lambda: credentials_from_kubeconfig(config))
    try:
        await api.create(CRONJOBS, NAMESPACE, CRON)
        (tmp_path / "token").write_text("rotated")
        kube.fail("GET", "/cronjobs/c$", 401)
        assert (await api.get(CRONJOBS, NAMESPACE, "c") or {})["spec"] == CRON["spec"]
        assert tokens(kube) == ["Bearer from-file", "Bearer from-file", "Bearer rotated"]
    finally:
        await api.aclose()


def test_in_cluster_login_reads_the_service_account(tmp_path: Path) -> None:
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("pod-token\n")
    (account / "ca.crt").write_text("ca")
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443", "HOME": str(tmp_path)}
    creds = load_credentials(env=env, service_account=account)
    assert creds == Credentials("https://10.0.0.1:443", "Bearer pod-token", ca_file=str(account / "ca.crt"))
    (account / "token").write_text("rotated")  # kubelet rotates it: every login reads it again
    assert load_credentials(env=env, service_account=account).authorization == "Bearer rotated"
    ipv6 = in_cluster_credentials({**env, "KUBERNETES_SERVICE_HOST": "fd00::1"}, account)
    assert ipv6 is not None and ipv6.server == "https://[fd00::1]:443"
    assert in_cluster_credentials({}, account) is None
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", "http://elsewhere")
    assert load_credentials(env={**env, "KUBECONFIG": str(kubeconfig)}, service_account=account).server == (
        "http://elsewhere"  # $KUBECONFIG wins over the pod's account
    )
    with pytest.raises(KubeError, match=f"^{NO_LOGIN}$"):
        load_credentials(env={"HOME": str(tmp_path)}, service_account=account)


def test_kubeconfig_logins(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(
        "current-context: a\n"
        "contexts: [{name: a, context: {cluster: c, user: u}}, {name: b, context: {cluster: c, user: p}},"
        " {name: d, context: {cluster: c, user: basic}}]\n"
        "clusters: [{name: c, cluster: {server: 'https://k8s:6443/', insecure-skip-tls-verify: true}}]\n"
        "users: [{name: u, user: {token: abc}}, {name: p, user: {auth-provider: {name: gcp}}},"
        " {name: basic, user: {username: u, password: p}}]\n"
    )
    creds = credentials_from_kubeconfig(path)
    assert creds.server == "https://k8s:6443" and creds.authorization == "Bearer abc" and creds.insecure
    assert credentials_from_kubeconfig(path, "d").authorization == "Basic dTpw"
    with pytest.raises(KubeError, match="auth-provider plugin, which Kubernetes retired"):
        credentials_from_kubeconfig(path, "b")
    with pytest.raises(KubeError, match="no context named 'zzz'"):
        credentials_from_kubeconfig(path, "zzz")
    with pytest.raises(KubeError, match="cannot read the kubeconfig"):
        credentials_from_kubeconfig(tmp_path / "missing")


def test_kubeconfigs_merge_as_kubectl_merges_them(tmp_path: Path) -> None:
    """The first file wins each name and the current-context; relative paths are relative to their own file."""
    (tmp_path / "certs").mkdir()
    first = tmp_path / "first.yaml"
    first.write_text(yaml.safe_dump({"current-context": "x", "users": [{"name": "me", "user": {"token": "one"}}]}))
    second = tmp_path / "certs" / "second.yaml"
    second.write_text(
        yaml.safe_dump(
            {
                "current-context": "ignored",
                "contexts": [{"name": "x", "context": {"cluster": "k", "user": "me"}}],
                "clusters": [{"name": "k", "cluster": {"server": "https://k", "certificate-authority": "ca.pem"}}],
                "users": [{"name": "me", "user": {"token": "two"}}],
            }
        )
    )
    creds = load_credentials(env={"KUBECONFIG": f"{first}:{second}"})
    assert creds.authorization == "Bearer one" and creds.ca_file == str(tmp_path / "certs" / "ca.pem")


async def test_retry_after_is_honoured(kube: Emulator) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:  # the client's clock: nothing really waits
        waits.append(seconds)

    api = KubeClient(lambda: Credentials(url(kube)), sleep=sleep, max_retry_after=10.0)
    try:
        kube.fail("POST", "/cronjobs$", 429, retry_after="3")
        assert (await api.create(CRONJOBS, NAMESPACE, CRON))["metadata"]["name"] == "c"
        assert len(kube.requests) == 2 and waits == [3.0]
        kube.fail("GET", "/cronjobs/c$", 503, retry_after="3600")  # longer than worth waiting: capped
        await api.get(CRONJOBS, NAMESPACE, "c")
        assert len(kube.requests) == 4 and waits[1] == 10.0
    finally:
        await api.aclose()
    assert retry_after_s("Wed, 21 Oct 2015 07:28:30 GMT", now=datetime(2015, 10, 21, 7, 28, tzinfo=UTC)) == 30.0
    assert retry_after_s(None) is None and retry_after_s("soon") is None and retry_after_s("-5") == 0.0


async def test_statuses_map_to_one_exception_tree(kube: Emulator) -> None:
    assert isinstance(api_error(404, {"message": "gone"}, "GET", "/x"), KubeNotFound)
    created = api_error(409, {"reason": "AlreadyExists"}, "POST", "/x")
    assert isinstance(created, KubeAlreadyExists) and isinstance(created, KubeConflict)
    changed = api_error(409, {}, "PATCH", "/x")
    assert type(changed) is KubeConflict and str(changed) == "PATCH /x: HTTP 409 Conflict"
    refused = api_error(403, {"reason": "Forbidden", "message": "no"}, "GET", "/x")
    assert type(refused) is KubeError and refused.status == 403 and str(refused) == "GET /x: HTTP 403 Forbidden: no"
    unreachable = api_error(0, {"message": "refused"}, "GET", "/x")
    assert unreachable.status == 0 and str(unreachable) == "GET /x: Unreachable: refused"
    assert [retryable("GET", s, None) for s in (0, 429, 500, 503, 400, 401, 403, 404, 422)] == [True] * 4 + [False] * 5
    assert retryable("PATCH", 409, {"spec": {}}) and not retryable("POST", 409, {})
    assert not retryable("PATCH", 409, {"metadata": {"resourceVersion": "7"}})  # the precondition fails again

    api = KubeClient(lambda: Credentials(url(kube)), base_delay=0.001)
    try:
        with pytest.raises(KubeNotFound, match="HTTP 404"):
            await api.patch(PAIRS, NAMESPACE, "missing", {"spec": {}})
        await api.create(CRONJOBS, NAMESPACE, CRON)
        with pytest.raises(KubeAlreadyExists):
            await api.create(CRONJOBS, NAMESPACE, CRON)
        before = len(kube.requests)
        kube.fail("PATCH", "/cronjobs/c$", 409)
        with pytest.raises(KubeConflict):  # pinned to a resourceVersion: not retried
            await api.patch(CRONJOBS, NAMESPACE, "c", {"metadata": {"resourceVersion": "1"}, "spec": {}})
        assert len(kube.requests) == before + 1
    finally:
        await api.aclose()


def test_tls_settings(tmp_path: Path) -> None:
    assert Credentials("http://127.0.0.1:1").ssl_context() is True
    insecure = Credentials("https://api:6443", insecure=True).ssl_context()
    assert isinstance(insecure, ssl.SSLContext) and insecure.verify_mode == ssl.CERT_NONE
    verified = Credentials("https://api:6443").ssl_context()
    assert isinstance(verified, ssl.SSLContext) and verified.verify_mode == ssl.CERT_REQUIRED
    (tmp_path / "ca.pem").write_text("not a certificate")
    with pytest.raises(KubeError, match="cannot use the TLS settings of https://api:6443"):
        Credentials("https://api:6443", ca_file=str(tmp_path / "ca.pem")).ssl_context()
