"""`makeusrich train`, the job the operator's CronJob runs (and `makeusrich up`'s trainer), `makeusrich recalibrate`
(new margins for the served LSTM, no training), and `makeusrich backtest`, the walk-forward replay of training over
past candles."""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from makeusrich.errors import MakeUsRichError
from makeusrich.settings import StoreSettings

if TYPE_CHECKING:
    from makeusrich.pair import CurrencyPair, CurrencyPairSpec
    from makeusrich.settings import Add
    from makeusrich.store import PairStore
    from makeusrich.trainer.pipeline import Outcome


class TrainSettings(StoreSettings):
    """What `makeusrich train` takes besides the pair and its candle source."""

    model_config = SettingsConfigDict(env_prefix="MAKEUSRICH_TRAIN_")

    max_epochs: int | None = Field(None, ge=1, description="override spec.model.maxEpochs (short runs)")
    lookback_days: int | None = Field(None, ge=1, description="override spec.lookbackDays")
    recalibrate_first: bool = Field(
        False,
        description="first refit only the served LSTM's margins (as makeusrich recalibrate); train when that is "
        "refused or not promoted (what a pair whose ranges turned too narrow runs)",
    )


STEP_RE = re.compile(r"^(\d+)([hdw])$")
STEP_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


class BacktestSettings(StoreSettings):
    """What `makeusrich backtest` takes besides the pair and its candle source."""

    model_config = SettingsConfigDict(env_prefix="MAKEUSRICH_BACKTEST_")

    folds: int = Field(12, ge=1, le=120, description="folds: retrainings replayed, newest last")
    step: str = Field("30d", description="time between cutoffs, and each fold's forecast period: 12h, 30d, 2w")
    jobs: int = Field(1, ge=1, le=64, description="folds trained at once, each in its own process")
    hold_out: int = Field(
        0,
        ge=0,
        le=119,
        description="also pool the newest N folds apart from the others: a setting chosen on the "
        "others is reported on these, unseen",
    )
    lookback_days: int | None = Field(None, ge=1, le=3650, description="override spec.lookbackDays")
    max_epochs: int | None = Field(None, ge=1, description="override spec.model.maxEpochs (short runs)")
    cold: bool = Field(
        False,
        description="train every fold from the seed, as spec.model.warmStart false does (by default each fold "
        "starts from the previous fold's weights, as scheduled runs do; then folds run one at a time)",
    )
    out: Path = Field(
        Path("backtest"), description="folder for backtest.json, folds.csv, skill.png, decision.csv and equity.png"
    )
    publish: bool = Field(
        False,
        description="also store backtest.json beside the promoted version's metadata.json in --store (the "
        "dashboard shows it); only when that version was trained with the same spec.model and lookbackDays",
    )

    @field_validator("step")
    @classmethod
    def _step(cls, value: str) -> str:
        if not STEP_RE.match(value) or int(value[:-1]) == 0:
            raise ValueError(f"a step is a whole number of hours, days or weeks (12h, 30d, 2w), got {value!r}")
        return value

    def step_delta(self) -> timedelta:
        return int(self.step[:-1]) * STEP_UNITS[self.step[-1]]


def cmd_backtest(args: argparse.Namespace) -> int:
    from makeusrich.market import Source, load_candles
    from makeusrich.pair import load_pair_arg
    from makeusrich.scoring import decision
    from makeusrich.settings import MarketSettings, from_args
    from makeusrich.store import write_backtest
    from makeusrich.trainer.backtest import (
        decision_csv,
        decision_markdown,
        equity_png,
        history_days,
        plot_png,
        ratios_markdown,
        to_csv,
        to_markdown,
        walk_forward,
    )

    pair = load_pair_arg(args.file)
    market, settings = from_args(MarketSettings, args), from_args(BacktestSettings, args)
    spec = pair.spec
    if settings.lookback_days is not None:
        spec = spec.model_copy(update={"lookback_days": settings.lookback_days})
    if settings.max_epochs is not None:
        spec = spec.model_copy(update={"model": spec.model.model_copy(update={"max_epochs": settings.max_epochs})})
    if settings.cold:
        spec = spec.model_copy(update={"model": spec.model.model_copy(update={"warm_start": False})})
    if settings.hold_out >= settings.folds:
        raise MakeUsRichError(f"--hold-out {settings.hold_out} leaves no fold to choose on; use fewer than --folds")
    step = settings.step_delta()
    candles = load_candles(
        spec.model_copy(update={"lookback_days": history_days(spec.lookback_days, settings.folds, step)}),
        Source.parse(market.source),
        api_url=market.api_url,
        max_retries=market.binance_retries,
    )
    target = served_version(pair, spec, settings) if settings.publish else None  # refused before hours of work
    result = walk_forward(
        pair.name,
        spec,
        candles.frame,
        settings.folds,
        step,
        settings.jobs,
        show_progress=sys.stderr.isatty(),
        source=candles.source,
        hold_out=settings.hold_out,
    )
    settings.out.mkdir(parents=True, exist_ok=True)
    (settings.out / "backtest.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    (settings.out / "folds.csv").write_text(to_csv(result))
    (settings.out / "skill.png").write_bytes(plot_png(result))
    (settings.out / "decision.csv").write_text(decision_csv(result))
    (settings.out / "equity.png").write_bytes(equity_png(result))
    print(
        f"{pair.name}: {settings.folds} folds of {settings.step} from {candles.source}, "
        f"lookback {spec.lookback_days} days"
    )
    print(to_markdown(result), end="")
    if ratios := ratios_markdown(result):
        print("\nThe 90% range's interval score over each naive range's, with 95% bootstrap intervals:")
        print(ratios, end="")
    print(f"\nWould following it have made money? After fees of {spec.decision.fee_bps:g} bps a trade:")
    print(decision_markdown(result), end="")
    if result.pooled_decision is not None:
        print(decision.headline(result.pooled_decision, f"{len(result.folds)} folds pooled"))
    print(
        f"wrote {settings.out}/backtest.json, folds.csv, skill.png, decision.csv and equity.png "
        f"({result.seconds:.0f} s)"
    )
    if target is not None:
        store, version = target
        print(f"stored beside version {version}: {write_backtest(store, version, result)}")
    return 0


def served_version(pair: CurrencyPair, spec: CurrencyPairSpec, settings: BacktestSettings) -> tuple[PairStore, str]:
    """The store and promoted version a backtest of `spec` may be stored beside: one trained with the same
    model settings and lookback, so that the walk-forward describes what is served."""
    import pandas as pd

    from makeusrich.store import pair_store

    store = pair_store(settings.store, pair.namespace, pair.name)
    latest = store.latest()
    if latest is None:
        raise MakeUsRichError(f"--publish: {pair.name} has no promoted version in {store.objects.uri(store.prefix)}")
    meta = store.model_metadata(latest.version)
    days = (pd.Timestamp(meta.data.to) - pd.Timestamp(meta.data.from_)) / pd.Timedelta(days=1)
    shape = spec.model.model_dump(by_alias=True, exclude={"warm_start"})  # how a run starts changes no model
    if {k: v for k, v in meta.spec.items() if k != "warmStart"} != shape or days > spec.lookback_days + 1:
        raise MakeUsRichError(
            f"--publish: the promoted version {latest.version} was trained with other settings (spec.model or "
            f"{days:.0f} days of candles) than this backtest's (lookbackDays {spec.lookback_days}); run it "
            "with the pair's own settings, or without --publish"
        )
    return store, latest.version


def shown(outcome: Outcome, as_json: bool) -> int:
    """The version's metadata.json, or the summary a person reads."""
    from makeusrich.trainer.pipeline import summary

    if as_json:
        sys.stdout.write(json.dumps(outcome.metadata.to_json(), indent=2, sort_keys=True) + "\n")
    else:
        print(summary(outcome))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from makeusrich.market import Source
    from makeusrich.pair import load_pair_arg
    from makeusrich.settings import MarketSettings, from_args
    from makeusrich.trainer.pipeline import recalibrate_or_train, run_training

    pair = load_pair_arg(args.file)
    market, settings = from_args(MarketSettings, args), from_args(TrainSettings, args)
    overrides: dict[str, object] = {}
    if settings.lookback_days is not None:
        overrides["lookback_days"] = settings.lookback_days
    if settings.max_epochs is not None:
        overrides["model"] = pair.spec.model.model_copy(update={"max_epochs": settings.max_epochs})
    if overrides:
        pair = pair.model_copy(update={"spec": pair.spec.model_copy(update=overrides)})
    run = recalibrate_or_train if settings.recalibrate_first else run_training
    outcome = run(
        pair, Source.parse(market.source), settings.store, api_url=market.api_url, max_retries=market.binance_retries
    )
    return shown(outcome, args.json)


def add_train_command(add: Add) -> None:
    from makeusrich.settings import S3, TIMES_NOTE, MarketSettings, add_flags, add_pair_args, epilog, variables

    p = add("train", "train, evaluate, export and publish one model version for a pair", cmd_train)
    add_pair_args(p, required=False)
    add_flags(p, TrainSettings)
    p.add_argument("--json", action="store_true", help="print the version's metadata.json instead of a summary")
    p.epilog = epilog(["MAKEUSRICH_PAIR", *variables(TrainSettings), *variables(MarketSettings), *S3], note=TIMES_NOTE)


def cmd_recalibrate(args: argparse.Namespace) -> int:
    from makeusrich.market import Source
    from makeusrich.pair import load_pair_arg
    from makeusrich.settings import MarketSettings, from_args
    from makeusrich.trainer.pipeline import run_recalibration

    pair = load_pair_arg(args.file)
    market, settings = from_args(MarketSettings, args), from_args(StoreSettings, args)
    outcome = run_recalibration(
        pair, Source.parse(market.source), settings.store, api_url=market.api_url, max_retries=market.binance_retries
    )
    return shown(outcome, args.json)


def add_recalibrate_command(add: Add) -> None:
    from makeusrich.settings import S3, TIMES_NOTE, MarketSettings, add_flags, add_pair_args, epilog, variables

    p = add(
        "recalibrate",
        "refit the served LSTM's range margins on the newest held-out hours and publish them through the gates",
        cmd_recalibrate,
    )
    add_pair_args(p, required=False)
    add_flags(p, StoreSettings)
    p.add_argument("--json", action="store_true", help="print the version's metadata.json instead of a summary")
    p.epilog = epilog(["MAKEUSRICH_PAIR", *variables(StoreSettings), *variables(MarketSettings), *S3], note=TIMES_NOTE)


def add_backtest_command(add: Add) -> None:
    from makeusrich.settings import S3, TIMES_NOTE, MarketSettings, add_flags, add_pair_args, epilog, variables

    p = add(
        "backtest", "walk-forward backtest: replay a pair's retraining over past candles, score each fold", cmd_backtest
    )
    add_pair_args(p, required=False)
    add_flags(p, BacktestSettings)
    p.epilog = epilog(
        ["MAKEUSRICH_PAIR", *variables(BacktestSettings), *variables(MarketSettings), *S3], note=TIMES_NOTE
    )
