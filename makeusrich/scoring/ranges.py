"""Scoring forecast ranges, and the naive ranges they must beat. Pure numpy, no I/O.

At one hour the point forecast hardly beats persistence, but how far the price may move is forecastable
(volatility clusters). These functions say whether a model's quantiles are calibrated and sharp, next to two
honest baselines scored on the same points:

- climatology: the training returns' empirical quantiles, the same range at every origin;
- EWMA volatility (RiskMetrics, lambda 0.94): the training residuals' standardised quantiles scaled by the
  volatility known at each origin.

Ranges are in log returns from the last close (``q`` has shape ``(n, levels)``, sorted by level). Conformalized
quantile regression (Romano, Patterson and Candes, 2019) widens or narrows a model's range by the amount its
validation points need, so that coverage holds on data it never saw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from makeusrich.scoring.evaluate import finite_array, normal_two_sided_p, wilson_interval

RISKMETRICS_LAMBDA = 0.94
FloatArray = NDArray[np.float64]


def check_levels(levels: ArrayLike) -> FloatArray:
    """Quantile levels as the pair spec allows them: sorted, strictly inside (0, 1), the median included."""
    array = finite_array(levels, "levels")
    if array.ndim != 1 or array.size == 0:
        raise ValueError("levels must be a non-empty list")
    if np.any(array <= 0) or np.any(array >= 1):
        raise ValueError(f"levels must lie strictly between 0 and 1, got {array.tolist()}")
    if np.any(np.diff(array) <= 0):
        raise ValueError(f"levels must be sorted and distinct, got {array.tolist()}")
    if not np.any(np.isclose(array, 0.5)):
        raise ValueError("levels must include 0.5: the median is the point forecast")
    return array


def pinball_loss(actual: ArrayLike, quantiles: ArrayLike, levels: ArrayLike) -> float:
    """Mean over points and levels of the quantile (pinball) loss: the proper score a quantile minimises."""
    y = finite_array(actual, "actual")
    q = finite_array(quantiles, "quantiles")
    tau = check_levels(levels)
    if q.shape != (y.size, tau.size):
        raise ValueError(f"quantiles must have shape ({y.size}, {tau.size}), got {q.shape}")
    diff = y[:, None] - q
    return float(np.mean(np.maximum(tau * diff, (tau - 1.0) * diff)))


@dataclass(frozen=True)
class Coverage:
    """How often the actual value fell inside a range, with a 95% binomial (Wilson) interval."""

    nominal: float
    rate: float
    hits: int
    n: int
    low: float
    high: float

    @property
    def calibrated(self) -> bool:
        """Whether the nominal coverage lies inside the interval: the range is not shown to be off."""
        return self.low <= self.nominal <= self.high


def coverage(actual: ArrayLike, low: ArrayLike, high: ArrayLike, nominal: float) -> Coverage:
    y, lo, hi = finite_array(actual, "actual"), finite_array(low, "low"), finite_array(high, "high")
    if not (y.shape == lo.shape == hi.shape) or y.ndim != 1 or y.size == 0:
        raise ValueError("actual, low and high must be non-empty and of one shape (n,)")
    hits = int(np.count_nonzero((y >= lo) & (y <= hi)))
    interval = wilson_interval(hits, y.size)
    return Coverage(nominal, hits / y.size, hits, int(y.size), *interval)


def interval_score(actual: ArrayLike, low: ArrayLike, high: ArrayLike, alpha: float) -> float:
    """The interval (Winkler) score of central (1 - alpha) ranges, mean over points: the width, plus 2/alpha
    times how far the actual value fell outside. Lower is better; it rewards sharp ranges that still cover."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    y, lo, hi = finite_array(actual, "actual"), finite_array(low, "low"), finite_array(high, "high")
    if np.any(hi < lo):
        raise ValueError("a range's upper end lies below its lower end")
    below = np.maximum(lo - y, 0.0)
    above = np.maximum(y - hi, 0.0)
    return float(np.mean((hi - lo) + (2.0 / alpha) * (below + above)))


def conformal_margin(actual: ArrayLike, low: ArrayLike, high: ArrayLike, alpha: float) -> float:
    """How much to widen (or, when negative, narrow) a (1 - alpha) range on each side so that it covers the
    calibration points as it should: the ceil((n + 1)(1 - alpha))-th smallest conformity score
    max(low - y, y - high). Fitted on validation only, it leaves the test split untouched."""
    y, lo, hi = finite_array(actual, "actual"), finite_array(low, "low"), finite_array(high, "high")
    n = y.size
    if n == 0 or not 0 < alpha < 1:
        raise ValueError("need calibration points and alpha in (0, 1)")
    scores = np.sort(np.maximum(lo - y, y - hi))
    rank = math.ceil((n + 1) * (1.0 - alpha))
    if rank > n:
        raise ValueError(f"{n} calibration points are too few for a {1 - alpha:.0%} range")
    return float(scores[rank - 1])


def climatology_quantiles(train_returns: ArrayLike, levels: ArrayLike, n: int) -> FloatArray:
    """The training returns' empirical quantiles, the same at each of `n` origins: shape (n, levels)."""
    returns = finite_array(train_returns, "train_returns")
    values = np.quantile(returns, check_levels(levels))
    return np.tile(values, (n, 1))


def ewma_variance(returns: ArrayLike, lam: float = RISKMETRICS_LAMBDA) -> FloatArray:
    """RiskMetrics variance known before each return: sigma2[t] = lam * sigma2[t-1] + (1 - lam) * r[t-1]^2,
    started at the first return's square. sigma2[t] uses returns up to t - 1 only."""
    r = finite_array(returns, "returns")
    if r.ndim != 1 or r.size == 0:
        raise ValueError("returns must be a non-empty series")
    variance = np.empty_like(r)
    variance[0] = r[0] ** 2
    for t in range(1, r.size):
        variance[t] = lam * variance[t - 1] + (1.0 - lam) * r[t - 1] ** 2
    return variance


def ewma_quantiles(
    train_returns: ArrayLike, sigma: ArrayLike, levels: ArrayLike, lam: float = RISKMETRICS_LAMBDA
) -> FloatArray:
    """EWMA volatility ranges: at each origin its volatility `sigma` (known then) times the quantiles of the
    training returns divided by their own EWMA volatility. Shape (len(sigma), levels)."""
    returns = finite_array(train_returns, "train_returns")
    train_sigma = np.sqrt(ewma_variance(returns, lam))
    usable = train_sigma > 0
    standardised = returns[usable] / train_sigma[usable]
    z = np.quantile(standardised, check_levels(levels))
    return finite_array(sigma, "sigma")[:, None] * z[None, :]


def pesaran_timmermann(actual: ArrayLike, predicted: ArrayLike) -> float | None:
    """Two-sided p-value of the Pesaran-Timmermann (1992) test that predicted signs carry no information about
    actual signs. Zero moves are left out; None when too few remain or either side never changes sign."""
    a, p = np.sign(finite_array(actual, "actual")), np.sign(finite_array(predicted, "predicted"))
    kept = (a != 0) & (p != 0)
    a, p = a[kept] > 0, p[kept] > 0
    n = a.size
    if n < 2:
        return None
    hit = float(np.mean(a == p))
    pa, pp = float(np.mean(a)), float(np.mean(p))
    expected = pa * pp + (1 - pa) * (1 - pp)
    var_hit = expected * (1 - expected) / n
    var_expected = (
        (2 * pp - 1) ** 2 * pa * (1 - pa) / n
        + (2 * pa - 1) ** 2 * pp * (1 - pp) / n
        + 4 * pa * pp * (1 - pa) * (1 - pp) / n**2
    )
    spread = var_hit - var_expected
    if spread <= 0:
        return None
    return normal_two_sided_p((hit - expected) / math.sqrt(spread))
