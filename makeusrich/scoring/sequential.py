"""Decisions on live evidence that may be looked at after every scored forecast without inflating their error.

Re-running a fixed-sample test each hour (a 30-day DM test, a coverage threshold) raises false alarms with every
look: two equally good forecasters fall "significantly" apart within 90 days about four times in ten. Instead each
decision here is a Shiryaev-Roberts e-detector (Shin, Ramdas and Rinaldo, "E-detectors: a nonparametric framework
for sequential change detection", NEJSDS 2024, arXiv:2203.03532), built from betting e-values (Waudby-Smith and
Ramdas, JRSS-B 2024; for comparing forecasters, Choe and Ramdas, Operations Research 2024):

- each scored origin gives one bounded number x_t, the *evidence*, whose mean given the past is at most 0 while
  the null holds (the served model is no worse than its comparator, or its range covers as promised);
- for a fixed grid of bets lambda, E_t = 1 + lambda * x_t is an e-value (non-negative, mean at most 1 under the null);
- R_t = (R_{t-1} + 1) * E_t, R_0 = 0, averaged over the grid: the sum over every possible change time j of the
  wealth of a bettor who started betting at j. Under the null R_t - t is a supermartingale, so by Ville's
  inequality (1939) P(R_t >= N / alpha for some t <= N) <= alpha. With N the candles of 90 days, each decision
  raises a false alarm within 90 days with probability at most alpha, however often it is checked.

Nothing here assumes independence, normality or a variance: only that x is bounded and its conditional mean is at
most 0 under the null. Losses are divided by the volatility known at the origin (RiskMetrics EWMA), so that a
volatile week does not drown the rest, and capped at CAP volatilities: the decisions compare these capped,
volatility-scaled losses. Volatility clustering and fat tails change how fast a change is found, not the error
rate (bench/alarm_bench.py measures both on GARCH(1,1)-t returns fitted to the bundled candles).

An alarm is on from the first crossing of the threshold until the statistic falls below threshold / CLEAR_FACTOR
(hysteresis: a decision does not flap, and a retrain is not started twice for one episode). A decision's path
starts anew with each served version's run; a restart never raises R, so the 90-day bound holds across restarts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from numpy.typing import ArrayLike, NDArray

from makeusrich.scoring.ranges import RISKMETRICS_LAMBDA, check_levels

FloatArray = NDArray[np.float64]

CAP = 3.0
"""Losses above this many volatilities count as this many: the evidence must be bounded to bet on it."""
DEGRADED_MARGIN = 0.02
"""Degraded means worse than the baseline by more than this share of its loss: 2% is within noise at one hour."""
ALPHA = 0.01
"""Each decision's chance of any false alarm within PERIOD; five decisions stay within 5% together."""
PERIOD = timedelta(days=90)
CLEAR_FACTOR = 100.0
"""An alarm clears once its statistic falls this many times below the threshold."""
WARM_RETURNS = 24
"""The volatility scale is trusted after this many returns; earlier origins give no evidence."""
GRID = 5
"""Bets per detector, halving from the boldest one allowed."""
MIN_SCALE = 1e-6

DEGRADED_POINT, DEGRADED_RANGE, DEGRADED_COVERAGE = "degraded-point", "degraded-range", "degraded-coverage"
ROLLBACK_POINT, ROLLBACK_RANGE = "rollback-point", "rollback-range"
DECISIONS = (DEGRADED_POINT, DEGRADED_RANGE, DEGRADED_COVERAGE, ROLLBACK_POINT, ROLLBACK_RANGE)


def checks_in(period: timedelta, interval: timedelta) -> int:
    """How many scored forecasts a period holds at one per candle: the N of the threshold N / alpha."""
    return max(1, int(period / interval))


def threshold(checks: int, alpha: float = ALPHA) -> float:
    """The statistic at which a decision fires: its false-alarm chance over `checks` forecasts is at most alpha."""
    return checks / alpha


def volatility_scale(closes: ArrayLike, consecutive: ArrayLike) -> FloatArray:
    """The RiskMetrics volatility known at each origin, from the closes at consecutive origins: `consecutive[i]`
    says that origin i follows origin i - 1 by one candle (a hole's return spans several candles and is left
    out). NaN until WARM_RETURNS returns have been seen. Entry i uses closes up to origin i only."""
    log_close = np.log(np.asarray(closes, dtype=np.float64))
    scale = np.full(log_close.size, np.nan)
    step = np.diff(log_close)
    at = 1 + np.flatnonzero(np.asarray(consecutive, dtype=bool)[1:] & np.isfinite(step))
    if at.size == 0:
        return scale
    variance = _ewma(step[at - 1] ** 2, RISKMETRICS_LAMBDA)
    warm = np.arange(1, at.size + 1) >= WARM_RETURNS
    scale[at[warm]] = np.maximum(np.sqrt(variance[warm]), MIN_SCALE)
    return scale


def _ewma(squares: FloatArray, lam: float, chunk: int = 512) -> FloatArray:
    """v_0 = s_0, v_k = lam v_{k-1} + (1 - lam) s_k, in closed form a chunk at a time (lam^-chunk stays finite):
    v_{a+k} = lam^k (v_a + (1 - lam) sum_{j=1..k} lam^-j s_{a+j})."""
    out = np.empty_like(squares)
    out[0] = squares[0]
    for start in range(1, squares.size, chunk):
        part = squares[start : start + chunk]
        k = np.arange(1, part.size + 1, dtype=np.float64)
        out[start : start + part.size] = lam**k * (out[start - 1] + (1.0 - lam) * np.cumsum(lam ** (-k) * part))
    return out


def point_loss(actual: ArrayLike, forecast: ArrayLike, scale: ArrayLike) -> FloatArray:
    """|log(actual / forecast)| in volatilities, capped at CAP."""
    miss = np.abs(np.log(np.asarray(actual, dtype=np.float64) / np.asarray(forecast, dtype=np.float64)))
    return np.minimum(miss / np.asarray(scale, dtype=np.float64), CAP)


def range_loss(
    actual: ArrayLike, last_close: ArrayLike, quantiles: ArrayLike, levels: ArrayLike, scale: ArrayLike
) -> FloatArray:
    """The mean pinball loss of quantile prices (..., levels) in log returns from the last close, in volatilities,
    capped: one loss per origin (any leading shape, as `actual`)."""
    close = np.asarray(last_close, dtype=np.float64)
    y = np.log(np.asarray(actual, dtype=np.float64) / close)[..., None]
    q = np.log(np.asarray(quantiles, dtype=np.float64) / close[..., None])
    tau = check_levels(levels)
    pinball = np.mean(np.maximum(tau * (y - q), (tau - 1.0) * (y - q)), axis=-1)
    return np.asarray(np.minimum(pinball / np.asarray(scale, dtype=np.float64), CAP), dtype=np.float64)


def outside(actual: ArrayLike, low: ArrayLike, high: ArrayLike) -> FloatArray:
    """1 where the close fell outside the range, else 0."""
    y = np.asarray(actual, dtype=np.float64)
    return ((y < np.asarray(low, dtype=np.float64)) | (y > np.asarray(high, dtype=np.float64))).astype(np.float64)


@dataclass(frozen=True)
class Detector:
    """One decision's bets: evidence x lies in [-loss_bound, gain_bound], and every bet keeps 1 + lambda x >= 0."""

    name: str
    bets: tuple[float, ...]

    @classmethod
    def for_losses(cls, name: str, margin: float = 0.0) -> Detector:
        """x = served loss - (1 + margin) * comparator loss, both in [0, CAP]."""
        boldest = 0.9 / ((1.0 + margin) * CAP)
        return cls(name, tuple(boldest / 2**k for k in range(GRID)))

    @classmethod
    def for_misses(cls, name: str, promised_miss: float) -> Detector:
        """x = miss - promised_miss, a miss being 0 or 1."""
        boldest = 0.4 / promised_miss
        return cls(name, tuple(boldest / 2**k for k in range(GRID)))


def log_wealth(evidence: ArrayLike, bets: tuple[float, ...], start: ArrayLike | None = None) -> FloatArray:
    """log R_t of each bet after each entry of the last axis (other axes are independent runs): shape (bets, ...).
    `start` is each bet's log R before the first entry (None: R = 0, nothing seen), so a path can be continued.

    Closed form of the recursion: with P_t the product of E_1..E_t, R_t = P_t * (R_0 + sum_{j<=t} 1 / P_{j-1})."""
    x = np.asarray(evidence, dtype=np.float64)
    lam = np.asarray(bets, dtype=np.float64).reshape((-1,) + (1,) * x.ndim)
    log_e = np.log1p(lam * x)  # (bets, ..., t)
    log_p = np.cumsum(log_e, axis=-1)
    before = np.concatenate([np.zeros((*log_p.shape[:-1], 1)), log_p[..., :-1]], axis=-1)
    sums = np.logaddexp.accumulate(-before, axis=-1)
    if start is not None:
        sums = np.logaddexp(np.asarray(start, dtype=np.float64).reshape(lam.shape), sums)
    return np.asarray(log_p + sums, dtype=np.float64)


def average(log_r: ArrayLike) -> FloatArray:
    """The detector's statistic from its bets' log R (first axis): their mean, in log space."""
    paths = np.asarray(log_r, dtype=np.float64)
    return np.asarray(np.logaddexp.reduce(paths, axis=0) - math.log(paths.shape[0]), dtype=np.float64)


def log_statistic(evidence: ArrayLike, bets: tuple[float, ...]) -> FloatArray:
    """log R_t after each entry of the last axis, averaged over the bets, from nothing seen."""
    return average(log_wealth(evidence, bets))


@dataclass(frozen=True)
class Alarm:
    """Where a decision stands after its latest evidence."""

    name: str
    on: bool
    statistic: float  # R_t now
    threshold: float
    checks: int  # scored forecasts used
    since: int | None  # index of the evidence at which the current alarm fired
    peak: float  # the largest R_t so far


def alarm_state(name: str, log_r: ArrayLike, limit: float, was_on: bool = False) -> Alarm:
    """The alarm after a statistic's path: on from a crossing of `limit` until it falls below limit/CLEAR_FACTOR.
    `was_on`: the alarm was on before this path (a continued path); when it is still on without a new crossing,
    `since` is None (the caller keeps the origin it fired at)."""
    path = np.asarray(log_r, dtype=np.float64)
    if path.size == 0:
        return Alarm(name, was_on, 0.0, limit, 0, None, 0.0)
    high, low = math.log(limit), math.log(limit / CLEAR_FACTOR)
    crossed = np.flatnonzero(path >= high)
    cleared = np.flatnonzero(path < low)
    if cleared.size:
        on = crossed.size > 0 and crossed[-1] > cleared[-1]
        after = crossed[crossed > cleared[-1]]
    else:
        on = was_on or crossed.size > 0
        after = crossed if not was_on else crossed[:0]
    since = int(after[0]) if on and after.size else None
    return Alarm(name, bool(on), math.exp(path[-1]), limit, int(path.size), since, math.exp(float(path.max())))


def decide(detector: Detector, evidence: ArrayLike, limit: float) -> Alarm:
    x = np.asarray(evidence, dtype=np.float64)
    x = x[np.isfinite(x)]
    return alarm_state(detector.name, log_statistic(x, detector.bets), limit)
