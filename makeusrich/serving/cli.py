"""`makeusrich serve` and `makeusrich predict`, registered by makeusrich.cli through `add_serving_commands`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import sys
from collections.abc import Callable

import pandas as pd

from makeusrich.errors import MakeUsRichError
from makeusrich.market.candles import close_moments, interval_ms

Add = Callable[[str, str, Callable[[argparse.Namespace], int]], argparse.ArgumentParser]

log = logging.getLogger("makeusrich")


def cmd_serve(args: argparse.Namespace) -> int:
    from makeusrich.serving.options import ServeOptions
    from makeusrich.serving.server import serve
    from makeusrich.settings import from_args

    serve(from_args(ServeOptions, args))
    return 0


def lookback_days_for(window: int, interval: str) -> int:
    """Days of candles that cover one window with margin (two candles, one day), so predict fetches little."""
    return max(1, math.ceil((window + 2) * interval_ms(interval) / 86_400_000) + 1)


def count_gaps(open_times: pd.Series, interval: str) -> int:
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
    from makeusrich.cliargs import MarketSettings
    from makeusrich.contract import iso_z
    from makeusrich.market.source import Source, load_candles
    from makeusrich.pair import load_pair_arg
    from makeusrich.serving.options import PredictSettings
    from makeusrich.settings import from_args
    from makeusrich.v2client import V2Client

    pair = load_pair_arg(args.file)
    market = from_args(MarketSettings, args)
    settings = from_args(PredictSettings, args)
    source, spec, url = Source.parse(market.source), pair.spec, settings.url

    async def run() -> tuple[pd.DataFrame, pd.DataFrame]:
        async with V2Client(url, timeout=settings.timeout) as client:
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
            candles = await asyncio.to_thread(
                load_candles, short, source, None, None, market.api_url, market.binance_retries
            )
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
    from makeusrich.cliargs import TIMES_NOTE, MarketSettings, add_pair_args
    from makeusrich.environment import S3, epilog
    from makeusrich.serving.options import PredictSettings, ServeOptions
    from makeusrich.settings import add_flags, variables

    p = add("serve", "serve the promoted models over the KServe v2 (Open Inference) REST protocol", cmd_serve)
    add_flags(p, ServeOptions)
    p.epilog = epilog([*variables(ServeOptions), *S3])

    p = add("predict", "forecast a pair's next candles with its served model (KServe v2 protocol)", cmd_predict)
    add_pair_args(p, required=False)
    add_flags(p, PredictSettings)
    p.add_argument("--json", action="store_true", help="print the forecast as JSON")
    p.epilog = epilog(["MAKEUSRICH_PAIR", *variables(PredictSettings), *variables(MarketSettings)], note=TIMES_NOTE)
