"""What a tracker's round decides for one pair, without I/O: which origins are due, how many candles that takes,
whether each origin is asked of the model now, waits, or becomes a gap and why, and the window a forecast reads.

The tracker (makeusrich.track.tracker) is the loop around these: it fetches, asks and writes what they decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from makeusrich.contract import iso_z
from makeusrich.market import find_gaps, last_closed_open_ms


@dataclass(frozen=True)
class Ask:
    """Ask the served model now: the origin's candle has closed, a model server is known, the deadline holds."""


@dataclass(frozen=True)
class Wait:
    """Not yet (the candle or the model server is not there): tried again while the deadline holds."""

    why: str


@dataclass(frozen=True)
class Gap:
    """Too late to be live: the origin is recorded with no forecast, and the reason."""

    reason: str


Decision = Ask | Wait | Gap


def newest_close(now: datetime, step: pd.Timedelta) -> pd.Timestamp:
    """The moment the newest candle closed, by the clock."""
    step_ms = int(step / pd.Timedelta(milliseconds=1))
    return pd.Timestamp(last_closed_open_ms(now, step_ms) + step_ms, unit="ms", tz="UTC")


def due_origins(last_recorded: pd.Timestamp | None, newest: pd.Timestamp, step: pd.Timedelta) -> list[pd.Timestamp]:
    """Origins to record now, oldest first: every close after the last recorded one up to `newest` (the newest
    close by the clock). A tracker's first round starts at `newest`: the past is filled only by a replay."""
    if last_recorded is None:
        return [newest]
    count = int((newest - last_recorded) // step)
    return [last_recorded + step * (i + 1) for i in range(max(count, 0))]


def deadline(origin: pd.Timestamp, step: pd.Timedelta, max_delay: timedelta) -> pd.Timestamp:
    """The last moment a forecast at `origin` counts as live: a quarter interval after its close, at most
    `max_delay`. A forecast made later would know more than a live one could have."""
    return origin + min(step / 4, pd.Timedelta(max_delay))


def candles_needed(
    origins: list[pd.Timestamp],
    oldest_unscored: pd.Timestamp | None,
    newest: pd.Timestamp,
    step: pd.Timedelta,
    window: int,
    most: int,
) -> int:
    """How many of the newest candles a round fetches: the model's window before the oldest due origin, and every
    candle since the oldest target still waiting to be scored (at most `most`, what the feed keeps)."""
    oldest = min([*origins, *([oldest_unscored] if oldest_unscored is not None else [])], default=newest)
    return min(most, window + int((newest - oldest) // step) + 2)


def decide(
    origin: pd.Timestamp,
    now: pd.Timestamp,
    due: pd.Timestamp,
    candle_closed: bool,
    serving_url: str | None,
    tried: str | None,
) -> Decision:
    """What to do with a due origin now. Before its deadline: ask, or wait for what is missing. After it: a gap,
    with the reason the last try gave (`tried`), else why nobody tried."""
    when = iso_z(origin.to_pydatetime())
    if now <= due:
        if not candle_closed:
            return Wait(f"the candle closing at {when} has not come yet")
        if serving_url is None:
            return Wait("the pair has no model server URL yet (no InferenceService is ready)")
        return Ask()
    if tried:
        return Gap(tried)
    return Gap(
        "the tracker was not running at that close" if candle_closed else f"the candle closing at {when} never came"
    )


def counts_yet(first_ever: bool, recorded_this_round: bool) -> bool:
    """Whether a wait or a gap counts: a pair's record starts with its first forecast, so until then a failure is
    neither recorded as a gap nor retried before the next close."""
    return not first_ever or recorded_this_round


def window_problem(candles: pd.DataFrame, step: pd.Timedelta) -> str | None:
    """Why a window cannot be forecast (a candle inside it is missing), or None."""
    gaps = find_gaps(candles["open_time"], int(step / pd.Timedelta(milliseconds=1)))
    if gaps:
        first = (gaps[0].start + step).to_pydatetime()
        return f"{gaps[0].missing} candle(s) closing from {iso_z(first)} on are missing from the window"
    return None


def forecast_window(
    candles: pd.DataFrame, origin: pd.Timestamp, step: pd.Timedelta, window: int
) -> tuple[pd.DataFrame | None, str | None]:
    """The `window` candles a forecast at `origin` reads (the last one closing at `origin`), or None and why not."""
    found = candles[candles["open_time"] + step <= origin].tail(window)
    if len(found) < window:
        return None, f"only {len(found)} of the model's {window} candles are at hand"
    if (problem := window_problem(found, step)) is not None:
        return None, problem
    return found, None


# No forecast of the next candles lies further than this factor from the last close: the largest hourly move of
# BTCUSDT since 2017 is under 20%, and a daily one under 50%; a model that says more is broken.
PLAUSIBLE_FACTOR = 10.0


def answer_problem(
    forecast: np.ndarray,
    quantiles: np.ndarray | None,
    horizon: int,
    levels: Sequence[float] | None,
    last_close: float,
) -> str | None:
    """Why a served answer cannot be this version's forecast, or None: its steps and levels against the version's
    metadata, prices that are finite, positive and within PLAUSIBLE_FACTOR of the last close, and ranges that do
    not cross. The tracker checks every answer before it records it: a server need not check models itself
    (KServe's Triton runtime does not), and one impossible row would poison every window it falls in."""
    point = np.asarray(forecast, dtype=np.float64)
    if point.shape != (horizon,):
        return f"the model answered {point.size} steps where its metadata says {horizon}"
    low, high = last_close / PLAUSIBLE_FACTOR, last_close * PLAUSIBLE_FACTOR
    if (problem := _price_problem(point, low, high, last_close, "forecast")) is not None:
        return problem
    if quantiles is None:
        return None
    q = np.asarray(quantiles, dtype=np.float64)
    if levels is None or q.shape != (horizon, len(levels)):
        return f"the model answered quantiles of shape {list(q.shape)} where its metadata names {len(levels or ())}"
    if (problem := _price_problem(q, low, high, last_close, "range")) is not None:
        return problem
    if (np.diff(q, axis=1) < 0).any():
        return "the model answered ranges whose quantiles cross (a lower level above a higher one)"
    return None


def _price_problem(values: np.ndarray, low: float, high: float, last_close: float, what: str) -> str | None:
    if not np.isfinite(values).all():
        return f"the model answered a {what} that is not a finite number"
    wild = values[(values < low) | (values > high)]
    if wild.size:
        return (
            f"the model answered a {what} of {wild[0]:.6g}, more than {PLAUSIBLE_FACTOR:g}x away from the last close "
            f"{last_close:.6g}"
        )
    return None
