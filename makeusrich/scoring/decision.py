"""Would following the forecasts have made money, after fees? Two rules turn each forecast into a spot position for
the next candle, and their returns are scored beside buy-and-hold, cash and each rule's baseline twin, with a
stationary block bootstrap saying whether a difference is more than luck. Pure numpy (and the standard library's
normal quantile), so the test split, every walk-forward fold, the replay and the live record use the same numbers.

- signal: hold the pair (1) for the next candle when the forecast's expected log return, log(forecast / last close),
  exceeds a threshold (by default the round-trip fee), else hold cash (0). Spot only: no leverage, no shorting.
- risk target: hold min(cap, sigma_target / sigma_t) of the pair, sigma_t being the one-candle volatility a central
  range implies (its log width over twice the normal quantile of its level), sigma_target the training split's
  realised one-candle volatility, so that its risk is comparable with holding (volatility-managed portfolios:
  Moreira and Muir, Journal of Finance 2017).

Positions are held over one candle each: position[t] earns the log return log_returns[t] (from origin t to the next
close). Before the first candle the holder is in cash, and each change of position pays the fee on the fraction
traded, |position[t] - position[t - 1]|; a position still held after the last candle is not sold (no closing fee).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from statistics import NormalDist

import numpy as np
from numpy.typing import ArrayLike, NDArray

from makeusrich.pair import DecisionSpec

FloatArray = NDArray[np.float64]

CAP = 1.0
"""The largest fraction of the pair the risk-target rule holds: no leverage (`spec.decision.cap`'s bound)."""
RESAMPLES = 2000
BOOTSTRAP_CELLS = 2_000_000
"""Resampled candles drawn at once: the bootstrap's memory stays bounded however long the series."""
YEAR = timedelta(days=365.25)


def round_trip(fee_bps: float) -> float:
    """The log return a trade in and out must beat to pay its fees: the signal rule's default threshold."""
    return -2.0 * math.log1p(-fee_bps / 10_000.0)


def per_year(interval: timedelta) -> float:
    """Candles in a year: what annualises a mean and a volatility per candle."""
    return YEAR / interval


def signal_positions(forecast: ArrayLike, last_close: ArrayLike, threshold: float) -> FloatArray:
    """1 where log(forecast / last close) exceeds `threshold`, else 0 (also where the forecast is not a number)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.log(np.asarray(forecast, dtype=np.float64) / np.asarray(last_close, dtype=np.float64))
    return (np.nan_to_num(expected, nan=-np.inf) > threshold).astype(np.float64)


def range_sigma(low: ArrayLike, high: ArrayLike, level: float) -> FloatArray:
    """The one-candle volatility a central range at `level` (0.9 for 5%..95%) implies under a normal law: its log
    width divided by twice the normal quantile of (1 + level) / 2. NaN where the range is not a positive width."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"a central range's level lies between 0 and 1, got {level}")
    z = NormalDist().inv_cdf((1.0 + level) / 2.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        width = np.log(np.asarray(high, dtype=np.float64)) - np.log(np.asarray(low, dtype=np.float64))
    return np.where(width > 0, width / (2.0 * z), np.nan)


def range_of(last_close: ArrayLike, sigma: ArrayLike, level: float) -> tuple[FloatArray, FloatArray]:
    """The central range at `level` a normal law of log returns with volatility `sigma` gives around the last close:
    what EWMA volatility says, put in the form of a model's range (so both go through `range_sigma` alike)."""
    z = NormalDist().inv_cdf((1.0 + level) / 2.0)
    close, s = np.asarray(last_close, dtype=np.float64), np.asarray(sigma, dtype=np.float64)
    return close * np.exp(-z * s), close * np.exp(z * s)


def risk_target_positions(sigma: ArrayLike, sigma_target: float, cap: float = CAP) -> FloatArray:
    """min(cap, sigma_target / sigma): 0 where no volatility is known (nothing to size a position by)."""
    s = np.asarray(sigma, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.minimum(cap, sigma_target / s)
    return np.where(np.isfinite(s) & (s > 0), fraction, 0.0)


@dataclass(frozen=True)
class Returns:
    """What holding `positions` earned, candle by candle, after fees."""

    log_returns: FloatArray  # of the whole holding (pair and cash), after the fee paid before the candle
    positions: FloatArray
    fees: FloatArray  # the fee paid before each candle, as a share of the holding


def net_returns(positions: ArrayLike, log_returns: ArrayLike, fee_bps: float) -> Returns:
    """Hold `positions[t]` of the pair over the candle whose log return is `log_returns[t]`, the rest in cash, paying
    `fee_bps` on the fraction traded into each position."""
    p = np.asarray(positions, dtype=np.float64)
    r = np.asarray(log_returns, dtype=np.float64)
    if p.shape != r.shape or p.ndim != 1:
        raise ValueError(f"positions and log returns must be two series of one length, got {p.shape} and {r.shape}")
    if not (np.isfinite(p).all() and np.isfinite(r).all()):
        raise ValueError("positions and log returns must be finite numbers")
    fees = np.abs(np.diff(p, prepend=0.0)) * fee_bps / 10_000.0
    return Returns(np.log1p(p * np.expm1(r) - fees), p, fees)


@dataclass(frozen=True)
class RuleScore:
    """One rule's returns in the numbers a trader reads. Annual figures assume the candles run all year."""

    total_log_return: float
    annual_return: float  # exp(mean log return per candle * candles a year) - 1
    annual_volatility: float
    sharpe: float  # annualised, against cash (0 where the returns do not vary: cash)
    max_drawdown: float  # the largest fall from a peak of the holding's value, as a share of the peak
    turnover: float  # the fractions traded, summed
    fees: float  # the fees paid, summed as shares of the holding
    invested: float  # the share of candles with a position in the pair
    candles: int


def sharpe(log_returns: ArrayLike, candles_a_year: float) -> FloatArray:
    """The annualised Sharpe ratio of each series along the last axis; 0 where a series does not vary."""
    r = np.asarray(log_returns, dtype=np.float64)
    sd = r.std(axis=-1, ddof=1) if r.shape[-1] > 1 else np.zeros(r.shape[:-1])
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = r.mean(axis=-1) / sd * math.sqrt(candles_a_year)
    return np.asarray(np.where(sd > 1e-15, ratio, 0.0), dtype=np.float64)


def rule_score(returns: Returns, candles_a_year: float) -> RuleScore:
    r = returns.log_returns
    if r.size == 0:
        raise ValueError("no candles to score")
    wealth = np.cumsum(r)
    drawdown = 1.0 - np.exp(wealth - np.maximum.accumulate(np.maximum(wealth, 0.0)))
    return RuleScore(
        total_log_return=float(wealth[-1]),
        annual_return=float(math.expm1(r.mean() * candles_a_year)),
        annual_volatility=float(r.std(ddof=1) * math.sqrt(candles_a_year)) if r.size > 1 else 0.0,
        sharpe=float(sharpe(r, candles_a_year)),
        max_drawdown=float(drawdown.max()),
        turnover=float(np.abs(np.diff(returns.positions, prepend=0.0)).sum()),
        fees=float(returns.fees.sum()),
        invested=float(np.mean(returns.positions > 0)),
        candles=int(r.size),
    )


def stationary_bootstrap(n: int, mean_block: float, resamples: int, rng: np.random.Generator) -> NDArray[np.int64]:
    """Indices of `resamples` stationary-bootstrap series of length n (Politis and Romano, JASA 1994): blocks of
    consecutive candles (wrapping around), each of a geometric length with mean `mean_block`, so that the
    resampled returns keep the dependence of nearby candles."""
    if n < 1 or mean_block < 1 or resamples < 1:
        raise ValueError("a bootstrap needs candles, a mean block of at least one candle, and resamples")
    starts = rng.random((resamples, n)) < 1.0 / mean_block
    starts[:, 0] = True
    first = rng.integers(0, n, size=(resamples, n))
    at = np.arange(n)
    last_start = np.maximum.accumulate(np.where(starts, at, 0), axis=1)
    return np.asarray((np.take_along_axis(first, last_start, axis=1) + at - last_start) % n, dtype=np.int64)


@dataclass(frozen=True)
class Difference:
    """A rule against another on the same candles: the difference in annualised mean log return and in Sharpe
    ratio, each with a 95% bootstrap interval and a two-sided p-value (the share of resampled differences as far
    from the observed one as the observed one is from 0)."""

    mean: float
    mean_low: float
    mean_high: float
    mean_p: float
    sharpe: float
    sharpe_low: float
    sharpe_high: float
    sharpe_p: float
    resamples: int
    mean_block: float

    @property
    def luck(self) -> bool:
        """Whether luck can explain it: neither difference is significant at 5%."""
        return self.mean_p >= 0.05 and self.sharpe_p >= 0.05


def compare(
    a: ArrayLike,
    b: ArrayLike,
    candles_a_year: float,
    mean_block: float,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Difference:
    """Rule a's log returns against rule b's on the same candles (`mean_block`: a day of candles, say)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size < 2:
        raise ValueError("two rules are compared on the same candles, at least two of them")
    rng = np.random.default_rng(seed)
    mean = float((x - y).mean() * candles_a_year)
    ratio = float(sharpe(x, candles_a_year) - sharpe(y, candles_a_year))
    chunks_of = max(1, BOOTSTRAP_CELLS // x.size)  # resamples at a time: a year of hourly pooled folds in ~100 MB
    means_in, ratios_in = [], []
    for done in range(0, resamples, chunks_of):
        index = stationary_bootstrap(x.size, mean_block, min(chunks_of, resamples - done), rng)
        means_in.append((x - y)[index].mean(axis=1) * candles_a_year)
        ratios_in.append(sharpe(x[index], candles_a_year) - sharpe(y[index], candles_a_year))
    means, ratios = np.concatenate(means_in), np.concatenate(ratios_in)

    def p_value(observed: float, resampled: FloatArray) -> float:
        far = np.abs(resampled - observed) >= abs(observed) - 1e-12
        return float((far.sum() + 1) / (resampled.size + 1))

    low, high = np.quantile(means, [0.025, 0.975])
    sharpe_low, sharpe_high = np.quantile(ratios, [0.025, 0.975])
    return Difference(
        mean=mean,
        mean_low=float(low),
        mean_high=float(high),
        mean_p=p_value(mean, means),
        sharpe=ratio,
        sharpe_low=float(sharpe_low),
        sharpe_high=float(sharpe_high),
        sharpe_p=p_value(ratio, ratios),
        resamples=resamples,
        mean_block=mean_block,
    )


SIGNAL, SIGNAL_DRIFT = "signal", "signal-drift"
RISK_TARGET, RISK_TARGET_EWMA = "risk-target", "risk-target-ewma"
HOLD, CASH = "buy-and-hold", "cash"
RULES = (SIGNAL, SIGNAL_DRIFT, RISK_TARGET, RISK_TARGET_EWMA, HOLD, CASH)
TWINS = {SIGNAL: SIGNAL_DRIFT, RISK_TARGET: RISK_TARGET_EWMA}
"""Each rule's baseline twin: the same rule fed by persistence with the training drift, or by EWMA volatility."""


@dataclass(frozen=True)
class Origins:
    """One-step forecasts at consecutive origins and what followed: the arrays every rule reads."""

    last_close: FloatArray
    actual: FloatArray  # the next close
    forecast: FloatArray
    low: FloatArray  # the widest central range's bounds
    high: FloatArray
    level: float  # its level (0.9 for 5%..95%)
    ewma_sigma: FloatArray  # the RiskMetrics volatility known at each origin


@dataclass(frozen=True)
class Decisions:
    """Every rule's returns and scores on the same candles, and each rule against holding and against its twin."""

    returns: dict[str, Returns]
    scores: dict[str, RuleScore]
    against_holding: dict[str, Difference]
    against_twin: dict[str, Difference]


def decide(
    origins: Origins,
    train_drift: float,
    sigma_target: float,
    interval: timedelta,
    settings: DecisionSpec | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Decisions:
    """Both rules, their twins, buy-and-hold and cash on the same origins and fee. `train_drift` (the training
    split's mean log return a candle) and `sigma_target` (its realised one-candle volatility) come from training
    hours only; `settings` is the pair's `spec.decision` (its defaults when None); the bootstrap's mean block is a
    day of candles."""
    settings = settings or DecisionSpec()
    o = origins
    r = np.log(o.actual / o.last_close)
    threshold = round_trip(settings.fee_bps) if settings.threshold is None else settings.threshold
    drift_forecast = o.last_close * math.exp(train_drift)
    ewma_low, ewma_high = range_of(o.last_close, o.ewma_sigma, o.level)
    positions = {
        SIGNAL: signal_positions(o.forecast, o.last_close, threshold),
        SIGNAL_DRIFT: signal_positions(drift_forecast, o.last_close, threshold),
        RISK_TARGET: risk_target_positions(range_sigma(o.low, o.high, o.level), sigma_target, settings.cap),
        RISK_TARGET_EWMA: risk_target_positions(range_sigma(ewma_low, ewma_high, o.level), sigma_target, settings.cap),
        HOLD: np.ones_like(r),
        CASH: np.zeros_like(r),
    }
    returns = {rule: net_returns(p, r, settings.fee_bps) for rule, p in positions.items()}
    a_year = per_year(interval)
    block = max(1.0, timedelta(days=1) / interval)

    def versus(rivals: dict[str, str]) -> dict[str, Difference]:
        return {
            rule: compare(returns[rule].log_returns, returns[rival].log_returns, a_year, block, resamples, seed)
            for rule, rival in rivals.items()
        }

    return Decisions(
        returns=returns,
        scores={rule: rule_score(found, a_year) for rule, found in returns.items()},
        against_holding=versus({SIGNAL: HOLD, RISK_TARGET: HOLD}),
        against_twin=versus(TWINS),
    )
