"""The shared API client as the operator uses it, against the emulator: retries on what may pass, clear errors on
what will not; and the shared login handed to kopf."""

from __future__ import annotations

import socket
import ssl
from datetime import UTC, datetime

import pytest

from makeusrich.errors import KubeAlreadyExists, KubeError, KubeNotFound
from makeusrich.kube import CRONJOBS, JOBS, PAIRS, Credentials, KubeClient
from makeusrich.operator.handlers import connection_info
from tests.fixtures.kube_emulator import NAMESPACE, Emulator

CRON = {"metadata": {"name": "c", "labels": {"a": "1"}}, "spec": {"schedule": "0 0 * * *"}}


def client(kube: Emulator, **options: float) -> KubeClient:
    url = str(kube.url).rstrip("/")
    login = lambda: Credentials(url, "Bearer t")  # noqa: E731
    return KubeClient(login, agent="makeusrich-operator", base_delay=0.01, max_delay=0.05, **options)  # type: ignore[arg-type]


async def test_create_get_patch_list(kube: Emulator) -> None:
    api = client(kube)
    try:
        made = await api.create(CRONJOBS, NAMESPACE, CRON)
        assert made["metadata"]["uid"] and made["kind"] == "CronJob"
        with pytest.raises(KubeAlreadyExists):
            await api.create(CRONJOBS, NAMESPACE, CRON)
        patched = await api.patch(CRONJOBS, NAMESPACE, "c", {"spec": {"suspend": True}})
        assert patched["spec"] == {"schedule": "0 0 * * *", "suspend": True}
        assert (await api.get(CRONJOBS, NAMESPACE, "c")) == patched
        assert await api.get(CRONJOBS, NAMESPACE, "missing") is None
        await api.create(CRONJOBS, NAMESPACE, {"metadata": {"name": "d", "labels": {"a": "2"}}})
        assert [o["metadata"]["name"] for o in await api.list(CRONJOBS, NAMESPACE, {"a": "1"})] == ["c"]
        with pytest.raises(KubeNotFound):
            await api.patch(JOBS, NAMESPACE, "missing", {"spec": {}})
        sent = next(r for r in kube.requests if r.method.value == "PATCH")
        assert sent.headers["Content-Type"] == "application/merge-patch+json"
        assert sent.headers["Authorization"] == "Bearer t"
        assert sent.headers["User-Agent"].startswith("makeusrich-operator/")
    finally:
        await api.aclose()


async def test_server_errors_throttling_and_conflicts_are_retried(kube: Emulator) -> None:
    api = client(kube)
    try:
        kube.fail("POST", "/cronjobs$", 500, times=2)
        kube.fail("POST", "/cronjobs$", 429, times=1, retry_after="0")
        made = await api.create(CRONJOBS, NAMESPACE, CRON)
        assert made["metadata"]["name"] == "c"
        kube.fail("PATCH", "/cronjobs/c$", 409, times=2)
        kube.fail("PATCH", "/cronjobs/c$", 503, times=1)
        await api.patch(CRONJOBS, NAMESPACE, "c", {"spec": {"suspend": True}})
        assert kube.get(CRONJOBS, NAMESPACE, "c")["spec"]["suspend"] is True  # type: ignore[index]
        assert len([r for r in kube.requests if r.method.value == "PATCH"]) == 4
    finally:
        await api.aclose()


async def test_errors_that_will_not_pass_fail_at_once(kube: Emulator) -> None:
    api = client(kube)
    try:
        kube.fail("PATCH", "/status$", 422, times=1)
        with pytest.raises(KubeError, match="HTTP 422"):
            await api.patch(PAIRS, NAMESPACE, "p", {"status": {}}, "status")
        assert len(kube.requests) == 1
        kube.fail("POST", "/jobs$", 500, times=99)
        with pytest.raises(KubeError, match="HTTP 500 InjectedFault"):
            await api.create(JOBS, NAMESPACE, {"metadata": {"name": "j"}})
        assert len(kube.requests) == 1 + api.attempts
    finally:
        await api.aclose()


async def test_an_expired_token_logs_in_again(kube: Emulator) -> None:
    url = str(kube.url).rstrip("/")
    tokens = iter(["old", "new"])
    api = KubeClient(lambda: Credentials(url, f"Bearer {next(tokens)}"), base_delay=0.01)
    try:
        kube.fail("POST", "/cronjobs$", 401, times=1)
        await api.create(CRONJOBS, NAMESPACE, CRON)
        assert [r.headers["Authorization"] for r in kube.requests] == ["Bearer old", "Bearer new"]
    finally:
        await api.aclose()


async def test_an_unreachable_server_ends_in_one_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    waits: list[float] = []

    async def recorded(seconds: float) -> None:  # the client's backoffs, recorded instead of slept
        waits.append(seconds)

    api = KubeClient(lambda: Credentials(f"http://127.0.0.1:{port}"), attempts=3, base_delay=0.01, sleep=recorded)
    try:
        with pytest.raises(KubeError, match="Unreachable") as caught:
            await api.get(CRONJOBS, NAMESPACE, "c")
        assert caught.value.status == 0
        assert len(waits) == 2 and all(wait <= 0.02 for wait in waits), waits  # three quick attempts, then the error
    finally:
        await api.aclose()


def test_kopf_gets_the_shared_login() -> None:
    """kopf's watches log in with what makeusrich.kube read: token, TLS material and the exec expiry."""
    expires = datetime(2030, 1, 1, tzinfo=UTC)
    info = connection_info(
        Credentials("https://api:6443", "Bearer abc", ca_data=b"-----BEGIN CA", cert_file="/c", expires=expires)
    )
    assert info.server == "https://api:6443" and info.as_http_headers() == {"Authorization": "Bearer abc"}
    assert info.ca_data == b"-----BEGIN CA" and info.certificate_path == "/c" and info.expiration == expires
    assert connection_info(Credentials("s", "Basic dTpw")).as_http_headers() == {"Authorization": "Basic dTpw"}
    assert connection_info(Credentials("s")).as_http_headers() == {}
    insecure = connection_info(Credentials("https://api:6443", insecure=True)).as_ssl_context()
    assert insecure.verify_mode == ssl.CERT_NONE
