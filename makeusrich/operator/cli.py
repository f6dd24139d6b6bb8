"""`makeusrich render` and `makeusrich operator`: registered by makeusrich.cli through `add_operator_commands`."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from makeusrich.settings import Add

log = logging.getLogger("makeusrich.operator")


def _settings(args: argparse.Namespace, **given: Any) -> Any:
    from makeusrich.operator.settings import OperatorSettings
    from makeusrich.settings import from_args

    return from_args(OperatorSettings, args, **given)


def cmd_render(args: argparse.Namespace) -> int:
    import yaml

    from makeusrich.operator.objects import children
    from makeusrich.pair import load_pair
    from makeusrich.store import check_version

    pair = load_pair(args.file)
    if args.model_version is not None:
        check_version(args.model_version)
    uid = args.uid or pair.metadata.uid
    objects = children(pair, _settings(args), uid=uid, model_version=args.model_version)
    sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=False, explicit_start=True))
    if not uid:
        print(
            "render: ownerReferences are left out: they need the pair's uid, which the API server assigns "
            "(pass --uid to see them)",
            file=sys.stderr,
        )
    if not (pair.spec.serving.pinned_version or args.model_version):
        print(
            "render: no InferenceService yet: the operator makes it once latest.json names a version "
            "(pass --model-version to see it)",
            file=sys.stderr,
        )
    return 0


def cmd_operator(args: argparse.Namespace) -> int:
    from makeusrich.errors import MakeUsRichError
    from makeusrich.kube import load_credentials
    from makeusrich.operator.handlers import run_operator

    if args.all_namespaces and args.namespace:
        raise MakeUsRichError("give either --namespace (one or more) or --all-namespaces, not both")
    try:  # fail now with one sentence, rather than kopf retrying the login every minute
        load_credentials()
    except MakeUsRichError as exc:
        raise MakeUsRichError(f"cannot log in to Kubernetes: {exc}") from None
    settings = _settings(args, **({"namespaces": tuple(args.namespace)} if args.namespace else {}))
    namespaces = settings.namespaces
    if not args.verbose:
        # kopf logs every handler run: a line per pair per event.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    scope = "all namespaces" if not namespaces else "namespaces " + ", ".join(namespaces)
    log.info("operator starting", extra={"scope": scope, "store": settings.store_url, "image": settings.image})
    run_operator(settings, args.liveness or None)
    return 0


def add_operator_commands(add: Add) -> None:
    from makeusrich.operator.settings import OperatorSettings
    from makeusrich.settings import KUBERNETES, S3, add_flags, epilog, variables

    note = "Flags override the variables, which the Helm chart sets."
    p = add("render", "print the Kubernetes objects the operator makes for a pair (YAML)", cmd_render)
    p.add_argument("-f", "--file", required=True, help="CurrencyPair file (YAML), as for kubectl apply")
    p.add_argument("--model-version", default=None, help="show the InferenceService as it would serve this version")
    p.add_argument("--uid", default=None, help="the pair's uid, to show the children's ownerReferences")
    add_flags(p, OperatorSettings, skip=("reconcile_interval_s",))
    p.epilog = epilog(variables(OperatorSettings), note=note)

    p = add("operator", "run the Kubernetes operator (kopf) that reconciles CurrencyPairs", cmd_operator)
    p.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=None,
        help="watch this namespace (repeatable; default: all; env MAKEUSRICH_OPERATOR_NAMESPACES, comma-separated)",
    )
    p.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (the default)")
    p.add_argument("--liveness", default="http://0.0.0.0:8080/healthz", help="liveness endpoint URL ('' to disable)")
    add_flags(p, OperatorSettings)
    p.epilog = epilog([*variables(OperatorSettings), *KUBERNETES, *S3], note=note)
