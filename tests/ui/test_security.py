"""Security headers and Secure cookies on the dashboard's responses (the middleware in makeusrich.ui.security), and
which proxies the real dashboard believes."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from makeusrich.ui.security import CONTENT_SECURITY_POLICY, SecurityHeaders
from tests.ui.browser import start_ui, stop


def app(secure_cookies: bool = False) -> SecurityHeaders:
    async def page(request: Request) -> PlainTextResponse:
        response = PlainTextResponse("hello")
        response.set_cookie("session", "abc", httponly=True, samesite="lax")
        return response

    return SecurityHeaders(Starlette(routes=[Route("/", page)]), secure_cookies=secure_cookies)


@pytest.mark.parametrize(
    ("base_url", "flag", "secure"),
    [("http://test", False, False), ("https://test", False, True), ("http://test", True, True)],
)
async def test_headers_and_cookies(base_url: str, flag: bool, secure: bool) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app(flag)), base_url=base_url) as client:
        response = await client.get("/")
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "same-origin"
    assert response.headers["x-content-type-options"] == "nosniff"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("session=abc") and cookie.lower().endswith("; secure") == secure


@pytest.mark.parametrize(("trusted", "believed"), [(None, False), ("127.0.0.1", True)])
def test_forwarded_headers_are_believed_only_from_a_named_proxy(
    tmp_path: Path, trusted: str | None, believed: bool
) -> None:
    """Loopback is any local user and every `kubectl port-forward`: by default no X-Forwarded-For (which the login
    throttle keys clients by) nor X-Forwarded-Proto is believed from it. The real dashboard process; what it
    believed shows in the session cookie, Secure only over TLS."""
    args = ["--source", "sample", "--pair-files", str(tmp_path)]
    dashboard = start_ui([*args, "--trusted-proxies", trusted] if trusted else args, tmp_path)
    try:
        headers = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
        cookie = httpx.get(f"{dashboard.url}/", headers=headers, timeout=30).headers["set-cookie"]
    finally:
        stop(dashboard.process)
    assert ("; secure" in cookie.lower()) == believed, cookie
