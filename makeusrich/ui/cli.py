"""`makeusrich ui`: serve the dashboard; `makeusrich ui --hash-password`: make the login's password hash.
Registered by makeusrich.cli through `add_ui_commands`."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from typing import TYPE_CHECKING, TextIO

from makeusrich.errors import MakeUsRichError

if TYPE_CHECKING:
    from makeusrich.settings import Add
    from makeusrich.ui.settings import UIConfig


log = logging.getLogger("makeusrich")


def read_password(stdin: TextIO | None = None) -> str:
    """From a terminal: asked twice, not echoed. From a pipe: the first line (for scripts and Secrets)."""
    stdin = stdin or sys.stdin
    if stdin.isatty():
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Again: "):
            raise MakeUsRichError("the two passwords differ; nothing was printed")
        return first
    return stdin.readline().rstrip("\r\n")


def cmd_ui(args: argparse.Namespace) -> int:
    from makeusrich.ui.auth import HASH_ENV, auth_from_env, hash_password

    if args.hash_password:
        password = read_password()
        if len(password) < 8:
            raise MakeUsRichError("use a password of at least 8 characters")
        print(hash_password(password))
        print(f"# set {HASH_ENV} to the line above (for example from a Secret)", file=sys.stderr)
        return 0

    config = ui_config(args)
    auth = auth_from_env()
    if auth.enabled and not auth.secret_from_env:
        log.warning("MAKEUSRICH_UI_STORAGE_SECRET is not set: logins end when the dashboard restarts")
    from makeusrich.ui.app import run_ui

    run_ui(config, auth)
    return 0


def ui_config(args: argparse.Namespace) -> UIConfig:
    """What `makeusrich ui` will run with: flags, else environment variables, else defaults; checked now, so
    that a typo fails at start with one sentence rather than on every card."""
    from makeusrich.settings import from_args
    from makeusrich.store import DEFAULT_STORE, store_location
    from makeusrich.ui.settings import UIConfig

    config = from_args(UIConfig, args)
    # With --kubernetes the store is optional (the pairs' status carries the metrics); embedded, it has a default.
    store = config.store_url or (None if config.kubernetes else DEFAULT_STORE)
    if store is not None:
        store = store_location(store)[1]  # a folder by its absolute path, as logs and cards show it
    return config.model_copy(update={"store_url": store})


def add_ui_commands(add: Add) -> None:
    from makeusrich.settings import KUBERNETES, S3, UI, add_flags, epilog, variables
    from makeusrich.ui.settings import UIConfig

    p = add("ui", "serve the dashboard: prices, forecasts and each model's measured skill", cmd_ui)
    p.add_argument(
        "--hash-password",
        action="store_true",
        help="read a password (prompt, or first line of stdin), print its scrypt hash for "
        "MAKEUSRICH_UI_PASSWORD_HASH, and exit",
    )
    add_flags(p, UIConfig)
    p.epilog = epilog(
        [*variables(UIConfig), *UI, *KUBERNETES, *S3],
        note="The dashboard is read-only unless MAKEUSRICH_UI_PASSWORD_HASH is set. Times are shown in the "
        "browser's time zone and name the moment a candle closes: the 1h candle from 00:00 to 01:00 is the 01:00 "
        "candle.",
    )
