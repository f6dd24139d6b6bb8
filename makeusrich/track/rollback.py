"""Rollback: when the live evidence says the served version forecasts worse than the version it replaced, on the
same live hours, latest.json goes back to that version through the store's atomic promotion, with who, when, why
and the evidence in its audit trail. The model server and the operator follow latest.json as after any promotion.

The tracker acts because it holds the evidence and writes the store in both modes (`up` and the cluster). It does
not act when the pair's spec pins a version (a person's choice wins; the evidence is still reported), when the
served version has no comparator (a first version, one restored by a rollback, one a person pinned), or when
latest.json no longer names the served version (a newer promotion came first). A rolled-back version is never
served again by a rollback (the store refuses it), and a restored version has no comparator, so a pair cannot
swing back and forth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from makeusrich.pair import LiveDecision
from makeusrich.scoring import evidence_line
from makeusrich.scoring.sequential import ROLLBACK_POINT, ROLLBACK_RANGE
from makeusrich.store import Latest, PairStore, TrackSummary, Why
from makeusrich.store.track_schema import REPLACED
from makeusrich.track.shadow import Shadows

BY = "makeusrich track"


@dataclass(frozen=True)
class Rollback:
    """A rollback the evidence calls for: back to `to` from `served`, because of `decision`."""

    served: str
    to: str
    decision: LiveDecision
    live_since: str | None

    @property
    def reason(self) -> str:
        return f"worse than {self.to} on the same live hours: {evidence_line(self.decision)}"

    def evidence(self) -> dict[str, Any]:
        return {**self.decision.model_dump(mode="json", by_alias=True), "liveSince": self.live_since}


def rollback_due(summary: TrackSummary | None, shadows: Shadows | None, pinned: bool) -> Rollback | None:
    """The rollback the summary's decisions call for, or None."""
    if pinned or summary is None or shadows is None or summary.version != shadows.served:
        return None
    replaced = next((c.version for c in shadows.comparators if c.role == REPLACED), None)
    fired = [d for d in summary.decisions if d.on and d.decision in (ROLLBACK_POINT, ROLLBACK_RANGE)]
    if replaced is None or not fired:
        return None
    strongest = max(fired, key=lambda d: d.share)
    return Rollback(shadows.served, replaced, strongest, summary.live_since)


def roll_back(store: PairStore, due: Rollback) -> Latest:
    """Blocking: latest.json back to the replaced version; StoreError when that is moot or impossible."""
    return store.rollback(due.to, due.served, Why(BY, due.reason, due.evidence()))
