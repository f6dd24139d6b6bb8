"""What a tracker's round decides for a pair, without I/O (makeusrich.track.decide): the origins that are due,
the candles a round fetches, whether an origin is asked, waits or becomes a gap (and the reason the gap keeps), and
the window a forecast reads. Numbers worked out by hand here."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from makeusrich.market import empty_candles
from makeusrich.track.decide import (
    Ask,
    Gap,
    Wait,
    answer_problem,
    candles_needed,
    counts_yet,
    deadline,
    decide,
    due_origins,
    forecast_window,
    newest_close,
)

HOUR = pd.Timedelta(hours=1)
T0 = pd.Timestamp("2026-03-01T10:00Z")
URL = "http://127.0.0.1:8080"


def candles(opens: list[pd.Timestamp]) -> pd.DataFrame:
    """Hourly candles opening at `opens`, each closing at 100 + its index."""
    frame = empty_candles()
    rows = [
        {"open_time": t, "open": 1.0, "high": 1.0, "low": 1.0, "close": 100.0 + i, "volume": 1.0}
        for i, t in enumerate(opens)
    ]
    return pd.concat([frame, pd.DataFrame(rows)], ignore_index=True).astype(frame.dtypes.to_dict())


def test_the_newest_close_is_the_last_full_interval_by_the_clock() -> None:
    assert newest_close(datetime(2026, 3, 1, 10, 30, tzinfo=UTC), HOUR) == T0
    assert newest_close(datetime(2026, 3, 1, 10, 0, tzinfo=UTC), HOUR) == T0
    assert newest_close(datetime(2026, 3, 1, 10, 4, tzinfo=UTC), pd.Timedelta(minutes=5)) == T0


def test_due_origins_start_at_the_newest_close_and_then_cover_every_close_since_the_last_one() -> None:
    assert due_origins(None, T0, HOUR) == [T0]
    assert due_origins(T0, T0, HOUR) == []
    assert due_origins(T0, T0 + 3 * HOUR, HOUR) == [T0 + HOUR, T0 + 2 * HOUR, T0 + 3 * HOUR]


def test_a_forecast_counts_as_live_for_a_quarter_interval_at_most_fifteen_minutes() -> None:
    assert deadline(T0, HOUR, timedelta(minutes=15)) == T0 + pd.Timedelta(minutes=15)
    assert deadline(T0, 4 * HOUR, timedelta(minutes=15)) == T0 + pd.Timedelta(minutes=15)
    assert deadline(T0, pd.Timedelta(minutes=5), timedelta(minutes=15)) == T0 + pd.Timedelta(seconds=75)


def test_before_its_deadline_an_origin_is_asked_or_waits_for_what_is_missing() -> None:
    due = T0 + pd.Timedelta(minutes=15)
    now = T0 + pd.Timedelta(minutes=1)
    assert decide(T0, now, due, candle_closed=True, serving_url=URL, tried=None) == Ask()
    waiting = decide(T0, now, due, candle_closed=False, serving_url=URL, tried=None)
    assert waiting == Wait("the candle closing at 2026-03-01T10:00:00Z has not come yet")
    no_url = decide(T0, now, due, candle_closed=True, serving_url=None, tried="model down")
    assert isinstance(no_url, Wait) and "no model server URL" in no_url.why
    assert decide(T0, due, due, candle_closed=True, serving_url=URL, tried="model down") == Ask()  # still in time


def test_after_its_deadline_an_origin_is_a_gap_that_keeps_the_last_reason() -> None:
    due = T0 + pd.Timedelta(minutes=15)
    late = due + pd.Timedelta(seconds=1)
    assert decide(T0, late, due, candle_closed=True, serving_url=URL, tried="HTTP 503: not ready") == Gap(
        "HTTP 503: not ready"
    )
    assert decide(T0, late, due, candle_closed=True, serving_url=URL, tried=None) == Gap(
        "the tracker was not running at that close"
    )
    assert decide(T0, late, due, candle_closed=False, serving_url=URL, tried=None) == Gap(
        "the candle closing at 2026-03-01T10:00:00Z never came"
    )


def test_a_record_starts_with_its_first_forecast() -> None:
    assert not counts_yet(first_ever=True, recorded_this_round=False)
    assert counts_yet(first_ever=True, recorded_this_round=True)
    assert counts_yet(first_ever=False, recorded_this_round=False)


def test_a_round_fetches_the_window_before_its_oldest_origin_or_unscored_target() -> None:
    newest = T0 + 5 * HOUR
    assert candles_needed([newest], None, newest, HOUR, window=120, most=1500) == 122
    assert candles_needed([T0 + 4 * HOUR, newest], None, newest, HOUR, window=120, most=1500) == 123
    assert candles_needed([newest], T0, newest, HOUR, window=120, most=1500) == 127  # a target 5 h back
    assert candles_needed([], None, newest, HOUR, window=120, most=1500) == 122
    assert candles_needed([newest], T0 - 2000 * HOUR, newest, HOUR, window=120, most=1500) == 1500


def test_the_window_of_a_forecast_ends_with_the_candle_that_closed_at_its_origin() -> None:
    opens = [T0 - HOUR * k for k in range(5, -1, -1)]  # six candles, the last opening at 10:00 (closing 11:00)
    frame = candles(opens)
    window, why = forecast_window(frame, T0, HOUR, 3)
    assert why is None and window is not None
    assert list(window["open_time"] + HOUR) == [T0 - 2 * HOUR, T0 - HOUR, T0]
    short, why = forecast_window(frame, T0, HOUR, 10)
    assert short is None and why == "only 5 of the model's 10 candles are at hand"
    holed = candles([t for t in opens if t != T0 - 2 * HOUR])
    missing, why = forecast_window(holed, T0, HOUR, 4)
    assert missing is None and why == "1 candle(s) closing from 2026-03-01T09:00:00Z on are missing from the window"


LEVELS = (0.05, 0.5, 0.95)
GOOD_RANGE = np.array([[98.0, 100.5, 103.0]])


@pytest.mark.parametrize(
    ("forecast", "quantiles", "said"),
    [
        ([np.nan], GOOD_RANGE, "a forecast that is not a finite number"),
        ([np.inf], GOOD_RANGE, "a forecast that is not a finite number"),
        ([-5.0], GOOD_RANGE, "a forecast of -5, more than 10x away from the last close 100"),
        ([0.0], GOOD_RANGE, "a forecast of 0, more than 10x away"),
        ([1e30], GOOD_RANGE, r"a forecast of 1e\+30, more than 10x away"),
        ([100.5] * 24, None, "answered 24 steps where its metadata says 1"),
        ([100.5], np.array([[103.0, 100.5, 98.0]]), "ranges whose quantiles cross"),
        ([100.5], np.array([[98.0, np.nan, 103.0]]), "a range that is not a finite number"),
        ([100.5], np.array([[98.0, 103.0]]), r"quantiles of shape \[1, 2\] where its metadata names 3"),
    ],
)
def test_an_impossible_answer_is_refused_with_what_is_wrong(
    forecast: list[float], quantiles: np.ndarray | None, said: str
) -> None:
    problem = answer_problem(np.array(forecast), quantiles, 1, LEVELS, 100.0)
    assert problem is not None and re.search(said, problem), problem


def test_a_sound_answer_passes_and_a_server_without_levels_is_checked_on_its_point() -> None:
    assert answer_problem(np.array([100.5]), GOOD_RANGE, 1, LEVELS, 100.0) is None
    assert answer_problem(np.array([100.5]), None, 1, None, 100.0) is None
    assert answer_problem(np.array([1000.0]), None, 1, None, 100.0) is None  # 10x is still a price
