"""Who may change pairs: nobody by default (a read-only dashboard), or whoever knows the password.

The password is configured as a salted scrypt hash in MAKEUSRICH_UI_PASSWORD_HASH (made by
`makeusrich ui --hash-password`, so a Secret holds no plain password), or as MAKEUSRICH_UI_PASSWORD, hashed at
start. Failed logins are throttled per client: each attempt is counted before the password is checked (so
concurrent attempts cannot slip past), one attempt at a time per client, and after a few failures each further
attempt waits twice as long as the last. One client's failures never lock out another.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from makeusrich.errors import AuthError

HASH_ENV = "MAKEUSRICH_UI_PASSWORD_HASH"
PASSWORD_ENV = "MAKEUSRICH_UI_PASSWORD"
SECRET_ENV = "MAKEUSRICH_UI_STORAGE_SECRET"
SCHEME = "scrypt"
# scrypt with n=2^14, r=8 (16 MiB, ~50 ms here): OWASP's minimum for scrypt is n=2^17 at r=8, p=1, or
# equivalently n=2^14 with p=5; p=5 keeps memory per check low for a small pod.
N, R, P = 2**14, 8, 5


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
    candidate = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=len(digest))
    return hmac.compare_digest(candidate, digest)


@dataclass
class _Attempts:
    failures: int = 0
    next_at: float = 0.0
    checking: bool = False


@dataclass
class Throttle:
    """Login attempts per client: `free` failures in a row are let through at once; after that each attempt
    waits `base` seconds, doubled per failure, up to `ceiling`. A success resets the client.

    `begin` decides before the password is checked and counts the attempt as a failure until `finished` says
    otherwise: a client that sends many attempts at once gets one checked and the rest refused."""

    free: int = 3
    base: float = 1.0
    ceiling: float = 300.0
    clock: Callable[[], float] = time.monotonic
    max_clients: int = 10_000
    clients: OrderedDict[str, _Attempts] = field(default_factory=OrderedDict)

    def begin(self, client: str) -> float:
        """0 and an attempt reserved for `client`, or the seconds it must wait (nothing reserved)."""
        now = self.clock()
        state = self.clients.get(client) or _Attempts()
        if state.checking:
            return max(self.base, state.next_at - now)
        if now < state.next_at:
            return state.next_at - now
        state.failures += 1
        state.checking = True
        extra = state.failures - self.free
        state.next_at = now + (min(self.ceiling, self.base * 2 ** (extra - 1)) if extra > 0 else 0.0)
        self.clients[client] = state
        self.clients.move_to_end(client)
        while len(self.clients) > self.max_clients:  # bounded memory whatever the number of clients
            self.clients.popitem(last=False)
        return 0.0

    def finished(self, client: str, ok: bool) -> None:
        """The reserved attempt's outcome: a success forgets the client, a failure stays counted."""
        state = self.clients.get(client)
        if state is None:
            return
        if ok:
            del self.clients[client]
        else:
            state.checking = False


@dataclass(frozen=True)
class AuthConfig:
    """`password_hash` None: read-only for everyone, no login page."""

    password_hash: str | None
    storage_secret: str
    secret_from_env: bool

    @property
    def enabled(self) -> bool:
        return self.password_hash is not None

    @property
    def session_token(self) -> str:
        """What a logged-in session stores: derived from the password hash, so a new password logs every
        session out."""
        return hashlib.sha256(f"makeusrich-ui:{self.password_hash or ''}".encode()).hexdigest()[:32]


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
