"""What a card says about its pair: the badges (problems first), staleness, the live line, training progress, and
the overview's filter and order. Pure functions of a card's state."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from makeusrich.contract import INTERVAL_MS
from makeusrich.pair import Condition, next_run
from makeusrich.scoring import degraded_verdict
from makeusrich.store import RunState
from makeusrich.ui.card import PairState, condition
from makeusrich.ui.format import Tone, format_age, format_ratio, parse_time


@dataclass(frozen=True)
class Badge:
    text: str
    tone: Tone
    tooltip: str = ""


def badges(state: PairState, now: datetime | None = None) -> list[Badge]:
    """The chips on a card: problems first, in the order a user should act on them."""
    out: list[Badge] = []
    if state.pair is None:
        return [Badge("Invalid", "negative", state.problem or "the pair does not validate")]
    spec = state.pair.spec
    trained = condition(state.status, "Trained")
    if state.serving_error:
        out.append(Badge("Serving down", "negative", state.serving_error))
    elif state.serving_ready is False and (state.promoted_version or state.served_version):
        ready = condition(state.status, "Ready")
        out.append(Badge("Not ready", "warning", ready.message if ready is not None else "the model is loading"))
    if trained is not None and trained.reason == "TrainingFailed":
        out.append(Badge("Training failed", "negative", trained.message))
    if state.run is not None and state.run.state in ("training", "failed"):
        training = state.run.state == "training"
        tip = run_progress(state.run) if training else state.run.message or ""
        out.append(Badge("Training" if training else "Training failed", "info" if training else "negative", tip))
    out += model_badges(state, trained)
    if state.refused:
        out.append(Badge("Version refused", "negative", state.refused))
    stale = staleness(state, now)
    if stale:  # on the sample or a file the card says the candles are historical: stale, but explained
        out.append(Badge("Stale", "info" if state.offline else "warning", stale))
    degraded, _, message = degraded_verdict(state.live)
    if degraded == "True":
        out.append(Badge("Degraded", "warning", message))
    back = rolled_back(state)
    if back:
        out.append(Badge("Rolled back", "warning", back))
    if spec.serving.pinned_version:
        out.append(Badge("Pinned", "info", f"serving is pinned to version {spec.serving.pinned_version}"))
    if spec.suspend:
        out.append(Badge("Suspended", "neutral", "scheduled training is suspended; the served model stays"))
    # Ready only when nothing on the card is wrong: an unreachable store or a failed forecast is not ready.
    if state.serving_ready and not state.errors and not any(b.tone == "negative" for b in out):
        out.append(Badge("Ready", "positive", f"serving version {state.served_version}"))
    return out


def model_badges(state: PairState, trained: Condition | None) -> list[Badge]:
    """What is served and what was not: no model yet, a newest version the gates refused, the baseline."""
    out: list[Badge] = []
    if state.promoted_version is None and state.served_version is None:
        out.append(Badge("No model", "warning", "no version was promoted yet"))
    not_promoted = state.newest_promoted is False and state.newest_version != state.promoted_version
    if not_promoted or (trained is not None and trained.reason == "NotPromoted"):
        why = state.newest_reason or (trained.message if trained is not None else "")
        out.append(Badge("Not promoted", "warning", f"newest version {state.newest_version or '?'}: {why}"))
    if state.kind == "baseline":
        why = "no LSTM has passed the gates yet"
        if state.newest_version != state.served_version and state.newest_reason:
            why = f"the newest LSTM, {state.newest_version}, did not pass them: {state.newest_reason}"
        out.append(Badge("Baseline", "info", f"serving the baseline (persistence with volatility ranges): {why}"))
    return out


def rolled_back(state: PairState) -> str | None:
    """Why the served version is one that was rolled back to, while it is: None otherwise."""
    change = state.changes[0] if state.changes else None
    shown = state.served_version or state.promoted_version
    if change is None or change.action != "rolled-back" or change.version != shown:
        return None
    return f"version {change.from_} was rolled back to {change.version} by {change.by} ({change.at}): {change.reason}"


def run_progress(run: RunState) -> str:
    """'epoch 3 of 50 · validation loss 0.4321' while a training runs ('loading candles' before its first epoch)."""
    if run.epoch is None:
        return "loading candles"
    loss = f" · validation loss {run.validation_loss:.4f}" if run.validation_loss is not None else ""
    return f"epoch {run.epoch} of {run.max_epochs or '?'}{loss}"


def has_problem(state: PairState) -> bool:
    return any(badge.tone in ("negative", "warning") for badge in badges(state)) or bool(state.errors)


def live_line(state: PairState) -> str:
    """The card's live skill, beside the test skill: the last 30 days of served forecasts, once scored."""
    month = next((w for w in state.live.windows if w.window == "30d"), None) if state.live else None
    if month is None or month.scored == 0:
        if state.offline and "sample" in state.offline:
            return "Live: nothing recorded on historical candles"
        return "Live: no served forecast scored yet"
    text = f"Live 30 d: MAE ratio {format_ratio(month.mae_ratio)} on {month.scored:,} forecasts"
    if month.coverage is not None and month.coverage_nominal is not None:
        text += f" · {month.coverage_nominal:.0%} range held {month.coverage:.1%}"
    if month.missed:
        text += f" · {month.missed:,} missed"
    return text


def schedule_period(schedule: str, after: datetime) -> timedelta:
    """The time between the schedule's next two runs: what 'three schedule periods' means for staleness."""
    first = next_run(schedule, after)
    return next_run(schedule, first) - first


def staleness(state: PairState, now: datetime | None = None) -> str | None:
    """Why the forecast is stale, or None: its last candle closed more than two intervals ago (the candles
    stopped), or its model is older than three schedule periods (training stopped)."""
    if state.pair is None or not state.forecast:
        return None
    now = now or datetime.now(UTC)
    spec = state.pair.spec
    step = timedelta(milliseconds=INTERVAL_MS[spec.interval])
    reasons = []
    if state.last_close_time is not None and now - state.last_close_time > 2 * step:
        reasons.append(
            f"its last candle closed {format_age(state.last_close_time, now)}, over two {spec.interval} intervals"
        )
    trained = parse_time(state.trained_at)
    if trained is not None and not spec.suspend:
        period = schedule_period(spec.schedule, trained)
        if now - trained > 3 * period:
            reasons.append(f"its model was trained {format_age(trained, now)}, over three schedule periods")
    return "stale forecast: " + " and ".join(reasons) if reasons else None


SORTS: dict[str, str] = {
    "name": "Name",
    "change": "Expected change",
    "skill": "Skill (test MAE ratio)",
    "trained": "Newest model",
    "problems": "Problems first",
}


def matches(state: PairState, query: str) -> bool:
    """Case-insensitive match on name, namespace and symbol: 'btc', 'usdt', 'BTC/USDT' all find btc-usdt."""
    needle = query.strip().lower()
    if not needle:
        return True
    haystack = f"{state.name} {state.namespace} {state.symbol} {state.symbol.replace('/', '')}".lower()
    return all(part in haystack for part in needle.split())


def sort_states(states: Iterable[PairState], key: str) -> list[PairState]:
    """Pairs in the order the user picked; unknown values last, ties by name."""
    by_name = sorted(states, key=lambda s: (s.name, s.namespace))
    orders: dict[str, Callable[[PairState], Any]] = {
        "change": lambda s: (s.change is None, -(s.change or 0.0)),
        "skill": lambda s: (s.test_ratio is None, s.test_ratio or 0.0),
        "trained": lambda s: (s.trained_at is None, _neg_time(s.trained_at)),
        "problems": lambda s: not has_problem(s),
    }
    return sorted(by_name, key=orders[key]) if key in orders else by_name


def _neg_time(value: str | None) -> float:
    moment = parse_time(value)
    return -moment.timestamp() if moment else 0.0
