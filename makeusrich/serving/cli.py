"""`makeusrich serve` and `makeusrich predict`, registered by makeusrich.cli through `add_serving_commands`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import re
import sys
import time
from typing import TYPE_CHECKING, Any

from makeusrich.contract import central_ranges
from makeusrich.errors import MakeUsRichError
from makeusrich.store import MODEL_KINDS

if TYPE_CHECKING:
    import pandas as pd

    from makeusrich.settings import Add


log = logging.getLogger("makeusrich")


def cmd_serve(args: argparse.Namespace) -> int:
    from makeusrich.serving.options import ServeOptions
    from makeusrich.serving.server import serve
    from makeusrich.settings import from_args

    serve(from_args(ServeOptions, args))
    return 0


def lookback_days_for(window: int, interval: str) -> int:
    """Days of candles that cover one window with margin (two candles, one day), so predict fetches little."""
    from makeusrich.market import interval_ms

    return max(1, math.ceil((window + 2) * interval_ms(interval) / 86_400_000) + 1)


def count_gaps(open_times: pd.Series, interval: str) -> int:
    import pandas as pd

    from makeusrich.market import interval_ms

    steps = open_times.diff().dropna()
    return int((steps != pd.Timedelta(milliseconds=interval_ms(interval))).sum())


def describe_age(seconds: float) -> str:
    """An age as a person reads it: 40 s, 12 min, 5 h, 3 days."""
    for unit, size, up_to in (("s", 1, 120), ("min", 60, 120), ("h", 3600, 48)):
        if seconds < size * up_to:
            return f"{max(0, int(seconds // size))} {unit}"
    return f"{int(seconds // 86_400)} days"


def quantile_levels(frame: pd.DataFrame) -> list[float]:
    """The levels of a forecast frame's quantile columns (`q0.05`, ...), ascending; empty without them."""
    return sorted(float(column[1:]) for column in frame.columns if re.fullmatch(r"q\d*\.?\d+", column))


def format_ranges(row: pd.Series, levels: list[float]) -> str:
    """A row's central ranges, narrowest first: `range 50%: 21,900.10 to 22,150.00; 90%: ...`."""
    from makeusrich.contract import quantile_column

    parts = [
        f"{coverage:.0%}: {row[quantile_column(levels[low])]:,.2f} to {row[quantile_column(levels[high])]:,.2f}"
        for low, high, coverage in reversed(central_ranges(levels))
    ]
    return "range " + "; ".join(parts) if parts else ""


def format_forecast(
    pair_name: str,
    symbol: str,
    interval: str,
    frame: pd.DataFrame,
    last_close_at: pd.Timestamp,
    model_age_seconds: float | None = None,
    kind: str | None = None,
) -> str:
    """The forecast as a person reads it: every time is the moment a candle closes (UTC); which model made it and
    its age and, for a model with quantiles, the central ranges of each predicted close."""
    version = frame["model_version"].iloc[0] if len(frame) else None
    last_close = float(frame["last_close"].iloc[0])
    age = f" (trained {describe_age(model_age_seconds)} ago)" if model_age_seconds is not None else ""
    levels = quantile_levels(frame)
    model = f"{MODEL_KINDS.get(kind or '', 'model')} version {version or 'unknown'}{age}"
    lines = [
        f"{pair_name} ({symbol} {interval}), {model}: "
        f"last close {last_close:,.2f} at {last_close_at:%Y-%m-%d %H:%M} UTC",
        f"{'close at (UTC)':<18} {'predicted close':>16} {'change':>9}",
    ]
    for _, row in frame.iterrows():
        line = f"{row['close_time']:%Y-%m-%d %H:%M}   {row['close']:>16,.2f} {row['change']:>+9.3%}"
        ranges = format_ranges(row, levels)
        lines.append(f"{line}   {ranges}" if ranges else line)
    return "\n".join(lines)


def cmd_predict(args: argparse.Namespace) -> int:
    from makeusrich.contract import DEFAULT_NAMESPACE, iso_z, model_name_at
    from makeusrich.market import Source, close_moments, load_candles
    from makeusrich.pair import load_pair_arg
    from makeusrich.serving.options import PredictSettings
    from makeusrich.serving.validation import rfc3339
    from makeusrich.settings import MarketSettings, from_args
    from makeusrich.v2client import ModelMetadata, V2Client

    pair = load_pair_arg(args.file)
    market = from_args(MarketSettings, args)
    settings = from_args(PredictSettings, args)
    source, spec, url = Source.parse(market.source), pair.spec, settings.url

    async def run() -> tuple[pd.DataFrame, pd.DataFrame, ModelMetadata]:
        async with V2Client(url, timeout=settings.timeout) as client:
            listed = await client.list_models() if pair.namespace != DEFAULT_NAMESPACE else None
            name = model_name_at(pair.namespace, pair.name, listed)
            meta = await client.model_metadata(name)
            served_namespace = meta.parameters.get("namespace")
            if served_namespace not in (None, pair.namespace):
                raise MakeUsRichError(
                    f"model {name} at {url} is the pair {name} of namespace {served_namespace}, not of "
                    f"{pair.namespace}; that pair is not served there yet"
                )
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
            forecast = await client.forecast(name, frame, spec.interval, window, meta.levels)
            return frame, forecast, meta

    frame, forecast, meta = asyncio.run(run())
    last_close_at = close_moments(frame["open_time"], spec.interval).iloc[-1]
    created_at = rfc3339(meta.parameters.get("model_created_at"))
    age = time.time() - created_at.timestamp() if created_at is not None else None
    if args.json:
        iso = forecast["close_time"].map(iso_z)
        records = forecast.drop(columns="close_time").assign(closeTime=iso)
        document: dict[str, Any] = {
            "pair": pair.name,
            "symbol": spec.symbol,
            "interval": spec.interval,
            "lastCloseTime": iso_z(last_close_at),
            "forecast": records.to_dict(orient="records"),
        }
        if created_at is not None:
            document["modelCreatedAt"] = iso_z(created_at)
        if meta.levels:
            document["quantileLevels"] = list(meta.levels)
        if meta.kind:
            document["modelKind"] = meta.kind
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        print(format_forecast(pair.name, spec.symbol, spec.interval, forecast, last_close_at, age, meta.kind))
    return 0


def add_serving_commands(add: Add) -> None:
    from makeusrich.serving.options import PredictSettings, ServeOptions
    from makeusrich.settings import S3, TIMES_NOTE, MarketSettings, add_flags, add_pair_args, epilog, variables

    p = add("serve", "serve the promoted models over the KServe v2 (Open Inference) protocol, REST and gRPC", cmd_serve)
    add_flags(p, ServeOptions)
    p.epilog = epilog([*variables(ServeOptions), *S3])

    p = add("predict", "forecast a pair's next candles with its served model (KServe v2 protocol)", cmd_predict)
    add_pair_args(p, required=False)
    add_flags(p, PredictSettings)
    p.add_argument("--json", action="store_true", help="print the forecast as JSON")
    p.epilog = epilog(["MAKEUSRICH_PAIR", *variables(PredictSettings), *variables(MarketSettings)], note=TIMES_NOTE)
