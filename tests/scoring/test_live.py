"""The live record's headline numbers and the Degraded condition from the live decisions, as the operator and the
dashboard share them."""

from __future__ import annotations

from typing import Any

from makeusrich.pair import LiveDecision, LiveStatus
from makeusrich.scoring.live import degraded_since, degraded_verdict


def decision(name: str, statistic: float, on: bool = False, since: str | None = None, **rest: Any) -> LiveDecision:
    return LiveDecision(
        decision=name,  # type: ignore[arg-type]
        on=on,
        statistic=statistic,
        threshold=216000.0,
        forecasts=300,
        since=since,
        against=rest.pop("against", "persistence"),
        served=rest.pop("served", 0.81),
        other=rest.pop("other", 0.78),
    )


def live(*decisions: LiveDecision) -> LiveStatus:
    return LiveStatus(version="v2", live_since="2026-11-20T00:00:00Z", decisions=list(decisions))


def test_degraded_follows_the_decisions_of_the_version_run_and_says_their_evidence() -> None:
    assert degraded_verdict(None)[:2] == ("Unknown", "NoTrackRecord")
    assert degraded_verdict(live())[:2] == ("Unknown", "NoTrackRecord")
    # a rollback decision alone says nothing about Degraded
    assert degraded_verdict(live(decision("rollback-point", 5e5, on=True)))[:2] == ("Unknown", "NoTrackRecord")
    quiet = degraded_verdict(live(decision("degraded-point", 12.0), decision("degraded-coverage", 300.0)))
    assert quiet[:2] == ("False", "LiveSkillHolds")
    assert quiet[2] == (
        "since version v2 went live (2026-11-20T00:00:00Z), the strongest evidence is its widest range's misses: "
        "evidence 300 of the 216,000 that decides, on 300 forecasts, it missed 81.0% of closes (78.0% promised)"
    )
    worse = live(
        decision("degraded-point", 3e5, on=True, since="2026-11-25T03:00:00Z"),
        decision("degraded-coverage", 9e5, on=True, since="2026-11-24T01:00:00Z", against="the 90% range's promise"),
    )
    verdict = degraded_verdict(worse)
    assert verdict[:2] == ("True", "RangesTooNarrow") and "evidence 900,000 of the 216,000" in verdict[2]
    assert degraded_since(worse) == "2026-11-24T01:00:00Z"
    assert degraded_since(live(decision("degraded-point", 10.0))) is None
