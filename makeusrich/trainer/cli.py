"""`makeusrich train`: the job the operator's CronJob runs, and what `make run` runs on one machine."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from makeusrich.cliargs import StoreSettings

Add = Callable[[str, str, Callable[[argparse.Namespace], int]], argparse.ArgumentParser]


class TrainSettings(StoreSettings):
    """What `makeusrich train` takes besides the pair and its candle source."""

    model_config = SettingsConfigDict(env_prefix="MAKEUSRICH_TRAIN_")

    max_epochs: int | None = Field(None, ge=1, description="override spec.model.maxEpochs (short runs)")
    lookback_days: int | None = Field(None, ge=1, description="override spec.lookbackDays")


def cmd_train(args: argparse.Namespace) -> int:
    from makeusrich.cliargs import MarketSettings
    from makeusrich.market.source import Source
    from makeusrich.pair import load_pair_arg
    from makeusrich.settings import from_args
    from makeusrich.trainer.pipeline import run_training, summary

    pair = load_pair_arg(args.file)
    market, settings = from_args(MarketSettings, args), from_args(TrainSettings, args)
    overrides: dict[str, object] = {}
    if settings.lookback_days is not None:
        overrides["lookback_days"] = settings.lookback_days
    if settings.max_epochs is not None:
        overrides["model"] = pair.spec.model.model_copy(update={"max_epochs": settings.max_epochs})
    if overrides:
        pair = pair.model_copy(update={"spec": pair.spec.model_copy(update=overrides)})
    outcome = run_training(
        pair, Source.parse(market.source), settings.store, api_url=market.api_url, max_retries=market.binance_retries
    )
    if args.json:
        sys.stdout.write(json.dumps(outcome.metadata.to_json(), indent=2, sort_keys=True) + "\n")
    else:
        print(summary(outcome))
    return 0


def add_train_command(add: Add) -> None:
    from makeusrich.cliargs import TIMES_NOTE, MarketSettings, add_pair_args
    from makeusrich.environment import S3, epilog
    from makeusrich.settings import add_flags, variables

    p = add("train", "train, evaluate, export and publish one model version for a pair", cmd_train)
    add_pair_args(p, required=False)
    add_flags(p, TrainSettings)
    p.add_argument("--json", action="store_true", help="print the version's metadata.json instead of a summary")
    p.epilog = epilog(["MAKEUSRICH_PAIR", *variables(TrainSettings), *variables(MarketSettings), *S3], note=TIMES_NOTE)
