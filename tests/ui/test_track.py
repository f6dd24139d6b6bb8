"""The track record's pure parts on the dashboard: the rolling ratio by hand, the card's live line, the badge."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from makeusrich.pair import LiveStatus, LiveWindowStatus
from makeusrich.store.track_schema import empty_rows
from makeusrich.track.rows import append_rows, forecast_rows, gap_rows, score_rows
from makeusrich.ui.badges import badges, live_line
from makeusrich.ui.card import PairState
from makeusrich.ui.track import rolling_ratio, track_series
from tests.fixtures.live import live_decision
from tests.fixtures.models import small_pair

HOUR = pd.Timedelta(hours=1)
T0 = pd.Timestamp("2026-03-01T00:00Z")
NOW = datetime(2026, 3, 12, tzinfo=UTC)


def test_the_rolling_ratio_is_the_sum_of_errors_over_the_last_seven_days_by_hand() -> None:
    rows = empty_rows()
    # Day 0: model errors 1, persistence 2. Day 8 (outside the first week): model 3, persistence 1.
    rows = append_rows(rows, forecast_rows(T0, HOUR, "v", 100.0, [101.0], None, None, NOW))
    rows = append_rows(rows, forecast_rows(T0 + 8 * 24 * HOUR, HOUR, "v", 100.0, [104.0], None, None, NOW))
    rows = append_rows(rows, gap_rows(T0 + 9 * 24 * HOUR, HOUR, 1, "v", "down", 100.0, NOW))
    closes = pd.Series([102.0, 101.0], index=[T0 + HOUR, T0 + 8 * 24 * HOUR + HOUR])
    rows, _ = score_rows(rows, closes, NOW)
    times, ratios = rolling_ratio(rows)
    assert times == [T0 + HOUR, T0 + 8 * 24 * HOUR + HOUR]
    assert ratios == [pytest.approx(1 / 2), pytest.approx(3 / 1)]  # the first day has left the window
    series = track_series(rows)
    assert series.gaps == 1 and series.forecast[-1] is None and series.actual[:2] == [102.0, 101.0]


def state(**more: object) -> PairState:
    pair = small_pair()
    return PairState("default/btc-usdt", pair.name, pair.namespace, pair, **more)  # type: ignore[arg-type]


def test_the_card_says_the_live_skill_and_marks_a_degraded_model() -> None:
    month = LiveWindowStatus(window="30d", made=700, missed=3, scored=698, mae_ratio=1.0312, dm_pvalue=0.001)
    fired = live_decision("degraded-point", 3.1e5, on=True, since="2026-11-30T00:00:00Z", forecasts=698)
    live = LiveStatus(
        version="v2",
        live_since="2026-11-01T00:00:00Z",
        windows=[month.model_copy(update={"coverage": 0.874, "coverage_nominal": 0.9})],
        decisions=[fired],
    )
    text = live_line(state(live=live))
    assert text == "Live 30 d: MAE ratio 1.031 on 698 forecasts · 90% range held 87.4% · 3 missed"
    (degraded,) = [b for b in badges(state(live=live)) if b.text == "Degraded"]
    assert degraded.tone == "warning" and "evidence 310,000 of the 216,000 that decides" in degraded.tooltip
    quiet = live.model_copy(update={"decisions": [fired.model_copy(update={"on": False, "statistic": 40.0})]})
    assert not [b for b in badges(state(live=quiet)) if b.text == "Degraded"]
    assert live_line(state(offline="offline sample data, ends 2022-06-15")) == (
        "Live: nothing recorded on historical candles"
    )
    assert live_line(state()) == "Live: no served forecast scored yet"
    assert not [b for b in badges(state()) if b.text == "Degraded"]
