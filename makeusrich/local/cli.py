"""`makeusrich up`: the whole system on one machine. Registered by makeusrich.cli through `add_up_command`."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from makeusrich.settings import StoreSettings

if TYPE_CHECKING:
    from makeusrich.settings import Add


class UpSettings(StoreSettings):
    """Everything `makeusrich up` takes besides the pair files."""

    model_config = SettingsConfigDict(env_prefix="MAKEUSRICH_UP_")

    pairs_dir: str = Field(
        "pairs",
        validation_alias="MAKEUSRICH_PAIRS_DIR",
        description="folder of pair files, watched while running (created with the bundled btc-usdt.yaml when "
        "missing and no -f is given)",
    )
    source: str = Field(
        "auto",
        validation_alias="MAKEUSRICH_SOURCE",
        description="where candles come from: auto (Binance, else the bundled sample where it covers the pair), "
        "binance, sample, or file:PATH",
    )
    host: str = Field("127.0.0.1", description="address the dashboard and the v2 endpoint listen on")
    port: int = Field(8081, ge=1, le=65535, description="dashboard port")
    serving_port: int = Field(8080, ge=1, le=65535, description="v2 endpoint port")
    track_port: int = Field(8082, ge=1, le=65535, description="the track record's /metrics and /healthz port")
    max_trainings: int = Field(1, ge=1, description="trainings at once (a 2-core laptop trains one LSTM well)")
    scan_seconds: float = Field(2.0, gt=0, description="how often to look at the pair files and schedules")
    max_epochs: int | None = Field(None, ge=1, description="override every pair's spec.model.maxEpochs")
    lookback_days: int | None = Field(None, ge=1, description="override every pair's spec.lookbackDays")
    first_lookback_days: int = Field(
        365,
        ge=0,
        description="a pair's first training (no model yet) reads at most this many days, so that it forecasts "
        "within minutes; later runs read spec.lookbackDays (0: always spec.lookbackDays)",
    )


def cmd_up(args: argparse.Namespace) -> int:
    from makeusrich.local.runner import Runner, UpPlan, check_ports, seed_pairs
    from makeusrich.settings import MarketSettings, from_args
    from makeusrich.store import store_location

    settings = from_args(UpSettings, args)
    from_args(MarketSettings, args, source=settings.source)  # the same check `train` makes of --source
    kind, where = store_location(settings.store)
    train_args: list[str] = []
    if settings.max_epochs:
        train_args += ["--max-epochs", str(settings.max_epochs)]
    if settings.lookback_days:
        train_args += ["--lookback-days", str(settings.lookback_days)]
    plan = UpPlan(
        pairs_dir=Path(settings.pairs_dir).resolve(),
        files=tuple(Path(f).resolve() for f in args.file or ()),
        store=where,
        source=settings.source,
        host=settings.host,
        port=settings.port,
        serving_port=settings.serving_port,
        track_port=settings.track_port,
        max_trainings=settings.max_trainings,
        scan_seconds=settings.scan_seconds,
        train_args=tuple(train_args),
        first_lookback_days=0 if settings.lookback_days else settings.first_lookback_days,
        logs_dir=(Path(where).parent if kind == "file" else Path(".makeusrich").resolve()) / "logs",
    )
    check_ports(plan)
    if not args.file and seed_pairs(plan.pairs_dir):
        print(f"Created {plan.pairs_dir} with the bundled btc-usdt.yaml (BTC/USDT, 1h); add pair files there.")
    print(f"Store: {where}; pairs: {plan.pairs_dir}{''.join(f', {f}' for f in plan.files)}", flush=True)
    code = asyncio.run(Runner(plan).run())
    print("Stopped.", flush=True)
    return code


def add_up_command(add: Add) -> None:
    from makeusrich.settings import S3, UI, add_flags, epilog, variables

    p = add(
        "up",
        "run everything on this machine: scheduled training, the store, v2 serving, the track record, the dashboard",
        cmd_up,
    )
    p.add_argument("-f", "--file", action="append", help="a pair file to run (repeatable); default: the pairs folder")
    add_flags(p, UpSettings)
    p.epilog = epilog([*variables(UpSettings), *UI, *S3])
