"""`makeusrich track --replay FROM TO`: fill a past period by running the promoted version's ONNX file on
stored candles. The rows are marked `replayed`: they show on the dashboard, and never count as live.

Only origins before the live record began are filled (a replay never stands in for a live forecast, nor for a
gap). A replay writes month files, so it refuses to run while a tracker is writing them. Replayed rows never enter
track.json's live numbers; the replay writes there only whether following the version over the replayed hours would
have made money after fees (`replayedDecision`, makeusrich.track.value), which the tracker carries forward.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from makeusrich.contract import OUTPUT_NAME, QUANTILES_NAME, iso_z
from makeusrich.errors import MakeUsRichError, StoreError
from makeusrich.market import interval_ms
from makeusrich.onnxrt import onnx_session
from makeusrich.pair import CurrencyPair
from makeusrich.scoring import decision
from makeusrich.store import TrackFiles, TrackSummary
from makeusrich.store.track_schema import REPLAYED, SERVED, month_of, month_rows, month_start
from makeusrich.track.decide import window_problem
from makeusrich.track.rows import append_rows, closes_by_moment, forecast_rows, score_rows
from makeusrich.track.tracker import PairRound, Tracker
from makeusrich.track.value import decision_value
from makeusrich.v2client import candle_array

RECENT_WRITE = timedelta(minutes=10)  # track.json newer than this: a tracker is running


def replay_pair(tracker: Tracker, pair: CurrencyPair, start: pd.Timestamp, end: pd.Timestamp) -> PairRound:
    """Blocking: one pair's replayed rows between `start` and `end` (origins, closes of candles)."""
    key = f"{pair.namespace}/{pair.name}"
    store = tracker.reader.pair_store(pair.namespace, pair.name)
    now = tracker.now()
    track = TrackFiles(store)
    summary = track.read_summary()
    if (
        summary is not None
        and now - datetime.fromisoformat(summary.updated_at) < RECENT_WRITE
        and not written_by_replay(summary)
    ):
        raise MakeUsRichError(
            f"{key}: a tracker wrote track.json at {summary.updated_at}; stop it before replaying (one writer)"
        )
    latest = store.latest()
    if latest is None:
        raise StoreError(f"{key}: no version was promoted, so there is nothing to replay; train the pair first")
    meta = store.model_metadata(latest.version)
    session = onnx_session(store.read_model(latest.version))
    step = pd.Timedelta(milliseconds=interval_ms(pair.spec.interval))
    rows = tracker.reader.track_rows(pair.namespace, pair.name, month_start(start))
    recorded = rows.loc[rows["kind"].isin(SERVED), "origin"]
    last = min(end, recorded.min() - step) if not recorded.empty else end
    candles = tracker.feed.between(pair.spec, start - step * (meta.window + 1), last)
    closes_at = candles["open_time"] + step
    wanted = candles[(closes_at >= start) & (closes_at <= last) & ~closes_at.isin(rows["origin"])].index
    windows, origins = [], []
    for i in wanted:
        window = candles.iloc[max(0, i - meta.window + 1) : i + 1]
        if len(window) == meta.window and window_problem(window, step) is None:
            windows.append(candle_array(window, meta.window)[0])
            origins.append(closes_at.iloc[i])
    if not origins:
        return PairRound(key)
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(None, {"candles": np.stack(windows)}), strict=True))
    forecast, quantiles = outputs[OUTPUT_NAME], outputs.get(QUANTILES_NAME)
    levels = meta.quantiles if quantiles is not None else None
    parts = [
        forecast_rows(
            origin,
            step,
            latest.version,
            float(candles.loc[closes_at == origin, "close"].iloc[0]),
            forecast[k],
            quantiles[k] if quantiles is not None else None,
            levels,
            now,
            kind=REPLAYED,
        )
        for k, origin in enumerate(origins)
    ]
    rows = append_rows(rows, pd.concat(parts, ignore_index=True))
    rows, scored = score_rows(rows, closes_by_moment(candles, step), now)
    for month, in_month in month_rows(rows, {month_of(o) for o in origins}):
        track.write(month, in_month)
    traded = meta.metrics.test.decision
    basis = decision.refit(traded) if traded else None
    mine = rows.loc[(rows["kind"] == REPLAYED) & (rows["version"] == latest.version), "origin"]
    value = decision_value(rows, REPLAYED, latest.version, mine.min().value, step, basis, now) if basis else None
    if value is not None:
        track.write_summary(
            summary.model_copy(update={"replayed_decision": value})
            if summary is not None
            else TrackSummary(
                pair=pair.name,
                namespace=pair.namespace,
                interval=pair.spec.interval,
                updated_at=value.computed_at,
                replayed_decision=value,
            )
        )
    return PairRound(key, recorded=len(origins), scored=scored)


def written_by_replay(summary: TrackSummary) -> bool:
    """track.json that only a replay wrote (no tracker has run since): it holds no live lock."""
    return summary.replayed_decision is not None and summary.replayed_decision.computed_at == summary.updated_at


async def replay(tracker: Tracker, start: pd.Timestamp, end: pd.Timestamp) -> list[PairRound]:
    """Every valid pair of the tracker's source, one after the other; a pair's failure is its own line."""
    if end < start:
        raise MakeUsRichError(f"--replay: {iso_z(end.to_pydatetime())} is before {iso_z(start.to_pydatetime())}")
    results = []
    for record in await tracker.source.list_pairs():
        if record.pair is None:
            continue
        pair = record.pair
        try:
            results.append(await tracker.offload(replay_pair, tracker, pair, start, end))
        except MakeUsRichError as exc:
            results.append(PairRound(record.key, error=str(exc)))
    return results
