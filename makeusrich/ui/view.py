"""Pure functions from what the dashboard knows about a pair to what a person reads: no I/O, no NiceGUI.

Kept apart from the pages so that number formats, verdicts about skill and badges are tested directly, and the
pages stay thin. Times are shown in the viewer's time zone, which the page learns from the browser.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
from pydantic import ValidationError

from makeusrich.contract import INTERVAL_MS
from makeusrich.pair import CurrencyPair, CurrencyPairStatus, LiveStatus, next_run
from makeusrich.scoring.live import degraded_verdict
from makeusrich.store import Damaged, Directional, Metrics, ModelMetadata, RangeCoverage, Readable, RunState, Score

SIGNIFICANCE = 0.05
"""Diebold-Mariano p-value under which a difference from persistence counts as more than noise."""

Tone = Literal["positive", "negative", "warning", "info", "neutral"]

# --- numbers --------------------------------------------------------------------------------------------------


def price_decimals(price: float | None, significant: int = 6) -> int:
    """Decimals that show `significant` digits of a price, at least 2 and at most 8: 43,210.12 but 0.00001235.

    Chosen once per pair from its last price, so every price on a card lines up."""
    if price is None or not math.isfinite(price) or price == 0:
        return 2
    integer_digits = math.floor(math.log10(abs(price))) + 1
    return max(2, min(8, significant - integer_digits))


def format_price(value: float | None, decimals: int) -> str:
    """Thousands separators and a fixed number of decimals; an em dash for what is unknown."""
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:,.{decimals}f}"


def format_change(change: float | None) -> str:
    """A relative change as a signed percentage, with more decimals for the small moves forecasts predict."""
    if change is None or not math.isfinite(change):
        return "—"
    percent = change * 100
    decimals = 3 if abs(percent) < 1 else 2
    return f"{percent:+.{decimals}f}%"


def change_tone(change: float | None) -> Tone:
    if change is None or not math.isfinite(change) or change == 0:
        return "neutral"
    return "positive" if change > 0 else "negative"


def format_ratio(ratio: float | None) -> str:
    return "—" if ratio is None or not math.isfinite(ratio) else f"{ratio:.3f}"


def format_pvalue(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


# --- times ----------------------------------------------------------------------------------------------------


def zone(name: str | None) -> ZoneInfo:
    """The viewer's time zone from its IANA name; UTC when the browser sent none or an unknown one."""
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def parse_time(value: str | datetime | pd.Timestamp | None) -> datetime | None:
    """An aware UTC datetime from an ISO text (with Z), a datetime or a Timestamp; None if it is not one."""
    if value is None:
        return None
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def format_time(value: str | datetime | pd.Timestamp | None, tz: str | None, seconds: bool = False) -> str:
    """Local time with the zone's abbreviation, such as 2022-06-15 02:00 CEST."""
    moment = parse_time(value)
    if moment is None:
        return "—"
    return moment.astimezone(zone(tz)).strftime("%Y-%m-%d %H:%M:%S %Z" if seconds else "%Y-%m-%d %H:%M %Z")


def format_age(value: str | datetime | pd.Timestamp | None, now: datetime | None = None) -> str:
    """How long ago, in the largest unit that fits: 'just now', '5 min ago', '3 h ago', '12 days ago'."""
    moment = parse_time(value)
    if moment is None:
        return ""
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    if seconds < 0:
        return "in the future"
    if seconds < 60:
        return "just now"
    if seconds >= 86_400:
        days = int(seconds // 86_400)
        return f"{days} day{'s' if days != 1 else ''} ago"
    return f"{int(seconds // 3_600)} h ago" if seconds >= 3_600 else f"{int(seconds // 60)} min ago"


def version_time(version: str | None) -> datetime | None:
    """The UTC time a version name encodes (20261126T150000Z)."""
    if not version:
        return None
    try:
        return datetime.strptime(version, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


# --- skill ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Skill:
    """The model's own numbers on the two held-out splits, from metadata.json or from a pair's status."""

    validation: Score | None
    test: Score | None


def skill_from_metrics(metrics: Metrics) -> Skill:
    return Skill(validation=metrics.validation.model, test=metrics.test.model)


def skill_from_status(metrics: Mapping[str, Any] | None) -> Skill | None:
    """A status's `model.metrics` ({split: score}); a split in a shape we do not know is left out."""

    def split(name: str) -> Score | None:
        try:
            return Score.model_validate((metrics or {}).get(name))
        except ValidationError:
            return None

    skill = Skill(validation=split("validation"), test=split("test"))
    return skill if skill.validation or skill.test else None


@dataclass(frozen=True)
class Verdict:
    text: str
    tone: Tone


def verdict(split: Score | None) -> Verdict:
    """One honest sentence about a split's MAE ratio: 'beats' only when the Diebold-Mariano test says the
    difference is unlikely to be noise."""
    if split is None or split.rel_mae is None:
        return Verdict("skill not measured", "neutral")
    significant = split.dm_pvalue is not None and split.dm_pvalue < SIGNIFICANCE
    if split.rel_mae < 1:
        if significant:
            return Verdict("beats persistence", "positive")
        return Verdict("no clear edge over persistence", "neutral")
    if split.rel_mae > 1 and significant:
        return Verdict("worse than persistence", "negative")
    return Verdict("no better than persistence", "warning")


def format_direction(direction: Directional | None) -> str:
    """Directional accuracy with its 95% Wilson interval: 54.2% (45.3-62.8%)."""
    if direction is None:
        return "—"
    low, high = direction.wilson_low * 100, direction.wilson_high * 100
    return f"{direction.accuracy * 100:.1f}% ({low:.1f}-{high:.1f}%)"


# --- badges ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Badge:
    text: str
    tone: Tone
    tooltip: str = ""


def condition(status: CurrencyPairStatus | None, kind: str) -> Any:
    return next((c for c in status.conditions if c.type == kind), None) if status else None


@dataclass(frozen=True)
class PairState:
    """Everything a card shows, as plain values (built by the dashboard from its sources)."""

    key: str
    name: str
    namespace: str
    pair: CurrencyPair | None
    problem: str | None = None
    status: CurrencyPairStatus | None = None
    last_close: float | None = None
    last_close_time: datetime | None = None  # every time here is when a candle closes
    closes: tuple[float, ...] = ()
    forecast: tuple[float, ...] = ()
    forecast_times: tuple[datetime, ...] = ()
    quantiles: tuple[tuple[float, ...], ...] = ()  # per forecast candle, one per level
    levels: tuple[float, ...] = ()
    candle_error: str | None = None
    promoted_version: str | None = None
    served_version: str | None = None
    trained_at: str | None = None
    skill: Skill | None = None
    newest_version: str | None = None
    newest_promoted: bool | None = None  # whether latest.json ever named the newest version
    promoted_versions: frozenset[str] = frozenset()
    newest_reason: str | None = None
    serving_ready: bool | None = None
    serving_error: str | None = None
    refused: str | None = None
    forecast_error: str | None = None
    store_error: str | None = None
    run: RunState | None = None  # the newest training `makeusrich up` started
    offline: str | None = None  # what stands in for Binance's live candles: the sample or a file
    live: LiveStatus | None = None  # the track record of served forecasts (track.json, or status.live)
    loading: bool = False

    @property
    def symbol(self) -> str:
        return f"{self.pair.spec.currency.upper()}/{self.pair.spec.compare.upper()}" if self.pair else self.name

    @property
    def interval(self) -> str:
        return self.pair.spec.interval if self.pair else ""

    @property
    def change(self) -> float | None:
        return self.forecast[0] / self.last_close - 1.0 if self.forecast and self.last_close else None

    def forecast_range(self, step: int = 0) -> tuple[float, float, float] | None:
        """(low, high, nominal coverage) of the widest range forecast for a step; None without quantiles."""
        if step >= len(self.quantiles) or len(self.levels) < 3:
            return None
        row = self.quantiles[step]
        return row[0], row[-1], round(self.levels[-1] - self.levels[0], 9)

    @property
    def test_ratio(self) -> float | None:
        return self.skill.test.rel_mae if self.skill and self.skill.test else None

    @property
    def errors(self) -> list[str]:
        """What went wrong for this pair, most important first; each is shown on its card only."""
        failed = self.run.message if self.run and self.run.state == "failed" else None
        found = [self.problem, failed, self.serving_error, self.forecast_error, self.candle_error, self.store_error]
        return [text for text in found if text]


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
    if state.promoted_version is None and state.served_version is None:
        out.append(Badge("No model", "warning", "no version was promoted yet"))
    not_promoted = state.newest_promoted is False and state.newest_version != state.promoted_version
    if not_promoted or (trained is not None and trained.reason == "NotPromoted"):
        why = state.newest_reason or (trained.message if trained is not None else "")
        out.append(Badge("Not promoted", "warning", f"newest version {state.newest_version or '?'}: {why}"))
    if state.refused:
        out.append(Badge("Version refused", "negative", state.refused))
    stale = staleness(state, now)
    if stale:  # on the sample or a file the card says the candles are historical: stale, but explained
        out.append(Badge("Stale", "info" if state.offline else "warning", stale))
    degraded, _, message = degraded_verdict(state.live)
    if degraded == "True":
        out.append(Badge("Degraded", "warning", message))
    if spec.serving.pinned_version:
        out.append(Badge("Pinned", "info", f"serving is pinned to version {spec.serving.pinned_version}"))
    if spec.suspend:
        out.append(Badge("Suspended", "neutral", "scheduled training is suspended; the served model stays"))
    # Ready only when nothing on the card is wrong: an unreachable store or a failed forecast is not ready.
    if state.serving_ready and not state.errors and not any(b.tone == "negative" for b in out):
        out.append(Badge("Ready", "positive", f"serving version {state.served_version}"))
    return out


def run_progress(run: RunState) -> str:
    """'epoch 3 of 50 · validation loss 0.4321' while a training runs ('loading candles' before its first epoch)."""
    if run.epoch is None:
        return "loading candles"
    loss = f" · validation loss {run.validation_loss:.4f}" if run.validation_loss is not None else ""
    return f"epoch {run.epoch} of {run.max_epochs or '?'}{loss}"


def has_problem(state: PairState) -> bool:
    return any(badge.tone in ("negative", "warning") for badge in badges(state)) or bool(state.errors)


# --- the overview's sorting and filtering -------------------------------------------------------------------

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


# --- a tiny chart for the cards -----------------------------------------------------------------------------


def sparkline(closes: Sequence[float], forecast: Sequence[float] = (), width: int = 160, height: int = 36) -> str:
    """An inline SVG of recent closes and the forecast after them: 50 of these cost less than one canvas chart."""
    points = [c for c in closes if math.isfinite(c)]
    ahead = [f for f in forecast if math.isfinite(f)]
    if len(points) < 2:
        return f'<svg width="{width}" height="{height}" role="img" aria-label="no price history"></svg>'
    values = points + ahead
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    total = len(values) - 1
    pad = 2

    def xy(i: int, v: float) -> str:
        x = pad + (width - 2 * pad) * i / total
        y = pad + (height - 2 * pad) * (1 - (v - low) / span)
        return f"{x:.1f},{y:.1f}"

    past = " ".join(xy(i, v) for i, v in enumerate(points))
    svg = [
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        'aria-label="recent closes and forecast">',
        f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{past}"/>',
    ]
    if ahead:
        future = " ".join(xy(len(points) - 1 + i, v) for i, v in enumerate([points[-1], *ahead]))
        color = "#16a34a" if ahead[0] >= points[-1] else "#dc2626"
        svg.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="2" stroke-dasharray="3 2" points="{future}"/>'
        )
    return "".join([*svg, "</svg>"])


# --- the pair page -------------------------------------------------------------------------------------------

RULE_NAMES = {
    "persistence": "Persistence (next = last close)",
    "always_up": "Always up (training drift)",
    "against_last_move": "Against the last move",
    "ar": "AR(24) on log returns",
}


@dataclass(frozen=True)
class SkillRow:
    """One row of the pair page's skill table: a forecaster's numbers on validation and test."""

    name: str
    cells: dict[str, str] = field(default_factory=dict)
    is_model: bool = False


def skill_rows(metadata: ModelMetadata | None) -> list[SkillRow]:
    """The model next to every trivial rule on the same points (metadata.json's metrics)."""
    if metadata is None:
        return []
    rows = []
    for key, label in (("model", "LSTM (this model)"), *RULE_NAMES.items()):
        cells: dict[str, str] = {}
        for name in ("validation", "test"):
            split = getattr(metadata.metrics, name)
            skill: Score | None = split.model if key == "model" else getattr(split.rules, key)
            if skill is None:
                continue
            cells[f"{name}_mae"] = format_price(skill.mae, 2)
            cells[f"{name}_ratio"] = format_ratio(skill.rel_mae)
            cells[f"{name}_direction"] = format_direction(skill.directional)
            cells[f"{name}_p"] = "—" if key == "persistence" else format_pvalue(skill.dm_pvalue)
        if cells:
            rows.append(SkillRow(label, cells, key == "model"))
    return rows


RANGE_NAMES = {
    "model": "LSTM quantiles (this model)",
    "ewma": "EWMA volatility (RiskMetrics)",
    "climatology": "Climatology",
}


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


def format_coverage(found: RangeCoverage) -> str:
    """A range's coverage with its 95% Wilson interval: 88.6% (86.9-90.1%)."""
    return f"{found.rate:.1%} ({found.wilson_low * 100:.1f}-{found.wilson_high * 100:.1f}%)"


def range_rows(metadata: ModelMetadata | None) -> list[SkillRow]:
    """The model's ranges next to the two naive ranges on the same points: coverage of each range, the widest
    range's mean width and interval score, and the pinball loss (both scores as ratios to EWMA's)."""
    if metadata is None or metadata.metrics.test.ranges is None or metadata.metrics.validation.ranges is None:
        return []
    rows = []
    for key, label in RANGE_NAMES.items():
        cells: dict[str, str] = {}
        for name in ("validation", "test"):
            scored = getattr(metadata.metrics, name).ranges
            found, ewma = getattr(scored, key), scored.ewma
            for covered in found.ranges:
                cells[f"{name}_cov{round(covered.nominal * 100)}"] = format_coverage(covered)
            widest = found.ranges[0]
            cells[f"{name}_width"] = f"±{widest.mean_width * 50:.2f}%"  # half the log width, in % of the price
            cells[f"{name}_interval"] = format_ratio(widest.interval_score / ewma.ranges[0].interval_score)
            cells[f"{name}_pinball"] = format_ratio(found.pinball / ewma.pinball)
        rows.append(SkillRow(label, cells, key == "model"))
    return rows


def edge_sentence(metadata: ModelMetadata | None) -> Verdict:
    """In words, on the test split (data no decision looked at): whether the served model has an edge on the
    price, and whether its ranges beat the naive ones. A loss is said as plainly as a win."""
    if metadata is None:
        return Verdict("No model has been measured yet.", "neutral")
    test = metadata.metrics.test
    point, ratio = test.model, test.model.rel_mae
    if ratio is None:
        return Verdict("The test prices never moved, so skill is undefined.", "neutral")
    p = format_pvalue(point.dm_pvalue)
    significant = point.dm_pvalue is not None and point.dm_pvalue < SIGNIFICANCE
    gap = abs(1 - ratio) * 100
    tone: Tone
    if ratio < 1:
        head, tone = ("Edge", "positive") if significant else ("No proven edge", "neutral")
    else:
        head, tone = ("No edge", "negative") if significant else ("No edge", "warning")
    doubt = "" if significant else ", which may be noise"
    side = "below" if ratio < 1 else "above"
    text = f"{head} on the price: on the test split its error is {gap:.2f}% {side} persistence's{doubt} (DM p={p})."
    if test.ranges is not None:
        widest, ewma, clim = test.ranges.model.ranges[0], test.ranges.ewma.ranges[0], test.ranges.climatology.ranges[0]
        versus_ewma = widest.interval_score / ewma.interval_score - 1
        versus_clim = widest.interval_score / clim.interval_score - 1
        text += (
            f" Its {widest.nominal:.0%} range held {widest.rate:.1%} of test closes; its interval score is "
            f"{abs(versus_clim):.0%} {'better' if versus_clim < 0 else 'worse'} than climatology's and "
            f"{abs(versus_ewma):.0%} {'better' if versus_ewma < 0 else 'worse'} than EWMA volatility's."
        )
    return Verdict(text, tone)


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


@dataclass(frozen=True)
class VersionRow:
    version: str
    created: str
    promoted: bool
    reason: str
    validation_ratio: str
    test_ratio: str
    direction: str
    marks: tuple[str, ...]


def promotion_reason(meta: Readable | None, promoted: bool) -> str:
    """Why a version was or was not promoted. Its metadata.json says what its run decided; only latest.json says
    whether the promotion happened (a run can die between the two)."""
    if meta is None:
        return ""
    if isinstance(meta, Damaged):
        return f"damaged: {meta.reason}"
    reason = meta.promotion.reason
    if meta.promotion.promoted and not promoted:
        return f"{reason}; but its run ended before latest.json named it, so it was never promoted"
    return reason


def version_rows(
    metadata: Mapping[str, Readable],
    promoted: str | None,
    served: str | None,
    pinned: str | None,
    tz: str | None,
    promoted_versions: frozenset[str] = frozenset(),
) -> list[VersionRow]:
    """Every version, newest first, with its numbers and which one is promoted now, served or pinned; `promoted`
    says yes only for versions latest.json has named. A damaged version shows as such."""
    rows = []
    for version in sorted(metadata, reverse=True):
        meta = metadata[version]
        known = meta if isinstance(meta, ModelMetadata) else None
        validation, test = (known.metrics.validation.model, known.metrics.test.model) if known else (None, None)
        flags = (
            ("served", version == served),
            ("promoted", version == promoted),
            ("pinned", version == pinned),
            ("damaged", known is None),
        )
        was_promoted = version in promoted_versions or version == promoted
        rows.append(
            VersionRow(
                version=version,
                created=format_time(known.created_at if known else version_time(version), tz),
                promoted=was_promoted,
                reason=promotion_reason(meta, was_promoted),
                validation_ratio=format_ratio(validation.rel_mae if validation else None),
                test_ratio=format_ratio(test.rel_mae if test else None),
                direction=format_direction(test.directional if test else None),
                marks=tuple(mark for mark, on in flags if on),
            )
        )
    return rows


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _stat(label: str, value: str, tone: Tone = "neutral", note: str = "") -> str:
    extra = f'<div class="mur-sub">{_e(note)}</div>' if note else ""
    return (
        f'<div class="mur-stat"><div class="mur-caps">{_e(label)}</div>'
        f'<div class="mur-num mur-{tone}">{_e(value)}</div>{extra}</div>'
    )


def card_html(state: PairState, tz: str | None, now: datetime | None = None) -> str:
    """A pair's card as one HTML string: 50 cards are then 50 elements for NiceGUI to build and send, not 2,000.
    Every value is escaped; the whole card links to the pair's page (NiceGUI navigates without a reload)."""
    s = state
    decimals = price_decimals(s.last_close)
    where = f" · {s.namespace}" if s.namespace != "default" else ""
    chips = "".join(
        f'<span class="mur-badge mur-{b.tone}" title="{_e(b.tooltip)}">{_e(b.text)}</span>' for b in badges(s, now)
    )
    parts = [
        f'<a class="pair-card mur-card" href="/pair/{_e(s.namespace)}/{_e(s.name)}" data-pair="{_e(s.key)}">',
        '<div class="mur-row mur-top"><div class="mur-min">',
        f'<div class="mur-title">{_e(s.symbol)}</div>',
        f'<div class="mur-sub">{_e(s.name)} · {_e(s.interval)}{_e(where)}</div>',
        f'</div><div class="mur-badges">{chips}</div></div>',
    ]
    if s.loading:
        parts.append('<div class="mur-sub">Loading…</div></a>')
        return "".join(parts)
    last = f"last close · {format_time(s.last_close_time, tz)}" if s.last_close_time else "no candles"
    last += f" · {s.offline}" if s.offline else ""
    parts += [
        '<div class="mur-row mur-price-row"><div>',
        f'<div class="mur-price">{_e(format_price(s.last_close, decimals))}</div><div class="mur-sub">{_e(last)}</div>',
        f'</div><div class="mur-spark">{sparkline(s.closes, s.forecast, width=120)}</div></div>',
    ]
    ahead = s.forecast_times[0] if s.forecast_times else None
    next_price = format_price(s.forecast[0] if s.forecast else None, decimals)
    test = s.skill.test if s.skill else None
    validation = s.skill.validation if s.skill else None
    say = verdict(test)
    spread = s.forecast_range()
    note = format_time(ahead, tz) if ahead else ""
    if spread is not None:
        low, high, nominal = spread
        note += f" · {nominal:.0%}: {format_price(low, decimals)} to {format_price(high, decimals)}"
    parts += [
        '<div class="mur-row mur-stats">',
        _stat("Forecast next close", next_price, note=note),
        _stat("Expected change", format_change(s.change), change_tone(s.change)),
        "</div>",
        '<div class="mur-caps"><span class="mur-dim">Skill vs persistence</span>',
        f'<span class="mur-verdict mur-{say.tone}">{_e(say.text)}</span></div>',
        '<div class="mur-row mur-stats">',
        _stat("MAE ratio val", format_ratio(validation.rel_mae if validation else None)),
        _stat("MAE ratio test", format_ratio(test.rel_mae if test else None)),
        _stat("Direction (test)", format_direction(test.directional if test else None)),
        "</div>",
        f'<div class="mur-sub" data-live>{_e(live_line(s))}</div>',
    ]
    version = s.served_version or s.promoted_version
    model, title = "no model served", ""
    if version:
        model = f"model {version} · trained {format_age(s.trained_at, now) or '—'}"
        title = f"trained at {format_time(s.trained_at, tz)}" if s.trained_at else ""
    parts.append(f'<div class="mur-foot" title="{_e(title)}">{_e(model)}</div>')
    if s.run is not None and s.run.state == "training":
        parts.append(f'<div class="mur-progress" role="status">Training: {_e(run_progress(s.run))}</div>')
    parts += [f'<div class="mur-error" role="alert">⚠ {_e(error)}</div>' for error in s.errors]
    return "".join([*parts, "</a>"])
