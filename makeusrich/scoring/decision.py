"""Would following the forecasts have made money, after fees? Two rules turn each forecast into a spot position for
the next candle, and their returns are scored beside buy-and-hold, cash and each rule's baseline twin, with a
stationary block bootstrap saying whether a difference is more than luck. Pure numpy (and the standard library's
normal quantile), so the test split, every walk-forward fold, the replay and the live record use the same numbers.

- signal: hold the pair (1) for the next candle when the forecast's expected log return, log(forecast / last close),
  exceeds a threshold (by default the round-trip fee), else hold cash (0). Spot only: no leverage, no shorting.
- risk target: hold min(cap, sigma_target / sigma_t) of the pair, sigma_t being the one-candle volatility a central
  range implies (its log width over twice the normal quantile of its level), sigma_target the training split's
  realised one-candle volatility, so that its risk is comparable with holding (volatility-managed portfolios:
  Moreira and Muir, Journal of Finance 2017). The target is measured as sigma_t is, from the training returns'
  central range at the same level: real returns have fat tails, so a standard deviation would sit above every
  range-implied volatility and the rule would hold the pair at its cap nearly always.
- twins: the signal rule fed by persistence with the training drift, and the risk-target rule fed by EWMA
  volatility's range (RiskMetrics, lambda 0.94, scaled as the range tables' EWMA baseline is) instead of the
  model's: that last comparison is the economic value of the model's ranges.

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
from makeusrich.scoring.bootstrap import RESAMPLES, Resampled, day_of_candles, resampled_sums
from makeusrich.scoring.ranges import standardised_quantiles
from makeusrich.store import DecisionMetrics, Difference, Equity, RuleScore

FloatArray = NDArray[np.float64]

CAP = 1.0
"""The largest fraction of the pair the risk-target rule holds: no leverage (`spec.decision.cap`'s bound)."""
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


def central_sigma(returns: ArrayLike, level: float) -> float:
    """A one-candle volatility measured as the rules measure a forecast's: the log width of the returns' central
    range at `level` over twice the normal quantile. Under a normal law it is the standard deviation; under the fat
    tails of real returns it is smaller, as the ranges are, so the target and the forecasts share one scale."""
    r = np.asarray(returns, dtype=np.float64)
    low, high = np.quantile(r[np.isfinite(r)], [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(range_sigma([1.0], [math.exp(high - low)], level)[0])


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


def _sharpe_of_sums(total: FloatArray, squares: FloatArray, n: int, candles_a_year: float) -> FloatArray:
    """The annualised Sharpe ratio from a series' sum and sum of squares (the sample deviation); 0 where flat."""
    variance = np.maximum(squares - total**2 / n, 0.0) / (n - 1)
    sd = np.sqrt(variance)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = total / n / sd * math.sqrt(candles_a_year)
    return np.asarray(np.where(sd > 1e-15, ratio, 0.0), dtype=np.float64)


def difference(
    x: FloatArray,
    y: FloatArray,
    resampled_x: Resampled,
    resampled_y: Resampled,
    candles_a_year: float,
    mean_block: float,
) -> Difference:
    """Rule x's log returns against rule y's on the same candles, with intervals and p-values from their sums over
    the same resamples."""
    n = x.size
    mean = float((x - y).mean() * candles_a_year)
    ratio = float(sharpe(x, candles_a_year) - sharpe(y, candles_a_year))
    means = (resampled_x[0] - resampled_y[0]) / n * candles_a_year
    ratios = _sharpe_of_sums(*resampled_x, n, candles_a_year) - _sharpe_of_sums(*resampled_y, n, candles_a_year)

    def p_value(observed: float, resampled: FloatArray) -> float:
        far = np.abs(resampled - observed) >= abs(observed) - 1e-12
        return float((far.sum() + 1) / (resampled.size + 1))

    low, high = np.quantile(means, [0.025, 0.975])
    sharpe_low, sharpe_high = np.quantile(ratios, [0.025, 0.975])
    years = n / candles_a_year
    return Difference(
        total=float((x - y).sum()),
        total_low=float(low * years),
        total_high=float(high * years),
        mean=mean,
        mean_low=float(low),
        mean_high=float(high),
        mean_p=p_value(mean, means),
        sharpe=ratio,
        sharpe_low=float(sharpe_low),
        sharpe_high=float(sharpe_high),
        sharpe_p=p_value(ratio, ratios),
        resamples=int(means.size),
        mean_block=mean_block,
    )


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
    resampled_x, resampled_y = resampled_sums([x, y], mean_block, resamples, seed)
    return difference(x, y, resampled_x, resampled_y, candles_a_year, mean_block)


SIGNAL, SIGNAL_DRIFT = "signal", "signal-drift"
RISK_TARGET, RISK_TARGET_EWMA = "risk-target", "risk-target-ewma"
HOLD, CASH = "buy-and-hold", "cash"
RULES = (SIGNAL, SIGNAL_DRIFT, RISK_TARGET, RISK_TARGET_EWMA, HOLD, CASH)
RULE_NAMES = {
    SIGNAL: "signal",
    SIGNAL_DRIFT: "signal on drift",
    RISK_TARGET: "risk target",
    RISK_TARGET_EWMA: "risk target on EWMA",
    HOLD: "holding",
    CASH: "cash",
}
TWINS = {SIGNAL: SIGNAL_DRIFT, RISK_TARGET: RISK_TARGET_EWMA}
"""Each rule's baseline twin: the same rule fed by persistence with the training drift, or by EWMA volatility."""


@dataclass(frozen=True)
class Fitted:
    """What the rules learn from the training split, and nothing later: the signal twin's drift (the mean log
    return a candle), the risk target (the training returns' `central_sigma`) and the EWMA range's bounds in units
    of the volatility known at each origin (the quantiles of the training returns over it, as the range tables'
    EWMA baseline has them)."""

    drift: float
    sigma_target: float
    ewma_bounds: tuple[float, float]

    @classmethod
    def of(cls, train_returns: ArrayLike, train_sigma: ArrayLike, level: float) -> Fitted:
        """From the one-step log returns at the training origins and the RiskMetrics volatility known at each."""
        r = np.asarray(train_returns, dtype=np.float64)
        low, high = standardised_quantiles(r, train_sigma, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
        return cls(float(r.mean()), central_sigma(r, level), (float(low), float(high)))


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


def ewma_range(last_close: ArrayLike, sigma: ArrayLike, bounds: tuple[float, float]) -> tuple[FloatArray, FloatArray]:
    """EWMA volatility's central range around each last close: the volatility known then times the fitted bounds."""
    close, s = np.asarray(last_close, dtype=np.float64), np.asarray(sigma, dtype=np.float64)
    return close * np.exp(s * bounds[0]), close * np.exp(s * bounds[1])


@dataclass(frozen=True)
class Decisions:
    """Every rule's returns, candle by candle, and what they come to (`metrics`: the document metadata.json, the
    backtest and the track record store)."""

    returns: dict[str, Returns]
    metrics: DecisionMetrics


def threshold_of(settings: DecisionSpec) -> float:
    """The signal rule's threshold: the one set, or the fee's round trip."""
    return round_trip(settings.fee_bps) if settings.threshold is None else settings.threshold


def positions(origins: Origins, fitted: Fitted, settings: DecisionSpec) -> dict[str, FloatArray]:
    """Each rule's position for the candle after each origin, with what was `fitted` on the training split."""
    o = origins
    threshold = threshold_of(settings)
    ewma_low, ewma_high = ewma_range(o.last_close, o.ewma_sigma, fitted.ewma_bounds)
    target = fitted.sigma_target
    return {
        SIGNAL: signal_positions(o.forecast, o.last_close, threshold),
        SIGNAL_DRIFT: signal_positions(o.last_close * math.exp(fitted.drift), o.last_close, threshold),
        RISK_TARGET: risk_target_positions(range_sigma(o.low, o.high, o.level), target, settings.cap),
        RISK_TARGET_EWMA: risk_target_positions(range_sigma(ewma_low, ewma_high, o.level), target, settings.cap),
        HOLD: np.ones(o.last_close.size),
        CASH: np.zeros(o.last_close.size),
    }


def judge(
    held: dict[str, FloatArray],
    log_returns: FloatArray,
    interval: timedelta,
    settings: DecisionSpec,
    level: float,
    fitted: Fitted | None,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Decisions:
    """Every rule's positions `held` over the candles whose log returns follow, after fees: scores, and each rule
    against holding and against its twin on the same bootstrap resamples (the mean block a day of candles).
    `fitted` is None where the positions come from several fits (pooled folds)."""
    if log_returns.size < 2:
        raise ValueError("the rules are compared on at least two candles")
    returns = {rule: net_returns(p, log_returns, settings.fee_bps) for rule, p in held.items()}
    a_year = per_year(interval)
    block = day_of_candles(interval)
    series = {rule: found.log_returns for rule, found in returns.items()}
    resampled = dict(zip(series, resampled_sums(list(series.values()), block, resamples, seed), strict=True))

    def versus(rivals: dict[str, str]) -> dict[str, Difference]:
        return {
            rule: difference(series[rule], series[rival], resampled[rule], resampled[rival], a_year, block)
            for rule, rival in rivals.items()
        }

    metrics = DecisionMetrics(
        fee_bps=settings.fee_bps,
        threshold=threshold_of(settings),
        cap=settings.cap,
        level=level,
        train_drift=fitted.drift if fitted else None,
        sigma_target=fitted.sigma_target if fitted else None,
        ewma_bounds=list(fitted.ewma_bounds) if fitted else None,
        rules={rule: rule_score(found, a_year) for rule, found in returns.items()},
        against_holding=versus({SIGNAL: HOLD, RISK_TARGET: HOLD}),
        against_twin=versus(TWINS),
    )
    return Decisions(returns, metrics)


def decide(
    origins: Origins,
    fitted: Fitted,
    interval: timedelta,
    settings: DecisionSpec | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Decisions:
    """Both rules, their twins, buy-and-hold and cash on the same origins and fee, with what was `fitted` on the
    training split; `settings` is the pair's `spec.decision` (its defaults when None)."""
    settings = settings or DecisionSpec()
    r = np.log(origins.actual / origins.last_close)
    return judge(positions(origins, fitted, settings), r, interval, settings, origins.level, fitted, resamples, seed)


@dataclass(frozen=True)
class Basis:
    """What a version's rules fitted on its training split, their settings and the range's level: all that applying
    them to other hours (live, replayed, recomputed on the dashboard) needs, and small enough to keep per pair."""

    fitted: Fitted
    settings: DecisionSpec
    level: float


def refit(metrics: DecisionMetrics) -> Basis | None:
    """A version's Basis, from its test split's document; None for a pooled document (each fold fitted its own)."""
    m = metrics
    if m.train_drift is None or m.sigma_target is None or m.ewma_bounds is None:
        return None
    settings = DecisionSpec(fee_bps=m.fee_bps, threshold=m.threshold, cap=m.cap)
    return Basis(Fitted(m.train_drift, m.sigma_target, (m.ewma_bounds[0], m.ewma_bounds[1])), settings, m.level)


def percent(x: float) -> str:
    """A share as people read it: one decimal below 10%, none above (an interval's far end needs no more)."""
    return f"{x:+.1%}" if abs(x) < 0.1 else f"{x:+.0%}"


def verdict(metrics: DecisionMetrics) -> str:
    """Whether luck can explain how each rule did against holding: whether the 95% interval of the difference in
    return holds 0."""
    beyond = [
        f"{RULE_NAMES[rule]} {'ahead of' if metrics.against_holding[rule].total > 0 else 'behind'} holding beyond luck"
        for rule in (SIGNAL, RISK_TARGET)
        if not metrics.against_holding[rule].luck
    ]
    return "; ".join(beyond) if beyond else "luck can explain both"


def headline(metrics: DecisionMetrics, where: str) -> str:
    """One sentence for a card, a status or a log: over `where` (the test split, live hours, pooled folds), what
    holding returned after fees, how much more or less each rule ends with than holding (with its 95% interval),
    and whether luck can explain it."""
    hold = metrics.rules[HOLD]
    said = []
    for rule in (SIGNAL, RISK_TARGET):
        relative, low, high = metrics.against_holding[rule].relative
        said.append(f"{RULE_NAMES[rule]} {percent(relative)} [{percent(low)}, {percent(high)}]")
    return (
        f"After fees, {where} ({hold.candles:,} candles): holding {percent(math.expm1(hold.total_log_return))}; "
        f"against it, {' and '.join(said)}; {verdict(metrics)}"
    )


EQUITY_POINTS = 400


def equity(decisions: Decisions, at: list[str], points: int = EQUITY_POINTS) -> Equity:
    """Each rule's cumulative log return after fees at the closes `at` (one a candle), thinned to about `points`."""
    n = len(at)
    keep = np.unique(np.r_[np.arange(0, n, max(1, math.ceil(n / points))), n - 1]) if n else np.arange(0)
    return Equity(
        at=[at[k] for k in keep],
        rules={
            rule: np.round(np.cumsum(found.log_returns)[keep], 6).tolist() for rule, found in decisions.returns.items()
        },
    )
