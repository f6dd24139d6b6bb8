"""`makeusrich serve` and `makeusrich predict`, registered by makeusrich.cli through `add_serving_commands`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import sys
from collections.abc import Callable

import pandas as pd

from makeusrich.errors import MakeUsRichError

Add = Callable[[str, str, Callable[[argparse.Namespace], int]], argparse.ArgumentParser]

log = logging.getLogger("makeusrich")




def cmd_serve(args: argparse.Namespace) -> int:
    from makeusrich.cliargs import store_from
    from makeusrich.serving.server import ServeOptions, parse_pairs, serve

    options = ServeOptions(
        store=None if args.model_dir else store_from(args),
        namespace=args.namespace,
        pairs=parse_pairs(args.pairs),
        model_dir=args.model_dir,
        host=args.host,
        port=args.port,
        poll_seconds=args.poll_seconds,
        max_batch=args.max_batch,
        threads=args.threads,
        inline_batch=args.inline_batch,
        access_log=args.access_log,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024) if args.max_body_mb else None,
    )
    if args.max_body_mb is not None and args.max_body_mb <= 0:
        raise MakeUsRichError("--max-body-mb must be positive")
    if options.model_dir and options.pairs:
        raise MakeUsRichError("--pairs selects pairs in a store; with --model-dir every model folder is served")
    serve(options)
    return 0


def lookback_days_for(window: int, interval: str) -> int:
    """Days of candles that cover one window with margin (two candles, one day), so predict fetches little."""
    from makeusrich.market.candles import interval_ms

    return max(1, math.ceil((window + 2) * interval_ms(interval) / 86_400_000) + 1)


def count_gaps(open_times: pd.Series, interval: str) -> int:
    from makeusrich.market.candles import interval_ms

    steps = open_times.diff().dropna()
    return int((steps != pd.Timedelta(milliseconds=interval_ms(interval))).sum())


def format_forecast(
    pair_name: str, symbol: str, interval: str, frame: pd.DataFrame, last_close_at: pd.Timestamp
) -> str:
    """The forecast as a person reads it: every time is the moment a candle closes (UTC)."""
    version = frame["model_version"].iloc[0] if len(frame) else None
    last_close = float(frame["last_close"].iloc[0])
    lines = [
        f"{pair_name} ({symbol} {interval}), model version {version or 'unknown'}: "
        f"last close {last_close:,.2f} at {last_close_at:%Y-%m-%d %H:%M} UTC",
        f"{'close at (UTC)':<18} {'predicted close':>16} {'change':>9}",
    ]
    for row in frame.itertuples(index=False):
        lines.append(f"{row.close_time:%Y-%m-%d %H:%M}   {row.close:>16,.2f} {row.change:>+9.3%}")
    return "\n".join(lines)


def cmd_predict(args: argparse.Namespace) -> int:
    from makeusrich.cliargs import retries_from
    from makeusrich.contract import iso_z
    from makeusrich.market.candles import close_moments
    from makeusrich.market.source import Source, load_candles
    from makeusrich.pair import load_pair_arg
    from makeusrich.v2client import DEFAULT_URL, SERVING_URL_ENV, V2Client, check_url

    pair = load_pair_arg(args.file)
    source = Source.parse(args.source)
    spec = pair.spec
    url = check_url(args.url or os.environ.get(SERVING_URL_ENV) or DEFAULT_URL)
    retries = retries_from(args)

    async def run() -> tuple[pd.DataFrame, pd.DataFrame]:
        async with V2Client(url, timeout=args.timeout) as client:
            meta = await client.model_metadata(pair.name)
            served_interval = meta.parameters.get("interval")
            if served_interval and served_interval != spec.interval:
                raise MakeUsRichError(
                    f"model {pair.name} at {url} forecasts {served_interval} candles but "
                    f"{args.file or 'the pair'} says {spec.interval}"
                )
            if meta.horizon != spec.model.horizon:
                raise MakeUsRichError(
                    f"model {pair.name} at {url} forecasts {meta.horizon} candle(s) ahead but "
                    f"{args.file or 'the pair'} says horizon {spec.model.horizon}; the pair file and the served "
                    "model must agree (retrain, or fix the file)"
                )
            window = meta.window
            short = spec.model_copy(update={"lookback_days": lookback_days_for(window, spec.interval)})
            candles = await asyncio.to_thread(load_candles, short, source, None, None, args.api_url, retries)
            frame = candles.frame
            gaps = count_gaps(frame["open_time"].tail(window), spec.interval)
            if gaps:
                log.warning("the last %d candles have %d gap(s); the model reads them as consecutive", window, gaps)
            forecast = await client.forecast(pair.name, frame, spec.interval, window)
            return frame, forecast

    frame, forecast = asyncio.run(run())
    last_close_at = close_moments(frame["open_time"], spec.interval).iloc[-1]
    if args.json:
        iso = forecast["close_time"].map(iso_z)
        records = forecast.drop(columns="close_time").assign(closeTime=iso)
        document = {
            "pair": pair.name,
            "symbol": spec.symbol,
            "interval": spec.interval,
            "lastCloseTime": iso_z(last_close_at),
            "forecast": records.to_dict(orient="records"),
        }
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        print(format_forecast(pair.name, spec.symbol, spec.interval, forecast, last_close_at))
    return 0


def add_serving_commands(add: Add) -> None:
    from makeusrich.cliargs import TIMES_NOTE, add_pair_args, add_store_arg
    from makeusrich.environment import BINANCE, S3, epilog
    from makeusrich.v2client import DEFAULT_URL, SERVING_URL_ENV

    p = add("serve", "serve the promoted models over the KServe v2 (Open Inference) REST protocol", cmd_serve)
    add_store_arg(p)
    p.epilog = epilog(["MAKEUSRICH_STORE", *S3])
    p.add_argument("--namespace", default="default", help="store namespace whose pairs to serve (default: default)")
    p.add_argument("--pairs", default=None, help="comma-separated pair names; default: every pair with a latest.json")
    p.add_argument(
        "--model-dir",
        default=None,
        metavar="DIR",
        help="serve a Triton model repository folder instead of a store (KServe mounts one at /mnt/models); "
        "the entrypoint of the makeusrich-onnx ClusterServingRuntime",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 in a container)")
    p.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080; 0 picks a free one)")
    p.add_argument(
        "--poll-seconds", type=float, default=10.0, help="how often to look for newly promoted versions (default 10)"
    )
    p.add_argument(
        "--max-batch", type=int, default=1024, help="most windows one request may hold; more is a 400 (default 1024)"
    )
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads per model (default 1)")
    p.add_argument(
        "--inline-batch",
        type=int,
        default=16,
        help="batches up to this size run on the event loop, larger ones in worker threads (default 16)",
    )
    p.add_argument(
        "--max-body-mb",
        type=float,
        default=None,
        metavar="MB",
        help="refuse inference requests larger than this with 413 (default: the largest valid request, "
        "--max-batch windows of the model's window, written out in JSON)",
    )
    p.add_argument("--access-log", action="store_true", help="log every request")

    p = add("predict", "forecast a pair's next candles with its served model (KServe v2 protocol)", cmd_predict)
    add_pair_args(p, required=False)
    p.add_argument(
        "--url",
        default=None,
        help=f"model server base URL, with its scheme (default {DEFAULT_URL}; env {SERVING_URL_ENV})",
    )
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each answer (default 10)")
    p.add_argument("--json", action="store_true", help="print the forecast as JSON")
    p.epilog = epilog(["MAKEUSRICH_PAIR", SERVING_URL_ENV, *BINANCE], note=TIMES_NOTE)
