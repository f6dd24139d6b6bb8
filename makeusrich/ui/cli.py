"""`makeusrich ui`: serve the dashboard; `makeusrich ui --hash-password`: make the login's password hash.

`python -m makeusrich.ui.cli ui ...` runs the same command through the project's parser, with `ui` added when
makeusrich.cli does not register it itself.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from collections.abc import Callable
from typing import TextIO

from makeusrich.errors import MakeUsRichError

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

    from makeusrich.market.source import Source
    from makeusrich.ui.app import UIConfig, run_ui
    from makeusrich.ui.state import Options

    Source.parse(args.source)  # a typo fails here, not on every card
    if args.refresh_seconds <= 0:
        raise MakeUsRichError("--refresh-seconds must be positive")
    if args.chart_candles < 2:
        raise MakeUsRichError("--chart-candles must be at least 2")
    store = args.store
    if store is None and not args.kubernetes:
        from makeusrich.cli import DEFAULT_STORE

        store = DEFAULT_STORE
    config = UIConfig(
        kubernetes=args.kubernetes,
        pairs_dir=args.pairs_dir,
        store_url=store,
        server_url=args.server_url,
        namespace=args.namespace,
        kubeconfig=args.kubeconfig,
        kube_context=args.kube_context,
        source=args.source,
        api_url=args.api_url,
        host=args.host,
        port=args.port,
        title=args.title,
        options=Options(refresh_seconds=args.refresh_seconds, chart_candles=args.chart_candles),
    )
    auth = auth_from_env()
    if auth.enabled and not auth.secret_from_env:
        log.warning("MAKEUSRICH_UI_STORAGE_SECRET is not set: logins end when the dashboard restarts")
    run_ui(config, auth)
    return 0


def add_ui_commands(add: Add) -> None:
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
        default=os.environ.get("MAKEUSRICH_PAIRS_DIR", "pairs"),
        help="embedded mode: folder of pair files (*.yaml) to show and edit (default ./pairs)",
    )
    p.add_argument(
        "--store",
        default=os.environ.get("MAKEUSRICH_STORE"),
        help="model store URL for versions, metrics and backtests: file:///dir or s3://bucket[/prefix] "
        "(env MAKEUSRICH_STORE; embedded default file://./.makeusrich/store; optional with --kubernetes)",
    )
    p.add_argument(
        "--server-url",
        default=os.environ.get("MAKEUSRICH_SERVING_URL", "http://127.0.0.1:8080"),
        help="embedded mode: the v2 model server (default http://127.0.0.1:8080; env MAKEUSRICH_SERVING_URL)",
    )
    p.add_argument(
        "--source",
        default="binance",
        help="where candles come from: binance (default), sample (bundled BTC/USDT 1h) or file:PATH (CSV)",
    )
    p.add_argument("--api-url", default=None, help="Binance REST base URL (default: Binance; env BINANCE_API_URL)")
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
    p.epilog = (
        "Environment: MAKEUSRICH_UI_PASSWORD_HASH (from --hash-password) or MAKEUSRICH_UI_PASSWORD enables a login "
        "to create, edit and delete pairs (read-only without); MAKEUSRICH_UI_STORAGE_SECRET signs session cookies "
        "(random per start if unset); NICEGUI_STORAGE_PATH is where per-browser settings are kept (./.nicegui)."
    )


if __name__ == "__main__":  # `python -m makeusrich.ui.cli ui ...` is `makeusrich ui ...`
    from makeusrich.cli import main

    raise SystemExit(main())
