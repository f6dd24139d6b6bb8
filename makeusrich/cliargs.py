"""Command-line pieces that several commands share: the pair file, the candle source, the store.

It sits below the component CLIs (trainer, serving, ui), which import it, so none of them reaches back into
makeusrich.cli. Environment variables are read when a command runs, never at import.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping

from makeusrich.errors import MakeUsRichError
from makeusrich.store import DEFAULT_STORE, STORE_ENV, store_url

RETRIES_ENV = "MAKEUSRICH_BINANCE_RETRIES"
TIMES_NOTE = (
    "Times name the moment a candle closes, in UTC: the 1h candle from 00:00 to 01:00 is the 01:00 candle, "
    "and its close is the price at 01:00."
)


def add_pair_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    help_text = "CurrencyPair file (YAML), as for kubectl apply"
    if not required:
        help_text += "; default: the resource in $MAKEUSRICH_PAIR"
    parser.add_argument("-f", "--file", required=required, help=help_text)
    add_source_args(parser)


def add_source_args(parser: argparse.ArgumentParser, retries_default: int = 5) -> None:
    parser.add_argument(
        "--source",
        default="binance",
        help="where candles come from: binance (default), sample (bundled BTC/USDT 1h), or file:PATH (CSV)",
    )
    parser.add_argument("--api-url", default=None, help="Binance REST base URL (default: Binance; env BINANCE_API_URL)")
    parser.add_argument(
        "--binance-retries",
        type=int,
        default=None,
        metavar="N",
        help=f"retries per Binance request on rate limits, 5xx and timeouts (default {retries_default}; env "
        f"{RETRIES_ENV}); an unreachable host is retried once",
    )


def add_store_arg(parser: argparse.ArgumentParser, purpose: str = "model store") -> None:
    parser.add_argument(
        "--store",
        default=None,
        help=f"{purpose}: a folder (relative ones start from the working directory) or s3://bucket[/prefix] "
        f"(default {DEFAULT_STORE}; env {STORE_ENV})",
    )


def store_from(args: argparse.Namespace) -> str:
    """--store, else $MAKEUSRICH_STORE, else the default folder."""
    return store_url(args.store)


def retries_from(args: argparse.Namespace, default: int = 5, env: Mapping[str, str] | None = None) -> int:
    """--binance-retries, else $MAKEUSRICH_BINANCE_RETRIES, else the command's default."""
    if args.binance_retries is not None:
        value: object = args.binance_retries
        where = "--binance-retries"
    else:
        text = (os.environ if env is None else env).get(RETRIES_ENV, "").strip()
        if not text:
            return default
        value, where = text, RETRIES_ENV
    try:
        retries = int(str(value))
    except ValueError:
        raise MakeUsRichError(f"{where}={value!r} is not a whole number; use 0 to 20") from None
    if not 0 <= retries <= 20:
        raise MakeUsRichError(f"{where}={retries} is out of range; use 0 to 20")
    return retries
