"""A pair's training runs on one machine (contract 3): `<ns>/<pair>/runs/state.json` holds the newest run that
`makeusrich up` started (its progress while it runs, its outcome after), `runs/<start>.log` each run's log.
The dashboard reads them; the cluster keeps the same facts in the Job and the resource's status instead."""

from __future__ import annotations

from makeusrich.errors import NotFoundError
from makeusrich.store.base import PairStore
from makeusrich.store.documents import RunState, parse_run_state

STATE = "runs/state.json"
LOGS_KEPT = 20


def read_run_state(store: PairStore) -> RunState | None:
    key = store.prefix + STATE
    try:
        raw = store.objects.get(key)
    except NotFoundError:
        return None
    return parse_run_state(raw, store.objects.uri(key))


def write_run_state(store: PairStore, state: RunState) -> None:
    store.objects.put(store.prefix + STATE, state.model_dump_json(by_alias=True, indent=2).encode())


def write_run_log(store: PairStore, name: str, text: str) -> None:
    """Keep a run's log, and only the newest LOGS_KEPT of them."""
    base = f"{store.prefix}runs/"
    store.objects.put(base + name, text.encode())
    logs = sorted(key for key in store.objects.list(base) if key.endswith(".log"))
    if len(logs) > LOGS_KEPT:
        store.objects.delete(logs[:-LOGS_KEPT])
