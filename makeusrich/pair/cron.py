"""Retraining schedules exactly as Kubernetes CronJobs read them: a pair valid here is valid in the cluster and
fires at the same times on one machine (croniter computes the times, after our own check of the shape)."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from itertools import pairwise

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
# A loose shape check for the API server; the exact check (valid ranges, fires at all) is `valid_cron`.
CRON_PATTERN = r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|(\S+\s+){4}\S+)$"

_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTHS = {name: i for i, name in enumerate(_MONTH_NAMES, start=1)}
_DAYS = {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
# Kubernetes parses a CronJob's schedule with robfig/cron's standard parser: these fields and bounds, names for
# months and days, and per field a list of `*`, `?`, N, N-M, each with an optional /step. Nothing else.
_CRON_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 6, _DAYS),
)
_CRON_GRAMMAR = "Kubernetes takes numbers, names (JAN, MON), *, ?, ranges a-b, steps /n and lists; not L, W or #"


def _cron_value(text: str, field: tuple[str, int, int, dict[str, int]]) -> int:
    name, low, high, names = field
    if text.lower() in names:
        return names[text.lower()]
    if not text.isdigit():
        raise ValueError(f"{name} {text!r} is not a number or a name ({_CRON_GRAMMAR})")
    if not low <= int(text) <= high:
        raise ValueError(f"{name} {int(text)} is outside {low}-{high}")
    return int(text)


def check_cron_field(part: str, field: tuple[str, int, int, dict[str, int]]) -> None:
    """One field of a schedule exactly as Kubernetes accepts it; ValueError says what is wrong."""
    for item in part.split(","):
        base, slash, step = item.partition("/")
        if slash and (not step.isdigit() or int(step) < 1):
            raise ValueError(f"{field[0]} step {step!r} is not a whole number of at least 1")
        if base in ("*", "?"):
            continue
        first, dash, last = base.partition("-")
        start = _cron_value(first, field)
        if dash and _cron_value(last, field) < start:
            raise ValueError(f"{field[0]} range {base!r} runs backwards")


def croniter_form(schedule: str) -> str:
    """A valid schedule as croniter reads it (`?` means `*` to Kubernetes): what computes the next run here."""
    return " ".join("*" if part == "?" else part for part in schedule.split(" "))


def next_run(schedule: str, after: datetime) -> datetime:
    """When a valid schedule fires next after `after`, in UTC as the CronJob controller counts by default."""
    found: datetime = croniter(croniter_form(schedule), after.astimezone(UTC)).get_next(datetime)
    return found


def longest_gap_s(schedule: str, after: datetime, runs: int = 64) -> float:
    """The longest wait, in seconds, between two runs among the next `runs` of a valid schedule: how old the
    newest training may be while the schedule is kept (31 days for a monthly one, 3 for one on weekdays)."""
    times = croniter(croniter_form(schedule), after.astimezone(UTC))
    runs_at: list[datetime] = [times.get_next(datetime) for _ in range(runs)]
    return max((b - a).total_seconds() for a, b in pairwise(runs_at))


@functools.lru_cache(maxsize=4096)
def valid_cron(expression: str) -> str:
    """A schedule exactly as Kubernetes CronJobs accept it (five fields, or a macro), that fires at least once
    in four years: a pair valid here is valid in the cluster and fires at the same times on one machine. Cached:
    every reconcile parses its pair again, and croniter's check is most of a parse's time."""
    text = " ".join(expression.split())
    if text.startswith("@"):
        if text not in CRON_MACROS:
            raise ValueError(f"unknown cron macro {text!r}; use one of {', '.join(CRON_MACROS)}")
        return text
    parts = text.split(" ")
    if len(parts) != 5:
        raise ValueError(f"cron expression {text!r} must have 5 fields: minute hour day-of-month month day-of-week")
    for part, field in zip(parts, _CRON_FIELDS, strict=True):
        try:
            check_cron_field(part, field)
        except ValueError as exc:
            raise ValueError(f"cron expression {text!r} is not valid: {exc}") from None
    start = datetime(2025, 1, 1, tzinfo=UTC)
    try:
        schedule = croniter(croniter_form(text), start)
    except (CroniterBadCronError, ValueError, KeyError) as exc:
        raise ValueError(f"cron expression {text!r} is not valid: {exc}") from None
    try:
        nxt = schedule.get_next(datetime)
    except CroniterBadDateError:
        raise ValueError(f"cron expression {text!r} never fires (no such date)") from None
    if (nxt - start).days > 366 * 4:
        raise ValueError(f"cron expression {text!r} fires less than once in four years")
    return text
