"""The live record's headline numbers and the Degraded condition from the live decisions, as the operator and the
dashboard share them."""

from __future__ import annotations

from makeusrich.pair import LiveDecision, LiveStatus
from makeusrich.scoring.live import degraded_since, degraded_verdict
from tests.fixtures.live import live_decision


def live(*decisions: LiveDecision) -> LiveStatus:
    return LiveStatus(version="v2", live_since="2026-11-20T00:00:00Z", decisions=list(decisions))


def test_degraded_follows_the_decisions_of_the_version_run_and_says_their_evidence() -> None:
    assert degraded_verdict(None)[:2] == ("Unknown", "NoTrackRecord")
    assert degraded_verdict(live())[:2] == ("Unknown", "NoTrackRecord")
    # a rollback decision alone says nothing about Degraded
    assert degraded_verdict(live(live_decision("rollback-point", 5e5, on=True)))[:2] == ("Unknown", "NoTrackRecord")
    quiet = degraded_verdict(live(live_decision("degraded-point", 12.0), live_decision("degraded-coverage", 300.0)))
    assert quiet[:2] == ("False", "LiveSkillHolds")
    assert quiet[2] == (
        "since version v2 went live (2026-11-20T00:00:00Z), the strongest evidence is its widest range's misses: "
        "evidence 300 of the 216,000 that decides, on 300 forecasts, it missed 81.0% of closes (78.0% promised)"
    )
    worse = live(
        live_decision("degraded-point", 3e5, on=True, since="2026-11-25T03:00:00Z"),
        live_decision(
            "degraded-coverage", 9e5, on=True, since="2026-11-24T01:00:00Z", against="the 90% range's promise"
        ),
    )
    verdict = degraded_verdict(worse)
    assert verdict[:2] == ("True", "RangesTooNarrow") and "evidence 900,000 of the 216,000" in verdict[2]
    assert degraded_since(worse) == "2026-11-24T01:00:00Z"
    assert degraded_since(live(live_decision("degraded-point", 10.0))) is None
