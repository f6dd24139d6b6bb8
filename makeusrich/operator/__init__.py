"""The Kubernetes operator: CurrencyPairs reconciled into trainer CronJobs and KServe InferenceServices.

objects.py builds children (pure), status.py computes the status (pure), reconcile.py does one level-based
reconcile through makeusrich.kube, handlers.py wires it to kopf (and the shared login to kopf's), cli.py adds
`render` and `operator`.
"""
