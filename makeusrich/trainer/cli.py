"""`makeusrich train`: the job the CronJob runs and `makeusrich up` schedules."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

Add = Callable[[str, str, Callable[[argparse.Namespace], int]], argparse.ArgumentParser]


def cmd_train(args: argparse.Namespace) -> int:
    from makeusrich.cliargs import retries_from, store_from
    from makeusrich.market.source import Source
    from makeusrich.pair import load_pair_arg
    from makeusrich.trainer.pipeline import run_training, summary

    pair = load_pair_arg(args.file)
    overrides: dict[str, object] = {}
    if args.lookback_days is not None:
        overrides["lookback_days"] = args.lookback_days
    model_overrides = {k: v for k, v in (("max_epochs", args.max_epochs),) if v is not None}
    if model_overrides:
        overrides["model"] = pair.spec.model.model_copy(update=model_overrides)
    if overrides:
        pair = pair.model_copy(update={"spec": pair.spec.model_copy(update=overrides)})
    outcome = run_training(
        pair, Source.parse(args.source), store_from(args), api_url=args.api_url, max_retries=retries_from(args)
    )
    if args.json:
        sys.stdout.write(json.dumps(outcome.metadata.to_json(), indent=2, sort_keys=True) + "\n")
    else:
        print(summary(outcome))
    return 0


def add_train_command(add: Add) -> None:
    from makeusrich.cliargs import TIMES_NOTE, add_pair_args, add_store_arg
    from makeusrich.environment import BINANCE, S3, epilog

    p = add("train", "train, evaluate, export and publish one model version for a pair", cmd_train)
    add_pair_args(p, required=False)
    add_store_arg(p)
    p.epilog = epilog(["MAKEUSRICH_PAIR", "MAKEUSRICH_STORE", *BINANCE, *S3], note=TIMES_NOTE)
    p.add_argument("--json", action="store_true", help="print the version's metadata.json instead of a summary")
    p.add_argument("--max-epochs", type=int, default=None, help="override spec.model.maxEpochs (short runs)")
    p.add_argument("--lookback-days", type=int, default=None, help="override spec.lookbackDays")
