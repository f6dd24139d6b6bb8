"""The Kubernetes operator: CurrencyPairs reconciled into trainer CronJobs and KServe InferenceServices.

    objects        the children a pair wants, built from its spec (pure)
    status         the status from what a reconcile observed, and the Events of its changes (pure)
    children       the children as last seen (kopf's indices) and applying what a pair wants
    store_access   the model store, read-only, off the event loop
    reconcile      one level-based reconcile of a pair, triggered by every event and a periodic timer
    handlers       the kopf handlers: thin shells around the reconciler (kopf's one room)
    settings, cli  `makeusrich operator` and `makeusrich render`

makeusrich.cli takes `add_operator_commands`; kopf is loaded only when the operator runs.
"""

from makeusrich.operator.cli import add_operator_commands

__all__ = ["add_operator_commands"]
