"""HTTP headers that keep the dashboard's pages from being framed, sniffed or leaking where they link from, and
session cookies that travel only over TLS when the dashboard is reached over TLS.

The Content-Security-Policy allows what NiceGUI needs and nothing from elsewhere: its own scripts (Vue compiles
templates at run time, hence 'unsafe-eval'; pages carry inline scripts and styles), its websocket, and data:
images for the charts' exports. Everything the app serves comes from the app itself, so 'self' is enough.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline' 'unsafe-eval'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "connect-src 'self' ws: wss:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"x-content-type-options", b"nosniff"),
)


class SecurityHeaders:
    """ASGI middleware: the headers above on every HTTP response, and `Secure` on every cookie when the request
    came over TLS (uvicorn reads the scheme from X-Forwarded-Proto of a trusted proxy) or when told to."""

    def __init__(self, app: ASGIApp, secure_cookies: bool = False) -> None:
        self.app = app
        self.secure_cookies = secure_cookies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        secure = self.secure_cookies or scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(name, value) for name, value in message.get("headers", []) if name not in dict(HEADERS)]
                if secure:
                    headers = [
                        (name, value + b"; Secure")
                        if name.lower() == b"set-cookie" and b"secure" not in value.lower()
                        else (name, value)
                        for name, value in headers
                    ]
                message = {**message, "headers": [*headers, *HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
