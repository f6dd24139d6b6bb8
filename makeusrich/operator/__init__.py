"""The Kubernetes operator: CurrencyPairs reconciled into trainer CronJobs and KServe InferenceServices.

objects.py builds children (pure), status.py computes the status (pure), kube.py talks to the API with retries,
reconcile.py does one level-based reconcile, handlers.py wires it to kopf, cli.py adds `render` and `operator`.
"""
