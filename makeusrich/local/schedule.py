"""When `makeusrich up` trains a pair: pure decisions, no I/O, so that each rule is tested directly.

The rules are the cluster's: a pair with no promoted model is trained at once (the operator's first Job),
then on its own cron schedule (the CronJob), once more when its live record turns Degraded if
`spec.promotion.retrainWhenDegraded` says so (the operator's degraded Job), and never while `spec.suspend` is
set. A run that failed is tried again at the next scheduled time, not in a loop; editing the pair's spec counts
as a new pair, and a run that was stopped half-way (Ctrl-C, a crash) as no run.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from makeusrich.pair import CurrencyPair, next_run
from makeusrich.store import RunState, version_time


def spec_sha256(pair: CurrencyPair) -> str:
    """A fingerprint of what a run trains on: the spec as the resource spells it."""
    spec = pair.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def due_at(pair: CurrencyPair, promoted: str | None, last: RunState | None, now: datetime) -> datetime | None:
    """When the pair's next training should start (`now` or earlier: at once); None while suspended.

    `promoted` is the version latest.json names, `last` the newest run this machine started for the pair."""
    if pair.spec.suspend:
        return None
    # A run that ended (well or not) on this spec counts; one stopped half-way, or cut off with the runner, does not.
    tried = last is not None and last.state in ("succeeded", "failed") and last.spec_sha256 == spec_sha256(pair)
    if promoted is None and not tried:
        return now
    moments = [version_time(promoted)] if promoted else []
    if last is not None and tried:
        moments.append(datetime.fromisoformat(last.started_at))
    return next_run(pair.spec.schedule, max(moments))


def retrain_when_degraded(pair: CurrencyPair, degraded_since: str | None, last: RunState | None) -> bool:
    """Whether to train now because the live record turned Degraded: with spec.promotion.retrainWhenDegraded, once
    per Degraded episode (`degraded_since`, when its first decision fired), by a run started after it began."""
    if not pair.spec.promotion.retrain_when_degraded or pair.spec.suspend or degraded_since is None:
        return False
    return last is None or datetime.fromisoformat(last.started_at) < datetime.fromisoformat(degraded_since)
