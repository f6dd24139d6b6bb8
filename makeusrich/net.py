"""Networking shared by every component: listening sockets for the servers (`serve`, `ui`), where a busy port is
one sentence naming the flag to change, and reading the Retry-After that HTTP clients honour."""

from __future__ import annotations

import email.utils
import random
import socket
from datetime import UTC, datetime

from makeusrich.errors import MakeUsRichError


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
