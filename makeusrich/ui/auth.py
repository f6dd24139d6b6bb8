"""Who may change pairs: nobody by default (a read-only dashboard), or whoever knows the password.

The password is configured as a salted scrypt hash in MAKEUSRICH_UI_PASSWORD_HASH (made by
`makeusrich ui --hash-password`, so a Secret holds no plain password), or as MAKEUSRICH_UI_PASSWORD, hashed at
start. Failed logins are slowed down and, after a burst, refused for a while, so the password cannot be guessed
at the speed of HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from makeusrich.errors import MakeUsRichError

HASH_ENV = "MAKEUSRICH_UI_PASSWORD_HASH"
PASSWORD_ENV = "MAKEUSRICH_UI_PASSWORD"
SECRET_ENV = "MAKEUSRICH_UI_STORAGE_SECRET"
SCHEME = "scrypt"
# scrypt with n=2^14, r=8 (16 MiB, ~50 ms here): OWASP's minimum for scrypt is n=2^17 at r=8, p=1, or
# equivalently n=2^14 with p=5; p=5 keeps memory per check low for a small pod.
N, R, P = 2**14, 8, 5


class AuthError(MakeUsRichError):
    """The password configuration is unusable."""


def hash_password(password: str, salt: bytes | None = None, n: int = N, r: int = R, p: int = P) -> str:
    """`scrypt$n$r$p$salt$hash` with base64 salt and hash: everything needed to check a password later."""
    if not password:
        raise AuthError("the password is empty")
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32)
    encode = base64.b64encode
    return f"{SCHEME}${n}${r}${p}${encode(salt).decode()}${encode(digest).decode()}"


def parse_hash(text: str) -> tuple[int, int, int, bytes, bytes]:
    parts = text.strip().split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        raise AuthError(f"{HASH_ENV} is not a hash made by `makeusrich ui --hash-password` (scrypt$n$r$p$salt$hash)")
    try:
        n, r, p = (int(x) for x in parts[1:4])
        salt, digest = base64.b64decode(parts[4], validate=True), base64.b64decode(parts[5], validate=True)
    except ValueError:
        raise AuthError(f"{HASH_ENV} holds a malformed number or base64 field") from None
    if n < 2 or n & (n - 1) or r < 1 or p < 1 or not salt or not digest:
        raise AuthError(f"{HASH_ENV} holds unusable scrypt parameters")
    return n, r, p, salt, digest


def verify_password(password: str, stored: str) -> bool:
    """Constant-time comparison of the password's hash with the stored one."""
    n, r, p, salt, digest = parse_hash(stored)
    candidate = hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=len(digest)
    )
    return hmac.compare_digest(candidate, digest)


@dataclass
class Throttle:
    """At most `limit` failed logins per `window` seconds for the whole app; then logins wait it out."""

    limit: int = 10
    window: float = 60.0
    clock: Callable[[], float] = time.monotonic
    failures: deque[float] = field(default_factory=deque)

    def _trim(self) -> None:
        now = self.clock()
        while self.failures and now - self.failures[0] > self.window:
            self.failures.popleft()

    def blocked_for(self) -> float:
        """Seconds until a login may be tried again (0: now)."""
        self._trim()
        if len(self.failures) < self.limit:
            return 0.0
        return max(0.0, self.window - (self.clock() - self.failures[0]))

    def failed(self) -> None:
        self.failures.append(self.clock())


@dataclass(frozen=True)
class AuthConfig:
    """`password_hash` None: read-only for everyone, no login page."""

    password_hash: str | None
    storage_secret: str
    secret_from_env: bool

    @property
    def enabled(self) -> bool:
        return self.password_hash is not None


def auth_from_env(env: Mapping[str, str] | None = None) -> AuthConfig:
    """The password (hash) and the session-cookie secret from the environment."""
    env = os.environ if env is None else env
    stored = env.get(HASH_ENV, "").strip() or None
    plain = env.get(PASSWORD_ENV) or None
    if stored is not None:
        parse_hash(stored)  # fail at start, not at the first login
    elif plain is not None:
        stored = hash_password(plain)
    secret = env.get(SECRET_ENV, "")
    return AuthConfig(stored, secret or secrets.token_urlsafe(32), bool(secret))
