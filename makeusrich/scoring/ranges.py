"""Scoring forecast ranges, and the naive ranges they must beat. Pure numpy, no I/O.

At one hour the point forecast hardly beats persistence, but how far the price may move is forecastable
(volatility clusters). These functions say whether a model's quantiles are calibrated and sharp, next to two
honest baselines scored on the same points:

- climatology: the training returns' empirical quantiles, the same range at every origin;
- EWMA volatility (RiskMetrics, lambda 0.94): the training residuals' standardised quantiles scaled by the
  volatility known at each origin;
- EWMA of candle ranges: the same recursion on each candle's Garman-Klass variance (1980), which reads its open,
  high, low and close instead of the close alone;
- HAR of candle ranges (Corsi, 2009): the log of the next candle's range variance regressed on the logs of its
  means over the last candle, day, week and four weeks, fitted on training origins only.

The last three share one shape: a volatility known at each origin times the quantiles of the training returns
divided by the volatility known at their own origins.

Ranges are in log returns from the last close (``q`` has shape ``(n, levels)``, sorted by level). Conformalized
quantile regression (Romano, Patterson and Candes, 2019) widens or narrows a model's range by the amount its
validation points need, so that coverage holds on data it never saw.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from makeusrich.contract import central_ranges, level_problem
from makeusrich.scoring import bootstrap
from makeusrich.scoring.evaluate import finite_array, wilson_interval
from makeusrich.store import RangeCoverage, RangeMetrics, RangeScore, RatioInterval

RISKMETRICS_LAMBDA = 0.94
GARMAN_KLASS = 2.0 * math.log(2.0) - 1.0
DAY_MS = 86_400_000
NAIVE_RANGES = ("climatology", "ewma", "ewma_range", "har")
"""The naive ranges every model's ranges are scored beside, as RangeMetrics names them."""
NAIVE_RANGE_NAMES = {
    "climatology": "Climatology",
    "ewma": "EWMA volatility (RiskMetrics)",
    "ewma_range": "EWMA of candle ranges",
    "har": "HAR of candle ranges",
}
"""What people read for each naive range, in tables and on the dashboard."""
FloatArray = NDArray[np.float64]


def check_levels(levels: ArrayLike) -> FloatArray:
    """Quantile levels as the pair spec allows them: sorted, strictly inside (0, 1), the median included."""
    array = finite_array(levels, "levels")
    if array.ndim != 1:
        raise ValueError("levels must be a list")
    problem = level_problem(array.tolist())
    if problem:
        raise ValueError(problem)
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


def pinball_by_origin(actual: ArrayLike, quantiles: ArrayLike, levels: ArrayLike) -> FloatArray:
    """Each origin's pinball loss, the mean over its steps and levels: actual (n, h), quantiles (n, h, L).
    The series a Diebold-Mariano test compares."""
    y, q, tau = finite_array(actual, "actual"), finite_array(quantiles, "quantiles"), check_levels(levels)
    if y.ndim != 2 or q.shape != (*y.shape, tau.size):
        raise ValueError(f"quantiles must have shape {(*y.shape, tau.size)}, got {q.shape}")
    diff = y[:, :, None] - q
    return np.asarray(np.maximum(tau * diff, (tau - 1.0) * diff).mean(axis=(1, 2)))


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
    return float(np.mean(interval_scores(actual, low, high, alpha)))


def interval_scores(actual: ArrayLike, low: ArrayLike, high: ArrayLike, alpha: float) -> FloatArray:
    """Each point's interval score (see interval_score)."""
    y, lo, hi = finite_array(actual, "actual"), finite_array(low, "low"), finite_array(high, "high")
    if np.any(hi < lo):
        raise ValueError("a range's upper end lies below its lower end")
    below = np.maximum(lo - y, 0.0)
    above = np.maximum(y - hi, 0.0)
    return np.asarray((hi - lo) + (2.0 / alpha) * (below + above))


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


def ewma_through(values: ArrayLike, lam: float = RISKMETRICS_LAMBDA) -> FloatArray:
    """x[t] = lam * x[t-1] + (1 - lam) * v[t], started at v[0]: entry t knows values up to t."""
    v = finite_array(values, "values")
    out = np.empty_like(v)
    if v.size:
        out[0] = v[0]
    for t in range(1, v.size):
        out[t] = lam * out[t - 1] + (1.0 - lam) * v[t]
    return out


def ewma_variance(returns: ArrayLike, lam: float = RISKMETRICS_LAMBDA) -> FloatArray:
    """RiskMetrics variance known before each return: sigma2[t] = lam * sigma2[t-1] + (1 - lam) * r[t-1]^2,
    started at the first return's square. sigma2[t] uses returns up to t - 1 only."""
    r = finite_array(returns, "returns")
    if r.ndim != 1 or r.size == 0:
        raise ValueError("returns must be a non-empty series")
    return np.concatenate([r[:1] ** 2, ewma_through(r**2, lam)[:-1]])


def ewma_sigma(closes: ArrayLike, lam: float = RISKMETRICS_LAMBDA) -> FloatArray:
    """The RiskMetrics volatility known at each candle: entry t uses the log returns of closes up to t only
    (entry 0, before any return, is NaN)."""
    log_close = np.log(finite_array(closes, "closes"))
    sigma = np.full(log_close.size, np.nan)
    if log_close.size > 1:
        sigma[1:] = np.sqrt(ewma_through(np.diff(log_close) ** 2, lam))  # entry i + 1 knows returns up to it
    return sigma


def range_variance(ohlcv: ArrayLike) -> FloatArray:
    """Each candle's variance from its whole path: Garman and Klass's 0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2
    (never negative, since |ln(C/O)| <= ln(H/L)), plus the squared jump from the previous close to its open (none
    in a market that never closes, except across a gap in the candles; candle 0 has no previous close)."""
    candles = finite_array(ohlcv, "ohlcv")
    if candles.ndim != 2 or candles.shape[1] < 4 or (candles[:, :4] <= 0).any():
        raise ValueError("ohlcv must be positive candles [n, 4+] (open, high, low, close, ...)")
    spread = np.log(candles[:, 1] / candles[:, 2])
    body = np.log(candles[:, 3] / candles[:, 0])
    jump = np.zeros(len(candles))
    jump[1:] = np.log(candles[1:, 0] / candles[:-1, 3])
    return np.asarray(0.5 * spread**2 - GARMAN_KLASS * body**2 + jump**2)


def har_spans(step_ms: int) -> tuple[int, ...]:
    """A candle, a day, a week and four weeks, in candles of `step_ms` (each span once: at one day a candle is
    a day)."""
    if step_ms <= 0:
        raise ValueError(f"a candle's length must be positive, got {step_ms} ms")
    return tuple(sorted({max(1, round(days * DAY_MS / step_ms)) for days in (0, 1, 7, 28)}))


@dataclass(frozen=True)
class Har:
    """A HAR regression on candle range variances: the spans of its means, the floor added before taking logs (a
    candle whose high equals its low has none), and the coefficients (intercept first, then one per span, then one
    per extra regressor)."""

    spans: tuple[int, ...]
    floor: float
    coefficients: FloatArray

    def design(self, variance: ArrayLike, extra: ArrayLike | None = None) -> FloatArray:
        """Per candle: 1, the log of the mean variance over each span ending at it (fewer candles at the start of
        the series), and the extra regressors [n, k] if the regression has any: all known at that candle."""
        return har_design(variance, self.spans, self.floor, extra)

    def sigma(self, variance: ArrayLike, extra: ArrayLike | None = None) -> FloatArray:
        """The volatility of the next candle that the regression expects at each candle."""
        return np.sqrt(np.exp(self.design(variance, extra) @ self.coefficients))


def har_design(variance: ArrayLike, spans: tuple[int, ...], floor: float, extra: ArrayLike | None = None) -> FloatArray:
    v = finite_array(variance, "variance")
    sums = np.concatenate([[0.0], np.cumsum(v)])
    t = np.arange(1, v.size + 1)
    columns = [np.ones(v.size)]
    for span in spans:
        start = np.maximum(t - span, 0)
        columns.append(np.log((sums[t] - sums[start]) / (t - start) + floor))
    if extra is not None:
        more = finite_array(extra, "extra").reshape(v.size, -1)
        columns.extend(more.T)
    return np.column_stack(columns)


def fit_har(variance: ArrayLike, origins: ArrayLike, spans: tuple[int, ...], extra: ArrayLike | None = None) -> Har:
    """Least squares of log(variance[t + 1] + floor) on the design at origins t (training origins: the next
    candle of each lies in training too), with `extra` regressors [n, k] beside the spans' means if given. The
    floor is a thousandth of the mean variance there."""
    v = finite_array(variance, "variance")
    at = np.asarray(origins, dtype=np.int64)
    width = len(spans) + 1 + (0 if extra is None else np.asarray(extra).reshape(v.size, -1).shape[1])
    if at.size <= width or at.max() + 1 >= v.size or at.min() < 0:
        raise ValueError(f"a HAR regression with {width} coefficients needs more origins, each followed by a candle")
    floor = max(float(np.mean(v[at + 1])) * 1e-3, 1e-300)
    design = har_design(v, spans, floor, extra)[at]
    coefficients, *_ = np.linalg.lstsq(design, np.log(v[at + 1] + floor), rcond=None)
    return Har(spans=spans, floor=floor, coefficients=np.asarray(coefficients, dtype=np.float64))


def ewma_quantiles(train_returns: ArrayLike, train_sigma: ArrayLike, sigma: ArrayLike, levels: ArrayLike) -> FloatArray:
    """EWMA volatility ranges: at each origin its volatility `sigma` (known then) times the quantiles of the
    training returns divided by the volatility known at their own origins. Shape (len(sigma), levels)."""
    z = standardised_quantiles(train_returns, train_sigma, check_levels(levels))
    return finite_array(sigma, "sigma")[:, None] * z[None, :]


def standardised_quantiles(train_returns: ArrayLike, train_sigma: ArrayLike, probabilities: ArrayLike) -> FloatArray:
    """The quantiles of the training returns divided by the volatility known at their own origins: what EWMA
    volatility is multiplied by to make a range (where a volatility is known)."""
    returns, scale = finite_array(train_returns, "train_returns"), np.asarray(train_sigma, dtype=np.float64)
    usable = np.isfinite(scale) & (scale > 0)
    return np.asarray(
        np.quantile(returns[usable] / scale[usable], np.asarray(probabilities, dtype=np.float64)), dtype=np.float64
    )


def baseline_quantiles(
    train_returns: ArrayLike, levels: ArrayLike, volatility: Mapping[str, tuple[ArrayLike, ArrayLike]]
) -> dict[str, FloatArray]:
    """Each naive range's quantiles [n, h, L] at n origins, per step of the horizon: climatology's from the training
    origins' returns [m, h], and for each named volatility (its values at the training origins [m] and at the n
    origins [n]) the volatility known at each origin times the standardised training returns' quantiles."""
    returns = finite_array(train_returns, "train_returns")
    if not volatility:
        raise ValueError("name at least one volatility: it says at how many origins to give ranges")
    n = {np.asarray(at).size for _, at in volatility.values()}
    if len(n) != 1:
        raise ValueError("every volatility must be given at the same origins")
    shape = (n.pop(), returns.shape[1], len(check_levels(levels)))
    found = {"climatology": np.empty(shape), **{name: np.empty(shape) for name in volatility}}
    for step in range(returns.shape[1]):
        found["climatology"][:, step] = climatology_quantiles(returns[:, step], levels, shape[0])
        for name, (train_sigma, sigma) in volatility.items():
            found[name][:, step] = ewma_quantiles(returns[:, step], train_sigma, sigma, levels)
    return found


def conformal_margins(actual: ArrayLike, quantiles: ArrayLike, levels: ArrayLike) -> FloatArray:
    """Conformal margins [h, levels] for every central range and step, from calibration points: actual (n, h)
    and quantiles (n, h, levels). The median's margin is zero."""
    y, q, tau = finite_array(actual, "actual"), finite_array(quantiles, "quantiles"), check_levels(levels)
    if y.ndim != 2 or q.shape != (*y.shape, tau.size):
        raise ValueError(f"quantiles must have shape {(*y.shape, tau.size)}, got {q.shape}")
    margins = np.zeros((y.shape[1], tau.size))
    for low, high, nominal in central_ranges(tau.tolist()):
        for step in range(y.shape[1]):
            margins[step, low] = margins[step, high] = conformal_margin(
                y[:, step], q[:, step, low], q[:, step, high], 1.0 - nominal
            )
    return margins


def range_score(actual: ArrayLike, quantiles: ArrayLike, levels: ArrayLike) -> RangeScore:
    """Pinball loss and each central range's coverage, width and interval score, pooled over the horizon's
    steps: actual (n, h) and quantiles (n, h, levels), both in log returns from the last close."""
    y, q, tau = finite_array(actual, "actual"), finite_array(quantiles, "quantiles"), check_levels(levels)
    if y.ndim != 2 or q.shape != (*y.shape, tau.size):
        raise ValueError(f"quantiles must have shape {(*y.shape, tau.size)}, got {q.shape}")
    flat_y, flat_q = y.reshape(-1), q.reshape(-1, tau.size)
    ranges = []
    for low, high, nominal in central_ranges(tau.tolist()):
        lo, hi = flat_q[:, low], flat_q[:, high]
        hit = coverage(flat_y, lo, hi, nominal)
        ranges.append(
            RangeCoverage(
                nominal=nominal,
                rate=hit.rate,
                hits=hit.hits,
                n=hit.n,
                wilson_low=hit.low,
                wilson_high=hit.high,
                mean_width=float(np.mean(hi - lo)),
                interval_score=interval_score(flat_y, lo, hi, 1.0 - nominal),
            )
        )
    return RangeScore(pinball=pinball_loss(flat_y, flat_q, tau), ranges=ranges)


def range_metrics(
    actual: ArrayLike,
    model: ArrayLike,
    naive: Mapping[str, ArrayLike],
    levels: ArrayLike,
    mean_block: float | None = None,
) -> RangeMetrics:
    """The model's quantiles and the naive ranges (NAIVE_RANGES, climatology and EWMA required), scored on the same
    points (all (n, h, levels) log returns); with `mean_block` (a day of candles, say), also the widest range's
    interval score over each naive range's with its bootstrap interval."""
    unknown = set(naive) - set(NAIVE_RANGES)
    if unknown or not {"climatology", "ewma"} <= set(naive):
        raise ValueError(
            f"naive ranges are {', '.join(NAIVE_RANGES)} (climatology and ewma required), got {sorted(naive)}"
        )
    return RangeMetrics(
        levels=[float(v) for v in check_levels(levels)],
        model=range_score(actual, model, levels),
        **{name: range_score(actual, quantiles, levels) for name, quantiles in naive.items()},
        interval_ratios=None if mean_block is None else widest_ratios(actual, model, naive, levels, mean_block),
    )


def widest_ratios(
    actual: ArrayLike, model: ArrayLike, naive: Mapping[str, ArrayLike], levels: ArrayLike, mean_block: float
) -> dict[str, RatioInterval]:
    """The widest central range's interval score over each naive range's on the same points, with its 95% interval
    from a stationary block bootstrap of the origins (every step of an origin kept together): whether a ratio
    could be luck."""
    y, tau = finite_array(actual, "actual"), check_levels(levels)
    low, high, nominal = central_ranges(tau.tolist())[0]

    def per_origin(quantiles: ArrayLike) -> FloatArray:
        q = finite_array(quantiles, "quantiles")
        if q.shape != (*y.shape, tau.size):
            raise ValueError(f"quantiles must have shape {(*y.shape, tau.size)}, got {q.shape}")
        return np.asarray(interval_scores(y, q[..., low], q[..., high], 1.0 - nominal).reshape(len(y), -1).mean(1))

    found = bootstrap.ratio_intervals(per_origin(model), [per_origin(q) for q in naive.values()], mean_block)
    return {name: RatioInterval(ratio=r, low=lo, high=hi) for name, (r, lo, hi) in zip(naive, found, strict=True)}
