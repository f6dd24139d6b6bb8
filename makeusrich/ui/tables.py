"""The pair page's tables and sentences, from a version's metadata.json: the model next to every naive rule on the
same points, its ranges next to the naive ranges, whether it has an edge, the decision rules after fees, every
version with why it was or was not promoted, and latest.json's trail of who changed the served version and why.
Pure functions."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from makeusrich.pair import ModelChange
from makeusrich.scoring import decision, ranges
from makeusrich.store import Damaged, DecisionMetrics, Difference, ModelMetadata, Readable, Score
from makeusrich.ui.format import (
    KIND_NAMES,
    SIGNIFICANCE,
    Tone,
    Verdict,
    format_coverage,
    format_direction,
    format_price,
    format_pvalue,
    format_ratio,
    format_time,
    version_time,
)

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
    this = f"{KIND_NAMES[metadata.kind]} (this model)"
    for key, label in (("model", this), *RULE_NAMES.items()):
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
    "model": "This model's quantiles",
    **{name: ranges.NAIVE_RANGE_NAMES[name] for name in ("ewma", "ewma_range", "har", "climatology")},
}


def range_rows(metadata: ModelMetadata | None) -> list[SkillRow]:
    """The model's ranges next to the naive ranges on the same points: coverage of each range, the widest range's
    mean width and interval score, and the pinball loss (both scores as ratios to EWMA's). A naive range measured
    only after the version was (the range ones) has no row."""
    if metadata is None or metadata.metrics.test.ranges is None or metadata.metrics.validation.ranges is None:
        return []
    rows = []
    splits = {name: getattr(metadata.metrics, name).ranges for name in ("validation", "test")}
    for key, label in RANGE_NAMES.items():
        if any(getattr(scored, key) is None for scored in splits.values()):
            continue
        cells: dict[str, str] = {}
        for name, scored in splits.items():
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
    if metadata.kind == "baseline":
        text, tone = (
            "The baseline forecasts the last close (persistence) by design: it claims no edge on the price.",
            "neutral",
        )
    if test.ranges is not None:
        widest, ewma, clim = test.ranges.model.ranges[0], test.ranges.ewma.ranges[0], test.ranges.climatology.ranges[0]
        versus_ewma = widest.interval_score / ewma.interval_score - 1
        versus_clim = widest.interval_score / clim.interval_score - 1
        text += (
            f" Its {widest.nominal:.0%} range held {widest.rate:.1%} of test closes; its interval score is "
            f"{abs(versus_clim):.0%} {'better' if versus_clim < 0 else 'worse'} than climatology's and "
            f"{abs(versus_ewma):.0%} {'better' if versus_ewma < 0 else 'worse'} than EWMA volatility's"
        )
        if test.ranges.har is not None:
            versus_har = widest.interval_score / test.ranges.har.ranges[0].interval_score - 1
            text += f" ({abs(versus_har):.0%} {'better' if versus_har < 0 else 'worse'} than HAR's of candle ranges)"
        text += "."
    return Verdict(text, tone)


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


def change_rows(changes: Sequence[ModelChange], tz: str | None) -> list[dict[str, str]]:
    """latest.json's trail, newest first: when, what, from which version to which, who and why."""
    return [
        {
            "at": format_time(c.at, tz),
            "action": "rolled back" if c.action == "rolled-back" else "promoted",
            "change": f"{c.from_} → {c.version}" if c.from_ else c.version,
            "by": c.by,
            "reason": c.reason,
        }
        for c in changes
    ]


RULE_WHAT = {
    decision.SIGNAL: "holds the pair for the next candle when the forecast beats the threshold (the fees' round trip)",
    decision.SIGNAL_DRIFT: "the same, fed by persistence with the training drift",
    decision.RISK_TARGET: "holds the share the forecast's widest range says keeps the training volatility",
    decision.RISK_TARGET_EWMA: "the same, sized by EWMA volatility's range",
    decision.HOLD: "always holds the pair",
    decision.CASH: "never does",
}


def _against(found: Difference | None) -> str:
    if found is None:
        return "—"
    relative, low, high = found.relative
    p = decision.percent
    return f"{p(relative)} [{p(low)}, {p(high)}], p {found.mean_p:.2f}"


def _sharpe(found: Difference | None) -> str:
    return "—" if found is None else f"{found.sharpe:+.2f} [{found.sharpe_low:+.2f}, {found.sharpe_high:+.2f}]"


def rule_rows(metrics: DecisionMetrics) -> list[dict[str, str]]:
    """One row per decision rule: what it does, what it returned after fees, how much it held and paid, and how much
    more or less each of the two rules ends with than holding and than its twin (95% interval, p-value)."""
    rows = []
    for rule in decision.RULES:
        score = metrics.rules[rule]
        rows.append(
            {
                "rule": decision.RULE_NAMES[rule],
                "what": RULE_WHAT[rule],
                "return": decision.percent(math.expm1(score.total_log_return)),
                "invested": f"{score.invested:.0%}",
                "fees": f"{score.fees:.2%}",
                "vs_holding": _against(metrics.against_holding.get(rule)),
                "sharpe_vs_holding": _sharpe(metrics.against_holding.get(rule)),
                "vs_twin": _against(metrics.against_twin.get(rule)),
            }
        )
    return rows
