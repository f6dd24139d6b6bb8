"""The live record's headline numbers and the Degraded rule, as the operator and the dashboard share them."""

from __future__ import annotations

from typing import Any

from makeusrich.pair import LiveStatus, LiveWindowStatus
from makeusrich.scoring.live import degraded_verdict


def live(window: str = "30d", **numbers: Any) -> LiveStatus:
    return LiveStatus(windows=[LiveWindowStatus(window=window, **numbers)])


def test_degraded_needs_significance_or_a_clearly_short_range_over_thirty_days() -> None:
    assert degraded_verdict(None)[:2] == ("Unknown", "NoTrackRecord")
    assert degraded_verdict(live("24h", scored=50, mae_ratio=2.0, dm_pvalue=0.001))[1] == "NoTrackRecord"
    worse = degraded_verdict(live(scored=300, mae_ratio=1.02, dm_pvalue=0.01))
    assert worse[:2] == ("True", "WorseThanPersistence") and "1.0200 of persistence's (DM p 0.01, 300" in worse[2]
    # Worse, but not significantly: no alarm; a range that covers too little is one on its own.
    assert degraded_verdict(live(scored=300, mae_ratio=1.02, dm_pvalue=0.2))[:2] == ("False", "LiveSkillHolds")
    short = degraded_verdict(live(scored=300, mae_ratio=0.99, coverage=0.8, coverage_nominal=0.9))
    assert short[:2] == ("True", "RangesTooNarrow") and "90% range held 80.0% of 300 closes" in short[2]
    assert degraded_verdict(live(scored=10, coverage=0.5))[0] == "False"  # too few closes to judge a range


def test_a_version_younger_than_thirty_days_is_judged_on_its_own_forecasts() -> None:
    month = LiveWindowStatus(window="30d", scored=300, mae_ratio=1.5, dm_pvalue=0.001)  # mostly the old version
    own = LiveWindowStatus(window="version", scored=40, mae_ratio=0.99, dm_pvalue=0.6)
    young = LiveStatus(
        version="v2", live_since="2026-11-28T00:00:00Z", updated_at="2026-12-01T00:00:00Z", windows=[month, own]
    )
    verdict = degraded_verdict(young)
    assert verdict[:2] == ("False", "LiveSkillHolds") and "since version v2 went live" in verdict[2]
    old = young.model_copy(update={"live_since": "2026-10-01T00:00:00Z"})  # served all 30 days: the 30-day window
    assert degraded_verdict(old)[:2] == ("True", "WorseThanPersistence")
    assert "over 30 days" in degraded_verdict(old)[2]
