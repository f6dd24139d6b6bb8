"""Networking shared by every component: listening sockets for the servers (`serve`, `ui`), where a busy port is
one sentence naming the flag to change, reading the Retry-After that HTTP clients honour, and the model server's
URL as settings take it (here, not in makeusrich.v2client, so that reading settings loads no data library: the
operator has no use for pandas, 80 MiB of its memory)."""

from __future__ import annotations

import email.utils
import random
import socket
from datetime import UTC, datetime
from urllib.parse import urlsplit

from makeusrich.errors import MakeUsRichError, ServingError

DEFAULT_URL = "http://127.0.0.1:8080"
SERVING_URL_ENV = "MAKEUSRICH_SERVING_URL"
SCHEMES = ("http", "https", "grpc")


def check_url(url: str) -> str:
    """A model server's base URL, without a trailing slash; a ServingError unless it is http(s)://host[:port] or
    grpc://host:port (the v2 gRPC protocol, in plain text)."""
    text = url.strip()
    if "://" not in text:
        raise ServingError(f"the model server URL {url!r} has no scheme; write it as http://{text or 'host:port'}")
    try:
        parsed = urlsplit(text)
        port = parsed.port
    except ValueError as exc:
        raise ServingError(f"the model server URL {url!r} is not a URL ({exc})") from None
    if parsed.scheme not in SCHEMES or not parsed.hostname:
        raise ServingError(
            f"the model server URL {url!r} must look like http://host:port, https://host or grpc://host:port"
        )
    if parsed.scheme == "grpc" and (port is None or parsed.path.strip("/") or parsed.query):
        raise ServingError(f"the gRPC model server URL {url!r} must be grpc://host:port, with the port and no path")
    return text.rstrip("/")


def bind(host: str, port: int, flag: str = "--port") -> socket.socket:
    """A listening TCP socket on exactly host:port (port 0 picks a free one)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise MakeUsRichError(f"cannot resolve --host {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise MakeUsRichError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another {flag} or stop what uses it"
        ) from None
    sock.set_inheritable(True)
    return sock


def check_free(host: str, port: int, flag: str = "--port") -> None:
    """Fail now, with `bind`'s sentence, when host:port cannot be listened on (for servers that bind later
    themselves, such as NiceGUI's uvicorn)."""
    bind(host, port, flag).close()


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a `Retry-After` header asks to wait (delay-seconds or an HTTP date); None when it says nothing."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_delay_s(attempt: int, base_s: float, max_s: float) -> float:
    """Exponential backoff with jitter after the `attempt`-th failure (0 for the first): half fixed, half random,
    so that clients do not retry in step."""
    return min(max_s, base_s * 2.0**attempt) * random.uniform(0.5, 1.0)
