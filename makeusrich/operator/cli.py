"""`makeusrich render` and `makeusrich operator`: registered by makeusrich.cli through `add_operator_commands`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import Any

Add = Callable[[str, str, Callable[[argparse.Namespace], int]], argparse.ArgumentParser]
log = logging.getLogger("makeusrich.operator")


def _settings(args: argparse.Namespace, **extra: Any) -> Any:
    from makeusrich.operator.objects import settings_from_env

    return settings_from_env(
        image=args.image,
        image_pull_policy=args.image_pull_policy,
        store_url=args.store,
        s3_secret=args.s3_secret,
        s3_endpoint=args.s3_endpoint,
        storage_service_account=args.storage_service_account,
        **extra,
    )


def cmd_render(args: argparse.Namespace) -> int:
    import yaml

    from makeusrich.operator.objects import children
    from makeusrich.pair import load_pair
    from makeusrich.store.base import check_version

    pair = load_pair(args.file)
    settings = _settings(args)
    if args.model_version is not None:
        check_version(args.model_version)
    uid = args.uid or pair.metadata.uid
    objects = children(pair, settings, uid=uid, model_version=args.model_version)
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
    import kopf

    from makeusrich.errors import MakeUsRichError
    from makeusrich.operator.handlers import build_registry, login

    if args.all_namespaces and args.namespace:
        raise MakeUsRichError("give either --namespace (one or more) or --all-namespaces, not both")
    try:  # fail now with one sentence, rather than kopf retrying the login every minute
        login(settings=kopf.OperatorSettings(), logger=log)
    except (kopf.LoginError, OSError, ValueError, KeyError) as exc:
        raise MakeUsRichError(f"cannot log in to Kubernetes: {exc}") from None
    namespaces = tuple(args.namespace or ())
    settings = _settings(args, namespaces=namespaces, reconcile_interval_s=args.interval)
    if not args.verbose:
        # kopf logs every handler run; with a timer per pair that is a line per pair per interval.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    registry = build_registry(settings)
    scope = "all namespaces" if not namespaces else "namespaces " + ", ".join(namespaces)
    log.info("operator starting", extra={"scope": scope, "store": settings.store_url, "image": settings.image})
    kopf.run(
        registry=registry,
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=args.liveness or None,
    )
    return 0


def _add_settings_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", default=None, help="trainer image (env MAKEUSRICH_IMAGE)")
    parser.add_argument(
        "--image-pull-policy",
        default=None,
        choices=("Always", "IfNotPresent", "Never"),
        help="trainer image pull policy (env MAKEUSRICH_IMAGE_PULL_POLICY; default IfNotPresent)",
    )
    parser.add_argument("--store", default=None, help="model store URL, s3://bucket[/prefix] (env MAKEUSRICH_STORE)")
    parser.add_argument(
        "--s3-secret",
        default=None,
        help="Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for trainer pods (env MAKEUSRICH_S3_SECRET)",
    )
    parser.add_argument("--s3-endpoint", default=None, help="S3_ENDPOINT given to trainer pods (env S3_ENDPOINT)")
    parser.add_argument(
        "--storage-service-account",
        default=None,
        help="ServiceAccount of the predictor, listing the S3 Secret for KServe; '' for the namespace default "
        "(env MAKEUSRICH_STORAGE_SERVICE_ACCOUNT)",
    )


def add_operator_commands(add: Add) -> None:
    from makeusrich.environment import KUBERNETES, OPERATOR, S3, epilog

    p = add("render", "print the Kubernetes objects the operator makes for a pair (YAML)", cmd_render)
    p.add_argument("-f", "--file", required=True, help="CurrencyPair file (YAML), as for kubectl apply")
    p.add_argument("--model-version", default=None, help="show the InferenceService as it would serve this version")
    p.add_argument("--uid", default=None, help="the pair's uid, to show the children's ownerReferences")
    _add_settings_args(p)
    p.epilog = epilog(OPERATOR, note="Flags override the variables, which the Helm chart sets.")

    p = add("operator", "run the Kubernetes operator (kopf) that reconciles CurrencyPairs", cmd_operator)
    p.add_argument(
        "-n", "--namespace", action="append", default=None, help="watch this namespace (repeatable; default: all)"
    )
    p.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (the default)")
    p.add_argument("--interval", type=float, default=60.0, help="seconds between level-based reconciles of each pair")
    p.add_argument(
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        help="liveness endpoint URL ('' to disable)",
    )
    _add_settings_args(p)
    p.epilog = epilog([*OPERATOR, *KUBERNETES, *S3], note="Flags override the variables, which the Helm chart sets.")
