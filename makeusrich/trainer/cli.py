"""`makeusrich train`: the job the CronJob runs and `makeusrich up` schedules."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

Add = Callable[[str, str, Callable[[argparse.Namespace], int]], argparse.ArgumentParser]


def cmd_train(args: argparse.Namespace) -> int:
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
    outcome = run_training(pair, Source.parse(args.source), args.store, api_url=args.api_url)
    if args.json:
        sys.stdout.write(json.dumps(outcome.metadata, indent=2, sort_keys=True) + "\n")
    else:
        print(summary(outcome))
    return 0


def add_train_command(add: Add) -> None:
    from makeusrich.cli import DEFAULT_STORE, _add_pair_args

    p = add("train", "train, evaluate, export and publish one model version for a pair", cmd_train)
    _add_pair_args(p, required=False)
    p.add_argument(
        "--store",
        default=DEFAULT_STORE,
        help="model store URL: file:///dir or s3://bucket[/prefix] (env MAKEUSRICH_STORE; "
        "S3 endpoint and keys from S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)",
    )
    p.add_argument("--json", action="store_true", help="print the version's metadata.json instead of a summary")
    p.add_argument("--max-epochs", type=int, default=None, help="override spec.model.maxEpochs (short runs)")
    p.add_argument("--lookback-days", type=int, default=None, help="override spec.lookbackDays")
