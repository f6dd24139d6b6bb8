"""The `makeusrich` command line (contract 5): thin shells around the package's functions.

Every failure the user can act on ends with exit status 1 and one sentence on stderr saying what was wrong.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

import yaml

from makeusrich import __version__
from makeusrich.errors import MakeUsRichError
from makeusrich.log import setup_logging

log = logging.getLogger("makeusrich")

DEFAULT_STORE = os.environ.get("MAKEUSRICH_STORE", "file://./.makeusrich/store")


def _dump_yaml(documents: Sequence[object]) -> str:
    return yaml.safe_dump_all(documents, sort_keys=False, explicit_start=True)


def cmd_crd(args: argparse.Namespace) -> int:
    from makeusrich.pair import crd_manifest

    sys.stdout.write(_dump_yaml([crd_manifest()]))
    return 0


def cmd_candles(args: argparse.Namespace) -> int:
    from makeusrich.market.source import Source, load_candles
    from makeusrich.pair import load_pair
    from makeusrich.store import pair_store

    pair = load_pair(args.file)
    store = pair_store(args.store, pair.namespace, pair.name) if args.store else None
    candles = load_candles(pair.spec, Source.parse(args.source), store, api_url=args.api_url)
    shown = candles.frame.tail(args.last)
    log.info(
        "candles loaded",
        extra={"source": candles.source, "requests": candles.requests, "report": candles.report.summary()},
    )
    if args.json:
        sys.stdout.write(shown.to_json(orient="records", date_format="iso") + "\n")
    else:
        print(f"{pair.spec.symbol} {pair.spec.interval} from {candles.source}: {candles.report.summary()}")
        print(shown[["open_time", "open", "high", "low", "close", "volume"]].to_string(index=False))
    return 0


def _add_pair_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    help_text = "CurrencyPair file (YAML), as for kubectl apply"
    if not required:
        help_text += "; default: the resource in $MAKEUSRICH_PAIR"
    parser.add_argument("-f", "--file", required=required, help=help_text)
    parser.add_argument(
        "--source",
        default="binance",
        help="where candles come from: binance (default), sample (bundled BTC/USDT 1h), or file:PATH (CSV)",
    )
    parser.add_argument("--api-url", default=None, help="Binance REST base URL (default: Binance; env BINANCE_API_URL)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="makeusrich",
        description="Train, serve and watch cryptocurrency forecasting models, on Kubernetes or on one machine.",
    )
    parser.add_argument("--version", action="version", version=f"makeusrich {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--log-json", action="store_true", default=None, help="log JSON lines even on a terminal")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands: dict[str, tuple[str, Callable[[argparse.Namespace], int]]] = {}

    def add(name: str, help_text: str, handler: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        commands[name] = (help_text, handler)
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    add("crd", "print the CurrencyPair CustomResourceDefinition (YAML)", cmd_crd)

    p = add("candles", "fetch and show a pair's recent candles", cmd_candles)
    _add_pair_args(p)
    p.add_argument(
        "--store",
        default=None,
        help="store URL whose candle cache to use and update (file:///dir or s3://bucket)",
    )
    p.add_argument("--last", type=int, default=10, help="how many of the newest candles to show")
    p.add_argument("--json", action="store_true", help="print the candles as JSON records")

    from makeusrich.operator.cli import add_operator_commands
    from makeusrich.serving.cli import add_serving_commands
    from makeusrich.trainer.cli import add_train_command
    from makeusrich.ui.cli import add_ui_commands

    add_train_command(add)
    add_serving_commands(add)
    add_operator_commands(add)
    add_ui_commands(add)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.log_json)
    try:
        return int(args.handler(args))
    except MakeUsRichError as exc:
        print(f"makeusrich {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"makeusrich {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
