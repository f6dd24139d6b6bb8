"""`makeusrich ui`: serve the dashboard; `makeusrich ui --hash-password`: make the login's password hash.
Registered by makeusrich.cli through `add_ui_commands`."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TextIO

from makeusrich.errors import MakeUsRichError

if TYPE_CHECKING:
    from makeusrich.ui.app import UIConfig

Add = Callable[[str, str, Callable[[argparse.Namespace], int]], argparse.ArgumentParser]

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


def ui_config(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> UIConfig:
    """What `makeusrich ui` will run with: flags, else environment variables, else defaults; checked now, so
    that a typo fails at start with one sentence rather than on every card."""
    from makeusrich.cliargs import retries_from
    from makeusrich.market.source import Source
    from makeusrich.store import STORE_ENV, store_location, store_url
    from makeusrich.ui.app import UIConfig
    from makeusrich.ui.state import Options
    from makeusrich.v2client import DEFAULT_URL, SERVING_URL_ENV, check_url

    env = os.environ if env is None else env
    Source.parse(args.source)
    if args.refresh_seconds <= 0:
        raise MakeUsRichError("--refresh-seconds must be positive")
    if args.chart_candles < 2:
        raise MakeUsRichError("--chart-candles must be at least 2")
    # With --kubernetes the store is optional (the pairs' status carries the metrics); embedded, it has a default.
    store = (args.store or env.get(STORE_ENV)) if args.kubernetes else store_url(args.store, env)
    if store is not None:
        kind, where = store_location(store)
        store = where if kind == "file" else store  # a folder by its absolute path, as logs and cards show it
    return UIConfig(
        kubernetes=args.kubernetes,
        pairs_dir=args.pairs_dir or env.get(PAIRS_DIR_ENV) or DEFAULT_PAIRS_DIR,
        store_url=store,
        server_url=check_url(args.server_url or env.get(SERVING_URL_ENV) or DEFAULT_URL),
        namespace=args.namespace,
        kubeconfig=args.kubeconfig,
        kube_context=args.kube_context,
        source=args.source,
        api_url=args.api_url,
        host=args.host,
        port=args.port,
        title=args.title,
        options=Options(refresh_seconds=args.refresh_seconds, chart_candles=args.chart_candles),
        binance_retries=retries_from(args, DASHBOARD_RETRIES, env),
        secure_cookies=args.secure_cookies or env.get(SECURE_COOKIES_ENV, "").strip().lower() in ("1", "true", "yes"),
        trusted_proxies=args.trusted_proxies or env.get(TRUSTED_PROXIES_ENV) or "127.0.0.1",
    )


PAIRS_DIR_ENV = "MAKEUSRICH_PAIRS_DIR"
SECURE_COOKIES_ENV = "MAKEUSRICH_UI_SECURE_COOKIES"
TRUSTED_PROXIES_ENV = "MAKEUSRICH_UI_TRUSTED_PROXIES"
DEFAULT_PAIRS_DIR = "pairs"
# The dashboard refreshes every few seconds anyway: a page never waits on a long retry.
DASHBOARD_RETRIES = 2


def add_ui_commands(add: Add) -> None:
    from makeusrich.cliargs import add_source_args, add_store_arg
    from makeusrich.environment import BINANCE, KUBERNETES, S3, UI, epilog
    from makeusrich.v2client import DEFAULT_URL, SERVING_URL_ENV

    p = add("ui", "serve the dashboard: prices, forecasts and each model's measured skill", cmd_ui)
    p.add_argument(
        "--hash-password",
        action="store_true",
        help="read a password (prompt, or first line of stdin), print its scrypt hash for "
        "MAKEUSRICH_UI_PASSWORD_HASH, and exit",
    )
    p.add_argument(
        "--kubernetes",
        action="store_true",
        help="read CurrencyPair resources and InferenceService URLs from Kubernetes (default: pair files)",
    )
    p.add_argument(
        "--namespace",
        default=None,
        help="with --kubernetes: the namespace to read and create pairs in (default: all namespaces)",
    )
    p.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube)")
    p.add_argument("--kube-context", default=None, help="kubeconfig context (default: its current-context)")
    p.add_argument(
        "--pairs-dir",
        default=None,
        help=f"embedded mode: folder of pair files (*.yaml) to show and edit (default ./{DEFAULT_PAIRS_DIR}; "
        f"env {PAIRS_DIR_ENV})",
    )
    add_store_arg(p, "model store for versions, metrics and backtests (optional with --kubernetes)")
    p.add_argument(
        "--server-url",
        default=None,
        help=f"embedded mode: the v2 model server (default {DEFAULT_URL}; env {SERVING_URL_ENV})",
    )
    add_source_args(p, retries_default=DASHBOARD_RETRIES)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 in a container)")
    p.add_argument("--port", type=int, default=8081, help="HTTP port (default 8081)")
    p.add_argument(
        "--refresh-seconds",
        type=float,
        default=15.0,
        help="how often to look for new candles, model versions and pair changes (default 15)",
    )
    p.add_argument("--chart-candles", type=int, default=200, help="candles drawn on a pair's chart (default 200)")
    p.add_argument("--title", default="Make Us Rich", help="the name in the header and the browser tab")
    p.add_argument(
        "--secure-cookies",
        action="store_true",
        help=f"mark session cookies Secure whatever the scheme (env {SECURE_COOKIES_ENV}=1); without it they are "
        "Secure when the request came over TLS",
    )
    p.add_argument(
        "--trusted-proxies",
        default=None,
        metavar="IPS",
        help="comma-separated addresses (or *) whose X-Forwarded-For and X-Forwarded-Proto are believed, as an "
        f"ingress sets them (default 127.0.0.1; env {TRUSTED_PROXIES_ENV})",
    )
    p.epilog = epilog(
        [PAIRS_DIR_ENV, "MAKEUSRICH_STORE", SERVING_URL_ENV, *UI, *BINANCE, *KUBERNETES, *S3],
        note="The dashboard is read-only unless MAKEUSRICH_UI_PASSWORD_HASH is set. Times are shown in the "
        "browser's time zone and name the moment a candle closes: the 1h candle from 00:00 to 01:00 is the 01:00 "
        "candle.",
    )
