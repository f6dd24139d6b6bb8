"""Would following the served version have made money after fees, on the hours it forecast live (or replayed)? The
test split's rules (makeusrich.scoring.decision) on the version's one-step forecasts, with what they fitted on its
training split (its metadata.json), so a live answer means what the test split's means.

Only origins with a scored forecast, its widest range and the RiskMetrics volatility known then count (every rule on
the same candles); a hole in the record is a candle no rule holds. A day of candles at least, since the bootstrap's
blocks are a day long. The tracker refreshes the live answer once a day per pair, at an hour of its own (its bootstrap
costs about 15 ms, too much for every pair after every close).
"""

from __future__ import annotations

import zlib
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from makeusrich.contract import iso_z
from makeusrich.scoring import decision
from makeusrich.store import DecisionValue
from makeusrich.store.track_schema import SERVED, as_nanoseconds
from makeusrich.track.evidence import SCALE_HISTORY, Forecasts, iso_ns, scale_at

REFRESH = timedelta(days=1)


def refresh_due(before: DecisionValue | None, version: str, since: str, now: datetime, key: str) -> bool:
    """A new run's answer at once; an answer a day old at the pair's own hour of the day (so that a thousand pairs
    do not all compute in one round), or one more than a day and an hour old whatever the hour."""
    if before is None or (before.version, before.since) != (version, since):
        return True
    age = now - datetime.fromisoformat(before.computed_at)
    return age >= REFRESH + timedelta(hours=1) or (
        age >= timedelta(hours=1) and now.hour == zlib.crc32(key.encode()) % 24
    )


def decision_value(
    rows: pd.DataFrame,
    kind: str,
    version: str,
    since: int,
    step: pd.Timedelta,
    basis: decision.Basis,
    now: datetime,
) -> DecisionValue | None:
    """The rules on the version's scored one-step forecasts of `kind` (live or replayed) from `since` (nanoseconds:
    the run's start) on; None when fewer than a day of candles count, or the forecasts' widest range is not the one
    the basis read."""
    one = rows["step"].to_numpy() == 1
    origin, kinds = as_nanoseconds(rows["origin"]), rows["kind"].to_numpy(dtype=object)
    mine = np.flatnonzero(one & (kinds == kind) & (origin >= since))
    mine = mine[rows["version"].to_numpy(dtype=object)[mine] == version]
    run = Forecasts.of(rows, mine[np.argsort(origin[mine], kind="stable")])
    if len(run.levels) < 3 or abs(run.levels[-1] - run.levels[0] - basis.level) > 1e-9:
        return None
    low, high = run.quantiles[:, 0], run.quantiles[:, -1]
    usable = np.isfinite(run.actual) & np.isfinite(run.forecast) & np.isfinite(low) & np.isfinite(high)
    run, low, high = run.take(np.flatnonzero(usable)), low[usable], high[usable]
    if run.origin.size == 0:
        return None
    closes = one & np.isin(kinds, (*SERVED, kind)) & (origin <= run.origin[-1])
    closes &= origin >= run.origin[0] - SCALE_HISTORY * step.value
    at = origin[closes]
    order = np.argsort(at, kind="stable")
    _, first = np.unique(at[order], return_index=True)  # one close per origin (a replayed and a live row agree)
    picked = order[first]
    sigma = scale_at(at[picked], rows["persistence"].to_numpy(dtype=np.float64)[closes][picked], run.origin, step)
    known = np.isfinite(sigma)
    if known.sum() < max(2, timedelta(days=1) / step.to_pytimedelta()):
        return None
    origins = decision.Origins(
        last_close=run.close[known],
        actual=run.actual[known],
        forecast=run.forecast[known],
        low=low[known],
        high=high[known],
        level=basis.level,
        ewma_sigma=sigma[known],
    )
    metrics = decision.decide(origins, basis.fitted, step.to_pytimedelta(), basis.settings).metrics
    return DecisionValue(
        version=version,
        since=iso_ns(since),
        through=iso_ns(int(run.origin[known][-1])),
        computed_at=iso_z(now),
        metrics=metrics,
    )
