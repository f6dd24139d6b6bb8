"""The pure half of the track record: rows, scoring and the windows of track.json, checked against numbers
worked out by hand here (the round's decisions are tests/track/test_decide.py's)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from makeusrich.errors import StoreError
from makeusrich.market import CandleFeed, Source
from makeusrich.pair import CurrencyPair
from makeusrich.pair_sources import EmbeddedSource
from makeusrich.store import TrackFiles, pair_store
from makeusrich.store.track_schema import BASELINE, GAP, LIVE, REPLACED, SHADOW, checked_rows, empty_rows, month_rows
from makeusrich.track.decide import due_origins
from makeusrich.track.rows import (
    append_rows,
    forecast_rows,
    future_origins,
    gap_rows,
    last_seen_origin,
    score_rows,
)
from makeusrich.track.summary import summarize
from makeusrich.track.tracker import Tracker
from tests.fixtures.models import small_pair

HOUR = pd.Timedelta(hours=1)
T0 = pd.Timestamp("2026-03-01T10:00Z")
LEVELS = (0.05, 0.25, 0.5, 0.75, 0.95)
NOW = datetime(2026, 3, 1, 20, 0, tzinfo=UTC)


def test_an_origin_is_recorded_once() -> None:
    first = forecast_rows(T0, HOUR, "v1", 100.0, [101.0], None, None, NOW)
    again = forecast_rows(T0, HOUR, "v2", 100.0, [99.0], None, None, NOW)
    rows = append_rows(append_rows(empty_rows(), first), again)
    assert len(rows) == 1 and rows["version"].iloc[0] == "v1" and rows["forecast"].iloc[0] == 101.0


def test_an_origin_a_clock_ahead_wrote_does_not_stop_the_record() -> None:
    """A tracker whose clock ran a day ahead wrote a day of rows (gaps: "the candle never came") for closes that had
    not happened; the record then waited for the clock to pass them, and once it did, those gaps stood for closes
    the tracker never saw. Rows written ahead (origin after the newest close, or recorded after now) are counted,
    never hold the record back, and are replaced by what the true clock records."""
    now = T0 + 5 * HOUR + pd.Timedelta(seconds=5)
    newest = T0 + 5 * HOUR
    rows = empty_rows()
    for origin in (T0, T0 + HOUR):
        rows = append_rows(rows, forecast_rows(origin, HOUR, "v1", 100.0, [101.0], None, None, origin.to_pydatetime()))
    ahead = (T0 + 26 * HOUR).to_pydatetime()  # the clock a day ahead, writing gaps for T0+2h .. T0+26h
    for k in range(2, 27):
        rows = append_rows(rows, gap_rows(T0 + k * HOUR, HOUR, 1, "v1", "never came", None, ahead))
    assert last_seen_origin(rows, newest, now) == T0 + HOUR
    assert due_origins(last_seen_origin(rows, newest, now), newest, HOUR) == [T0 + i * HOUR for i in range(2, 6)]
    assert future_origins(rows, newest, now) == 25
    live = forecast_rows(T0 + 2 * HOUR, HOUR, "v1", 100.0, [102.0], None, None, now.to_pydatetime())
    replaced = append_rows(rows, live, now.to_pydatetime())
    at = replaced[replaced["origin"] == T0 + 2 * HOUR]
    assert len(at) == 1 and at["kind"].iloc[0] == LIVE and at["forecast"].iloc[0] == 102.0
    assert len(replaced) == len(rows)  # replaced, not added
    kept = append_rows(rows, forecast_rows(T0 + HOUR, HOUR, "v2", 100.0, [99.0], None, None, NOW), NOW)
    assert kept["forecast"].iloc[1] == 101.0  # a row written by this clock is recorded once


def test_scoring_fills_errors_and_direction_by_hand_and_leaves_gaps_and_open_targets_alone() -> None:
    up = forecast_rows(T0, HOUR, "v1", 100.0, [101.0], None, None, NOW)  # said up; it went up
    wrong = forecast_rows(T0 + HOUR, HOUR, "v1", 102.0, [103.0], None, None, NOW)  # said up; it went down
    flat = forecast_rows(T0 + 2 * HOUR, HOUR, "v1", 101.0, [100.0], None, None, NOW)  # did not move
    gap = gap_rows(T0 + 3 * HOUR, HOUR, 1, "v1", "model down", 101.0, NOW)
    open_ = forecast_rows(T0 + 4 * HOUR, HOUR, "v1", 101.0, [101.5], None, None, NOW)
    rows = empty_rows()
    for part in (up, wrong, flat, gap, open_):
        rows = append_rows(rows, part)
    closes = pd.Series([102.0, 101.0, 101.0, 101.0], index=[T0 + HOUR * k for k in (1, 2, 3, 4)])
    scored, count = score_rows(rows, closes, NOW)
    assert count == 3
    assert scored["actual"].tolist()[:3] == [102.0, 101.0, 101.0]
    assert scored["error"].tolist()[:3] == [101.0 - 102.0, 103.0 - 101.0, 100.0 - 101.0]
    assert scored["persistence_error"].tolist()[:3] == [100.0 - 102.0, 102.0 - 101.0, 0.0]
    hits = scored["direction_hit"].tolist()
    assert hits[0] == 1.0 and hits[1] == 0.0 and np.isnan(hits[2])
    assert scored.loc[3, "kind"] == GAP and np.isnan(scored.loc[3, "actual"])
    assert np.isnan(scored.loc[4, "actual"])  # its target has not closed
    assert score_rows(scored, closes, NOW)[1] == 0  # scored once


def test_the_windows_count_forecasts_and_gaps_and_score_against_persistence_by_hand() -> None:
    rows = empty_rows()
    prices = [100.0, 102.0, 101.0, 104.0, 103.0]  # closes at T0 .. T0+4h
    forecasts = [101.0, 101.0, 103.0, 104.5]  # made at T0 .. T0+3h
    for k, forecast in enumerate(forecasts):
        q = np.array([[forecast - 2, forecast - 1, forecast, forecast + 1, forecast + 2]])
        rows = append_rows(rows, forecast_rows(T0 + k * HOUR, HOUR, "v2", prices[k], [forecast], q, LEVELS, NOW))
    rows = append_rows(rows, gap_rows(T0 + 4 * HOUR, HOUR, 1, "v2", "no candle", prices[4], NOW))
    old = forecast_rows(T0 - 48 * HOUR, HOUR, "v1", 90.0, [91.0], None, None, NOW)  # out of 24 h, other version
    replayed = forecast_rows(T0 - HOUR, HOUR, "v2", 99.0, [99.5], None, None, NOW, kind="replayed")
    rows = append_rows(append_rows(rows, old), replayed)
    closes = pd.Series([*prices[1:], 100.0], index=[T0 + HOUR * k for k in range(1, 6)])
    closes[T0 - 47 * HOUR] = 95.0
    closes[T0] = 100.0
    rows, _ = score_rows(rows, closes, NOW)

    summary = summarize(rows, "btc-usdt", "default", "1h", NOW)
    assert summary.version == "v2" and summary.live_since == "2026-03-01T10:00:00Z"
    day = summary.window("24h")
    assert day is not None and (day.made, day.missed, day.scored) == (4, 1, 4)
    model_mae = np.mean([abs(101 - 102), abs(101 - 101), abs(103 - 104), abs(104.5 - 103)])
    persistence_mae = np.mean([abs(100 - 102), abs(102 - 101), abs(101 - 104), abs(104 - 103)])
    assert day.point is not None and day.point.rel_mae == pytest.approx(model_mae / persistence_mae)
    # Said/did: +1/+2 hit, -1/-1 hit, +2/+3 hit, +0.5/-1 miss.
    assert day.point.directional is not None and day.point.directional.hits == 3
    assert day.ranges is not None
    ninety = next(r for r in day.ranges.ranges if r.nominal == pytest.approx(0.9))
    fifty = next(r for r in day.ranges.ranges if r.nominal == pytest.approx(0.5))
    # 90% range is forecast +-2: actual - forecast = +1, 0, +1, -1.5: all inside. 50%: +-1: 3 of 4 inside.
    assert (ninety.hits, ninety.n) == (4, 4) and (fifty.hits, fifty.n) == (3, 4)
    month = summary.window("30d")
    assert month is not None and month.made == 5  # the older v1 forecast counts; the replayed one never does
    version = summary.window("version")
    assert version is not None and version.made == 4 and version.missed == 1


def test_a_row_that_is_no_number_written_before_answers_were_checked_never_stops_the_summary() -> None:
    """A NaN forecast recorded by an older tracker used to make every later summary raise once its target closed,
    so the record stopped for good: it counts as made and is never scored."""
    rows = empty_rows()
    for k, forecast in enumerate([101.0, float("nan"), 101.0]):
        rows = append_rows(rows, forecast_rows(T0 + k * HOUR, HOUR, "v1", 100.0, [forecast], None, None, NOW))
    closes = pd.Series([102.0, 101.0, 100.0], index=[T0 + HOUR * k for k in (1, 2, 3)])
    rows, _ = score_rows(rows, closes, NOW)
    day = summarize(rows, "btc-usdt", "default", "1h", NOW).window("24h")
    assert day is not None and (day.made, day.scored) == (3, 2)
    assert day.point is not None and day.point.rel_mae == pytest.approx((1 + 1) / (2 + 0))


def shadow(origin: pd.Timestamp, role: str, version: str, forecast: float) -> pd.DataFrame:
    return forecast_rows(origin, HOUR, version, 100.0, [forecast], None, None, NOW, kind=SHADOW, reason=role)


def test_shadows_sit_beside_the_served_record_once_per_role_and_never_count_in_it() -> None:
    served = empty_rows()
    for k, forecast in enumerate([101.0, 99.0, 100.5]):
        served = append_rows(served, forecast_rows(T0 + k * HOUR, HOUR, "v2", 100.0, [forecast], None, None, NOW))
    rows = served
    for k in range(3):  # the round's shadows, and a catch-up of the same ones (once per role and origin)
        both = pd.concat([shadow(T0 + k * HOUR, REPLACED, "v1", 100.2), shadow(T0 + k * HOUR, BASELINE, "v0", 100.0)])
        rows = append_rows(append_rows(rows, both), shadow(T0 + k * HOUR, REPLACED, "v1", 555.0))
    assert len(rows) == 9 and (rows["kind"] == SHADOW).sum() == 6 and 555.0 not in rows["forecast"].to_numpy()
    # a shadow never stands for the served record: the next origin is still due, and a gap may still be written
    late = shadow(T0 + 3 * HOUR, BASELINE, "v0", 100.0)
    rows = append_rows(rows, late)
    assert last_seen_origin(rows, T0 + 3 * HOUR, NOW) == T0 + 2 * HOUR
    rows = append_rows(rows, gap_rows(T0 + 3 * HOUR, HOUR, 1, "v2", "no candle", 100.0, NOW))
    closes = pd.Series([100.0, 101.0, 102.0, 103.0], index=[T0 + HOUR * k for k in (1, 2, 3, 4)])
    with_shadows, count = score_rows(rows, closes, NOW)
    alone, _ = score_rows(
        append_rows(served, gap_rows(T0 + 3 * HOUR, HOUR, 1, "v2", "no candle", 100.0, NOW)), closes, NOW
    )
    assert count == 3 + 7  # shadows are scored too, on the same closes
    beside, served_only = (summarize(r, "p", "default", "1h", NOW) for r in (with_shadows, alone))
    assert beside.windows == served_only.windows and beside.live_since == served_only.live_since
    assert [(s.role, s.version, s.scored) for s in beside.shadows] == [(BASELINE, "v0", 3), (REPLACED, "v1", 3)]
    assert served_only.shadows == []


def test_a_version_served_again_after_another_starts_a_new_run() -> None:
    rows = empty_rows()
    for k, version in enumerate(["v1", "v1", "v2", "v2", "v1", "v1"]):
        rows = append_rows(rows, forecast_rows(T0 + k * HOUR, HOUR, version, 100.0, [101.0], None, None, NOW))
    summary = summarize(rows, "p", "default", "1h", NOW)
    assert summary.version == "v1" and summary.live_since == "2026-03-01T14:00:00Z"
    run = summary.window("version")
    assert run is not None and run.made == 2


def test_a_month_file_without_the_track_columns_is_a_clear_error() -> None:
    with pytest.raises(StoreError, match="lacks the track columns"):
        checked_rows(pd.DataFrame({"origin": [T0]}), "s3://b/default/btc-usdt/track/2026-03.parquet")


def test_live_rows_are_marked_live() -> None:
    assert forecast_rows(T0, HOUR, "v1", 1.0, [1.0], None, None, NOW)["kind"].iloc[0] == LIVE


def held_rows(tracker: Tracker, pair: CurrencyPair, now: datetime) -> pd.DataFrame:
    """The rows a round holds: the files it reads (in a thread), decoded (on the event loop)."""
    files, since, _ = tracker._fetch(pair, None, now)
    return tracker._files(pair).rows(files, since)


def test_each_round_reads_whole_months_so_rewriting_one_loses_no_row(tmp_path: Path) -> None:
    """The tracker holds no rows between rounds: each round reads the month files its windows reach into, whole,
    so that scoring a row of last month and writing that month back keeps all its other rows."""
    start = pd.Timestamp("2026-05-01T00:00Z")
    rows = append_rows(
        empty_rows(),
        pd.concat(
            [forecast_rows(start + k * HOUR, HOUR, "v1", 1.0, [1.0], None, None, NOW) for k in range(33 * 24)],
            ignore_index=True,
        ),
    )
    url = f"file://{tmp_path / 'store'}"
    pair = small_pair()
    store = pair_store(url, pair.namespace, pair.name)
    for month, part in month_rows(rows, {"2026-05", "2026-06"}):
        TrackFiles(store).write(month, part)
    tracker = Tracker(EmbeddedSource(tmp_path, url, "http://127.0.0.1:9"), CandleFeed(Source("sample")), url)
    now = datetime(2026, 6, 2, 23, 0, tzinfo=UTC)  # KEEP (31 days) reaches back to May 2: all of May is read
    held = held_rows(tracker, pair, now)
    assert held["origin"].tolist() == rows["origin"].tolist()
    target = pd.Timestamp("2026-05-20T01:00Z")
    held, scored = score_rows(held, pd.Series([2.0], index=[target]), now)
    assert scored == 1
    tracker._put(pair, *tracker._encoded(pair, held, None, {"2026-05"}))  # what a round writes back
    may = checked_rows(TrackFiles(store).read("2026-05"), "may")  # type: ignore[arg-type]
    assert may["origin"].tolist() == [start + k * HOUR for k in range(31 * 24)]  # all of May, none lost
    assert may.loc[may["target"] == target, "actual"].tolist() == [2.0]
    later = held_rows(tracker, pair, datetime(2026, 7, 3, tzinfo=UTC))  # June 2 on: May is not read
    assert later["origin"].iloc[0] == pd.Timestamp("2026-06-01T00:00Z")
