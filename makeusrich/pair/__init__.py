"""The CurrencyPair resource (contract 1): one pydantic schema for files, the CRD, the operator and the UI.

    spec     the resource and its spec: defaults and bounds, written once
    cron     retraining schedules exactly as Kubernetes CronJobs read them
    parse    pair documents from files, API resources and $MAKEUSRICH_PAIR, with errors that name each bad field
    status   the status the operator writes
    crd      the CustomResourceDefinition, generated from the models above

Callers import from this package, not its modules.
"""

from makeusrich.pair.crd import crd_manifest
from makeusrich.pair.cron import longest_gap_s, next_run, valid_cron
from makeusrich.pair.parse import (
    PAIR_ENV,
    load_pair,
    load_pair_arg,
    pair_document,
    pair_from_resource,
    parse_pair,
    parse_pair_text,
    read_pair_files,
)
from makeusrich.pair.spec import (
    API_VERSION,
    KIND,
    MAX_WINDOW,
    NAME_PATTERN,
    CurrencyPair,
    CurrencyPairSpec,
    DecisionSpec,
    ModelSpec,
    PromotionSpec,
)
from makeusrich.pair.status import (
    Condition,
    CurrencyPairStatus,
    DecisionName,
    LiveDecision,
    LiveShadow,
    LiveStatus,
    LiveWindowStatus,
    ModelChange,
    ModelStatus,
    ServingStatus,
    ShadowRole,
    TrainingStatus,
)

__all__ = [
    "API_VERSION",
    "KIND",
    "MAX_WINDOW",
    "NAME_PATTERN",
    "PAIR_ENV",
    "Condition",
    "CurrencyPair",
    "CurrencyPairSpec",
    "CurrencyPairStatus",
    "DecisionName",
    "DecisionSpec",
    "LiveDecision",
    "LiveShadow",
    "LiveStatus",
    "LiveWindowStatus",
    "ModelChange",
    "ModelSpec",
    "ModelStatus",
    "PromotionSpec",
    "ServingStatus",
    "ShadowRole",
    "TrainingStatus",
    "crd_manifest",
    "load_pair",
    "load_pair_arg",
    "longest_gap_s",
    "next_run",
    "pair_document",
    "pair_from_resource",
    "parse_pair",
    "parse_pair_text",
    "read_pair_files",
    "valid_cron",
]
