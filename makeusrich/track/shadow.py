"""Shadow forecasts: what the version the served one replaced, and the baseline, would have forecast at the served
version's origins, run here from their ONNX files as the replay runs them. They are the comparators of the live
decisions (makeusrich.scoring.sequential): scored on the same closes, marked `shadow` with their role, never the
served record.

- Comparators are resolved once per served version. The version it replaced comes from latest.json's audit trail
  (the `from` of the promotion that made it current); a version restored by a rollback, or pinned by a person,
  has none (its predecessor is no comparison anyone chose). The baseline is the newest promoted baseline.
- A shadow is a deterministic function of candles that closed before its origin, so one made a round late (after
  a restart, or once a comparator is known) is what it would have said on time: the last SCORE_BACK candles of the
  served version's run are caught up.
- Model files are kept on local disk, one per pair and role, checked against their checksum at each read, so a
  round reads no model from the store; an onnxruntime session lives for one batch only (a thousand pairs' sessions
  would hold a gigabyte), opened without graph optimisation, on one thread per tracker process (sessions opened
  on many threads at once leave memory behind in each thread's allocator).
- A comparator that cannot be read or run is logged once per served version and left out; the served record goes
  on as if it had none.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from makeusrich.contract import FIELDS, OUTPUT_NAME, QUANTILES_NAME
from makeusrich.errors import StoreError
from makeusrich.onnxrt import onnx_session
from makeusrich.store import Latest, PairStore, atomic_write, sha256
from makeusrich.store.track_schema import BASELINE, LIVE, REPLACED, SHADOW, as_nanoseconds
from makeusrich.track.decide import answer_problem
from makeusrich.track.rows import forecast_rows

ROLES = (REPLACED, BASELINE)


@dataclass(frozen=True)
class Comparator:
    """One shadow: its role, the version that plays it and what its model reads and answers."""

    role: str
    version: str
    sha256: str
    window: int
    horizon: int
    levels: tuple[float, ...] | None


@dataclass(frozen=True)
class Shadows:
    """The comparators of one served version, and why one is missing (said once)."""

    served: str
    comparators: tuple[Comparator, ...] = ()
    problem: str | None = None
    unresolved: bool = False  # the store could not be read: resolved again next round

    @property
    def window(self) -> int:
        return max((c.window for c in self.comparators), default=0)


def replaced_version(latest: Latest, served: str, pinned: bool) -> str | None:
    """The version `served` replaced, by latest.json's trail; None when it was pinned, restored by a rollback, or
    is not what latest.json names (a person's pin, or a server not yet reloaded)."""
    if pinned or latest.version != served:
        return None
    change = latest.change
    if change is None:  # written before the trail: the version named before it
        return latest.history[-1] if latest.history else None
    return change.from_ if change.action == "promoted" else None


def newest_baseline(store: PairStore, candidates: Iterable[str], served: str) -> str | None:
    """The newest baseline among `candidates` (promoted versions), other than the served one."""
    for version in sorted(set(candidates) - {served}, reverse=True):
        if store.model_metadata(version).kind == "baseline":
            return version
    return None


def comparator(store: PairStore, role: str, version: str) -> Comparator:
    meta = store.model_metadata(version)
    stored = meta.files.get(store.model_path())
    if stored is None:
        raise StoreError(f"version {version} of {store.pair} records no model file")
    levels = tuple(meta.quantiles) if meta.quantiles else None
    return Comparator(role, version, stored.sha256, meta.window, meta.horizon, levels)


def resolve(store: PairStore, served: str, pinned: bool) -> Shadows:
    """Blocking: the comparators of the served version."""
    latest = store.latest()
    if latest is None:
        return Shadows(served)
    found = []
    replaced = replaced_version(latest, served, pinned)
    if replaced is not None and replaced != served:
        found.append(comparator(store, REPLACED, replaced))
    baseline = newest_baseline(store, latest.promoted, served)
    if baseline is not None:
        found.append(comparator(store, BASELINE, baseline))
    return Shadows(served, tuple(found))


@dataclass(frozen=True)
class ModelFiles:
    """Comparators' model files on local disk, one per pair and role: bounded by the pairs, never stale (each read
    is checked against the comparator's checksum, and a mismatch reads the store again)."""

    folder: Path

    def read(self, store: PairStore, c: Comparator) -> bytes:
        path = self.folder / store.namespace / f"{store.pair}.{c.role}.onnx"
        try:
            data = path.read_bytes()
            if sha256(data) == c.sha256:
                return data
        except OSError:
            pass
        data = store.read_file(c.version, store.model_path(), c.sha256)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, data)
        except OSError:  # no writable disk: read from the store each time
            pass
        return data


def missing_origins(frames: Iterable[pd.DataFrame], served: str, since: pd.Timestamp) -> dict[str, list[pd.Timestamp]]:
    """For each role, the served version's live origins from `since` on among the rows of `frames` that have no
    shadow of that role yet (frames looked at apart: joining them would copy every row)."""
    live, have = [np.empty(0, dtype=np.int64)], {role: [np.empty(0, dtype=np.int64)] for role in ROLES}
    for rows in frames:
        origin = as_nanoseconds(rows["origin"])
        recent = origin >= since.value
        kind, reason = rows["kind"].to_numpy(dtype=object), rows["reason"].to_numpy(dtype=object)
        live.append(origin[recent & (kind == LIVE) & (rows["version"].to_numpy(dtype=object) == served)])
        for role in ROLES:
            have[role].append(origin[recent & (kind == SHADOW) & (reason == role)])
    served_at = np.unique(np.concatenate(live))
    return {
        role: [pd.Timestamp(int(o), tz="UTC") for o in served_at[~np.isin(served_at, np.concatenate(have[role]))]]
        for role in ROLES
    }


def shadow_rows(
    model: bytes,
    c: Comparator,
    candles: pd.DataFrame,
    origins: list[pd.Timestamp],
    step: pd.Timedelta,
    recorded_at: datetime,
) -> list[pd.DataFrame]:
    """The comparator's forecast at each origin whose window is at hand, whole, as shadow rows; an origin whose
    window is not, or whose answer is impossible, gets none (and no session is opened when none is)."""
    opened = as_nanoseconds(candles["open_time"])
    values = candles[list(FIELDS)].to_numpy(dtype=np.float32)
    last_closes = candles["close"].to_numpy(dtype=np.float64)
    whole = (c.window - 1) * step.value
    windows, kept, closes = [], [], []
    for origin in origins:
        end = int(np.searchsorted(opened + step.value, origin.value, side="right"))
        if (
            end >= c.window
            and opened[end - 1] + step.value == origin.value
            and opened[end - 1] - opened[end - c.window] == whole
        ):
            windows.append(values[end - c.window : end])
            kept.append(origin)
            closes.append(float(last_closes[end - 1]))
    if not kept:
        return []
    session = onnx_session(model, once=True)
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(None, {"candles": np.stack(windows)}), strict=True))
    forecast, quantiles = outputs[OUTPUT_NAME], outputs.get(QUANTILES_NAME) if c.levels else None
    frames = []
    for k, origin in enumerate(kept):
        ranges = quantiles[k] if quantiles is not None else None
        if answer_problem(forecast[k], ranges, c.horizon, c.levels, closes[k]) is None:
            frames.append(
                forecast_rows(
                    origin,
                    step,
                    c.version,
                    closes[k],
                    forecast[k],
                    ranges,
                    c.levels,
                    recorded_at,
                    kind=SHADOW,
                    reason=c.role,
                )
            )
    return frames
