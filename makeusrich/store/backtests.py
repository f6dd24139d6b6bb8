"""A version's walk-forward backtest (contract 3): `<ns>/<pair>/versions/<version>/backtest.json`, written by
`makeusrich backtest --store` beside the version whose settings it replayed, read by the dashboard."""

from __future__ import annotations

from makeusrich.errors import NotFoundError, StoreError
from makeusrich.store.base import PairStore
from makeusrich.store.documents import BacktestResult, parse_backtest

BACKTEST = "backtest.json"


def read_backtest(store: PairStore, version: str) -> BacktestResult | None:
    """The walk-forward backtest stored beside a version's metadata.json, or None when none was run."""
    key = store.version_prefix(version) + BACKTEST
    try:
        raw = store.objects.get(key)
    except NotFoundError:
        return None
    return parse_backtest(raw, store.objects.uri(key))


def write_backtest(store: PairStore, version: str, result: BacktestResult) -> str:
    """Store a walk-forward backtest of a complete version's settings beside its metadata.json (one put; a newer
    backtest replaces an older one: it describes the settings, not the files, which stay as they are). Returns
    where it went."""
    if version not in store.versions():
        raise StoreError(f"version {version} of {store.pair} does not exist (or is incomplete)")
    key = store.version_prefix(version) + BACKTEST
    store.objects.put(key, result.model_dump_json(by_alias=True, indent=2).encode())
    return store.objects.uri(key)
