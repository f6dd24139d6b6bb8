"""Security headers and Secure cookies on the dashboard's responses (the middleware in makeusrich.ui.security)."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from makeusrich.ui.security import CONTENT_SECURITY_POLICY, SecurityHeaders


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
