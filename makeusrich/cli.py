"""The `makeusrich` command line (contract 5): thin shells around the package's functions.

Every failure the user can act on ends with exit status 1 and one sentence on stderr saying what was wrong;
a usage mistake (an unknown flag, a missing argument) is argparse's exit status 2 with the usage line.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

import yaml

from makeusrich import __version__
from makeusrich.errors import MakeUsRichError
from makeusrich.log import setup_logging
from makeusrich.settings import S3, TIMES_NOTE, MarketSettings, add_pair_args, epilog, variables

log = logging.getLogger("makeusrich")


def cmd_crd(args: argparse.Namespace) -> int:
    from makeusrich.pair import crd_manifest

    sys.stdout.write(yaml.safe_dump_all([crd_manifest()], sort_keys=False, explicit_start=True))
    return 0


def cmd_candles(args: argparse.Namespace) -> int:
    from makeusrich.market import Source, close_moments, load_candles
    from makeusrich.pair import load_pair
    from makeusrich.settings import from_args
    from makeusrich.store import pair_store

    pair = load_pair(args.file)
    store = pair_store(args.store, pair.namespace, pair.name) if args.store else None
    market = from_args(MarketSettings, args)
    source = Source.parse(market.source)
    candles = load_candles(pair.spec, source, store, api_url=market.api_url, max_retries=market.binance_retries)
    shown = candles.frame.tail(args.last)
    log.info(
        "candles loaded",
        extra={"source": candles.source, "requests": candles.requests, "report": candles.report.summary()},
    )
    if args.json:
        sys.stdout.write(shown.to_json(orient="records", date_format="iso") + "\n")
    else:
        print(f"{pair.spec.symbol} {pair.spec.interval} from {candles.source}: {candles.report.summary()}")
        table = shown[["open", "high", "low", "close", "volume"]].copy()
        closes_at = close_moments(shown["open_time"], pair.spec.interval).dt.strftime("%Y-%m-%d %H:%M")
        table.insert(0, "closes at (UTC)", closes_at)
        print(table.to_string(index=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="makeusrich",
        description="Train, serve and watch cryptocurrency forecasting models, on Kubernetes or on one machine.",
        epilog=f"{TIMES_NOTE} Failures exit with status 1 and one sentence; usage mistakes with status 2. "
        "`makeusrich COMMAND --help` lists the environment variables each command reads.",
    )
    parser.add_argument("--version", action="version", version=f"makeusrich {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--log-json", action="store_true", default=None, help="log JSON lines even on a terminal")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, handler: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name, help=help_text, description=help_text, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        p.set_defaults(handler=handler)
        return p

    add("crd", "print the CurrencyPair CustomResourceDefinition (YAML)", cmd_crd)

    p = add("candles", "fetch and show a pair's recent candles", cmd_candles)
    add_pair_args(p)
    p.add_argument(
        "--store",
        default=None,
        help="store whose candle cache to use and update: a folder or s3://bucket[/prefix] (default: none)",
    )
    p.epilog = epilog([*variables(MarketSettings), *S3], note=TIMES_NOTE)
    p.add_argument("--last", type=int, default=10, help="how many of the newest candles to show")
    p.add_argument("--json", action="store_true", help="print the candles as JSON records")

    from makeusrich.local import add_up_command
    from makeusrich.operator import add_operator_commands
    from makeusrich.serving import add_serving_commands
    from makeusrich.track import add_track_command
    from makeusrich.trainer import add_backtest_command, add_recalibrate_command, add_train_command
    from makeusrich.ui import add_ui_commands

    add_up_command(add)
    add_train_command(add)
    add_recalibrate_command(add)
    add_backtest_command(add)
    add_serving_commands(add)
    add_track_command(add)
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
