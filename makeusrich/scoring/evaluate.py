"""Honest scoring of price forecasts against naive baselines (contract 3's metrics). Pure numpy, no I/O.

At one hour an honest model lands at 0.99 to 1.00 of persistence's MAE (see shared/data/README.md), so every
number here is reported next to the same number for persistence on the same points, with a significance test
(Diebold-Mariano) and a confidence interval (Wilson), so that noise is not mistaken for skill.

Shapes. An evaluation point (an "origin") is a moment at which the last closed candle is known:

- ``last_close``: ``(n,)``, the last known close at each origin;
- ``forecast`` and ``actual``: ``(n,)`` for horizon 1 or ``(n, h)``, the predicted and the realised close of
  the next ``h`` candles;
- ``closes_history``: ``(n, m)``, the closes up to each origin, oldest first, the last column being
  ``last_close``.

Horizon h > 1: every step is scored against the actual close at that step, and persistence forecasts the last
close for every step. MAE, RMSE and directional accuracy pool all ``n * h`` forecasts; the Diebold-Mariano
test uses one loss per origin (the mean over its h steps) with h - 1 autocovariance lags, because forecasts
from consecutive origins overlap.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from makeusrich.store import Directional, Rules, Score, SplitMetrics

Z95 = 1.959963984540054
"""Two-sided 95% quantile of the standard normal distribution."""

ALWAYS_UP_MIN_LOG_RETURN = 1e-9
"""The log return that always_up predicts when the training drift is not positive: a rise, yet hardly any."""

RULES = tuple(Rules.model_fields)
"""The trivial rules that evaluate_split scores next to the model, in this order."""

Loss = Literal["squared", "absolute"]
FloatArray = NDArray[np.float64]


def finite_array(values: ArrayLike, name: str) -> FloatArray:
    """The values as float64, refusing NaN and infinities by `name`."""
    array = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        # A NaN forecast (a diverged model) must fail loudly, not be dropped from the mean.
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _as_2d(values: ArrayLike, name: str) -> FloatArray:
    """(n,) -> (n, 1), so that horizon 1 and horizon h share one code path."""
    array = finite_array(values, name)
    if array.ndim == 1:
        return array[:, None]
    if array.ndim != 2:
        raise ValueError(f"{name} must have shape (n,) or (n, horizon), got {array.shape}")
    return array


def _aligned(
    actual: ArrayLike, forecast: ArrayLike, last_close: ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Check and return actual (n, h), forecast (n, h) and last_close (n, 1)."""
    actual_2d = _as_2d(actual, "actual")
    forecast_2d = _as_2d(forecast, "forecast")
    if actual_2d.shape != forecast_2d.shape:
        raise ValueError(f"actual {actual_2d.shape} and forecast {forecast_2d.shape} differ in shape")
    last = finite_array(last_close, "last_close").reshape(-1)
    if last.shape[0] != actual_2d.shape[0]:
        raise ValueError(f"last_close has {last.shape[0]} points, actual has {actual_2d.shape[0]}")
    return actual_2d, forecast_2d, last[:, None]


def _errors(actual: ArrayLike, forecast: ArrayLike) -> FloatArray:
    """forecast - actual, after checking that the two line up and are not empty."""
    a = finite_array(actual, "actual")
    f = finite_array(forecast, "forecast")
    if a.shape != f.shape:
        raise ValueError(f"actual {a.shape} and forecast {f.shape} differ in shape")
    if a.size == 0:
        raise ValueError("no points to score")
    return f - a


def mae(actual: ArrayLike, forecast: ArrayLike) -> float:
    """Mean absolute error, in price units: the number promotion compares with persistence's."""
    return float(np.mean(np.abs(_errors(actual, forecast))))


def rmse(actual: ArrayLike, forecast: ArrayLike) -> float:
    """Root mean squared error, in price units: weighs the large misses that MAE forgives."""
    return float(np.sqrt(np.mean(_errors(actual, forecast) ** 2)))


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion: unlike the normal interval it stays inside [0, 1] and is
    honest near 0 and 1 and for small n. n = 0 gives (0.0, 1.0): with no trials every proportion is possible,
    and the result stays JSON-safe."""
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n))
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def directional_accuracy(
    last_close: ArrayLike, forecast: ArrayLike, actual: ArrayLike, z: float = Z95
) -> Directional | None:
    """Fraction of forecasts with sign(forecast - last_close) == sign(actual - last_close).

    A forecast counts only if both the actual close and the forecast differ from the last close (exact float
    comparison): a flat actual has no direction to call, and a forecast of no move calls none. The excluded
    count says how many were dropped. None when nothing is left, as for persistence, which never predicts a
    move: its directional accuracy is undefined, not 0 or 50%.

    For horizon h every step is compared with the last close at its origin. The Wilson interval assumes
    independent trials; with h > 1 the steps of one origin are correlated and the interval is too narrow."""
    actual_2d, forecast_2d, last = _aligned(actual, forecast, last_close)
    predicted = np.sign(forecast_2d - last)
    realised = np.sign(actual_2d - last)
    counted = (predicted != 0) & (realised != 0)
    n = int(np.count_nonzero(counted))
    if n == 0:
        return None
    hits = int(np.count_nonzero(counted & (predicted == realised)))
    low, high = wilson_interval(hits, n, z)
    return Directional(
        accuracy=hits / n,
        hits=hits,
        n=n,
        excluded=int(counted.size - n),
        wilson_low=low,
        wilson_high=high,
        pt_pvalue=pesaran_timmermann(realised[counted], predicted[counted]),
    )


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (tiny if abs(d) < tiny else d)
    h = d
    for m in range(1, 100_000):
        m2 = 2 * m
        # The even and the odd step of the fraction, each updating d and c alike.
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (tiny if abs(d) < tiny else d)
            c = 1.0 + aa / c
            c = tiny if abs(c) < tiny else c
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            return h
    raise ArithmeticError(f"incomplete beta did not converge (a={a}, b={b}, x={x})")


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b), so the t distribution needs no scipy."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def student_t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with df degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if math.isinf(t):
        return 0.0
    return min(1.0, max(0.0, _betainc(df / 2.0, 0.5, df / (df + t * t))))


def normal_two_sided_p(z: float) -> float:
    """P(|Z| >= |z|) for the standard normal distribution."""
    return math.erfc(abs(z) / math.sqrt(2.0))


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


def diebold_mariano(errors_a: ArrayLike, errors_b: ArrayLike, horizon: int = 1, loss: Loss = "squared") -> float | None:
    """Two-sided p-value of the Diebold-Mariano test that forecasts a and b have equal expected loss.

    Why: a relative MAE of 0.998 on a few thousand hours is usually noise; this says how often noise alone
    would give a difference this large. With the Harvey-Leybourne-Newbold (1997) small-sample correction and a
    Student-t reference with n - 1 degrees of freedom. The long-run variance of the loss differential uses the
    h - 1 autocovariances that overlapping h-step forecasts induce (rectangular kernel); if that estimate is
    not positive (possible for h > 1), the lag-0 variance alone is used.

    Errors are (n,) or (n, h); with (n, h) each origin's loss is the mean over its h steps. Identical losses
    give 1.0; a constant non-zero loss differential (zero variance, one forecast always better by the same
    amount) gives 0.0. None when there are too few points for the test: fewer than max(2, 2 * horizon)."""
    a = finite_array(errors_a, "errors_a")
    b = finite_array(errors_b, "errors_b")
    if a.shape != b.shape:
        raise ValueError(f"errors_a {a.shape} and errors_b {b.shape} differ in shape")
    if loss == "squared":
        return diebold_mariano_losses(a**2, b**2, horizon)
    if loss == "absolute":
        return diebold_mariano_losses(np.abs(a), np.abs(b), horizon)
    raise ValueError(f"loss must be 'squared' or 'absolute', got {loss!r}")


def diebold_mariano_losses(losses_a: ArrayLike, losses_b: ArrayLike, horizon: int = 1) -> float | None:
    """diebold_mariano on losses already computed, (n,) or (n, h): for any loss, the pinball loss included."""
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    loss_a, loss_b = finite_array(losses_a, "losses_a"), finite_array(losses_b, "losses_b")
    if loss_a.shape != loss_b.shape:
        raise ValueError(f"losses_a {loss_a.shape} and losses_b {loss_b.shape} differ in shape")
    d = loss_a - loss_b
    if d.ndim == 2:
        d = d.mean(axis=1)
    elif d.ndim != 1:
        raise ValueError(f"losses must have shape (n,) or (n, h), got {loss_a.shape}")
    n = d.shape[0]
    if n < max(2, 2 * horizon):
        return None
    hln_factor = (n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n
    mean = float(d.mean())
    centred = d - mean
    gamma0 = float(centred @ centred) / n
    long_run = gamma0
    for lag in range(1, min(horizon, n)):
        long_run += 2.0 * float(centred[lag:] @ centred[:-lag]) / n
    if long_run <= 0:
        long_run = gamma0
    if long_run <= 0:  # a constant differential: no noise, so any non-zero mean is certain
        return 1.0 if mean == 0 else 0.0
    statistic = mean / math.sqrt(long_run / n) * math.sqrt(hln_factor)
    return student_t_two_sided_p(statistic, n - 1)


def past_closes(closes: ArrayLike, last_index: ArrayLike, length: int) -> FloatArray:
    """closes_history for evaluate_split: row i holds closes[last_index[i] - length + 1 : last_index[i] + 1].
    Raises if a row would reach before the start of the series, rather than silently padding it."""
    series = finite_array(closes, "closes").reshape(-1)
    ends = np.asarray(last_index, dtype=np.int64).reshape(-1)
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    if ends.size and (ends.min() < length - 1 or ends.max() >= series.shape[0]):
        raise ValueError(f"last_index must lie in [{length - 1}, {series.shape[0] - 1}]")
    offsets = np.arange(-length + 1, 1, dtype=np.int64)
    rows: FloatArray = series[ends[:, None] + offsets[None, :]]
    return rows


def _history(closes_history: ArrayLike, min_columns: int) -> FloatArray:
    history = finite_array(closes_history, "closes_history")
    if history.ndim != 2:
        raise ValueError(f"closes_history must have shape (n, m), got {history.shape}")
    if history.shape[1] < min_columns:
        raise ValueError(f"closes_history needs at least {min_columns} closes per point, has {history.shape[1]}")
    if np.any(history <= 0):
        raise ValueError("closes_history must hold positive prices")
    return history


def persistence_forecast(closes_history: ArrayLike, horizon: int = 1) -> FloatArray:
    """Next closes = last close, at every step: the bar that a model must clear. Returns (n, horizon)."""
    history = _history(closes_history, 1)
    return np.repeat(history[:, -1:], horizon, axis=1)


def always_up_forecast(closes_history: ArrayLike, train_mean_log_return: float, horizon: int = 1) -> FloatArray:
    """Bet on a rise at every point: step k = last * exp(k * drift). Returns (n, horizon).

    drift is the training period's mean log return when positive, so the MAE is that of an honest drift
    forecast; otherwise a negligible rise (ALWAYS_UP_MIN_LOG_RETURN), so the MAE is practically persistence's.
    Either way its directional accuracy is the share of rises: what a model's accuracy must beat on a trend.
    Only the training drift may be passed, never one measured on the scored data."""
    history = _history(closes_history, 1)
    drift = max(float(train_mean_log_return), ALWAYS_UP_MIN_LOG_RETURN)
    steps = np.arange(1, horizon + 1, dtype=np.float64)
    return history[:, -1:] * np.exp(drift * steps)[None, :]


def against_last_move_forecast(closes_history: ArrayLike, horizon: int = 1) -> FloatArray:
    """Bet that the last move reverses in full: every step = the previous close, i.e. last * exp(-r_last).

    A direction rule (hourly BTC moves mean-revert slightly: 53.7% in shared/data/README.md); its MAE is about
    sqrt(2) times persistence's and reported only for completeness. A flat last move predicts no move and is
    excluded from its directional accuracy. Returns (n, horizon)."""
    history = _history(closes_history, 2)
    return np.repeat(history[:, -2:-1], horizon, axis=1)


def fit_ar(train_log_returns: ArrayLike, p: int) -> FloatArray:
    """Least-squares AR(p) on log returns: [intercept, phi_1, ..., phi_p], phi_1 on the most recent return.
    The strongest cheap baseline (0.999 of persistence in shared/data/README.md). Fit it on training returns
    only: fitting on scored data is a leak."""
    returns = finite_array(train_log_returns, "train_log_returns").reshape(-1)
    if p < 0:
        raise ValueError(f"p must be >= 0, got {p}")
    rows = returns.shape[0] - p
    if rows < p + 1:
        raise ValueError(f"AR({p}) needs at least {2 * p + 1} returns, got {returns.shape[0]}")
    design = np.ones((rows, p + 1), dtype=np.float64)
    for lag in range(1, p + 1):
        design[:, lag] = returns[p - lag : returns.shape[0] - lag]
    target = returns[p:]
    coefs, *_ = np.linalg.lstsq(design, target, rcond=None)
    fitted: FloatArray = np.asarray(coefs, dtype=np.float64)
    return fitted


def predict_ar(coefs: ArrayLike, recent_log_returns: ArrayLike) -> FloatArray:
    """Next log return from each row of recent returns, oldest first (the last column is the most recent).
    recent_log_returns is (n, m) with m >= p (only the last p columns are used), or (m,) for one point,
    which is treated as one row. Returns (n,)."""
    c = finite_array(coefs, "coefs").reshape(-1)
    if c.size < 1:
        raise ValueError("coefs must hold at least the intercept")
    p = c.size - 1
    recent = finite_array(recent_log_returns, "recent_log_returns")
    matrix = recent[None, :] if recent.ndim == 1 else recent
    if matrix.ndim != 2 or matrix.shape[1] < p:
        raise ValueError(f"AR({p}) needs at least {p} recent returns per point, got shape {recent.shape}")
    lagged = matrix[:, matrix.shape[1] - p :][:, ::-1]  # column j-1 holds lag j
    prediction: FloatArray = c[0] + lagged @ c[1:]
    return prediction


def ar_forecast(closes_history: ArrayLike, coefs: ArrayLike, horizon: int = 1) -> FloatArray:
    """Price forecast of an AR(p) on log returns, iterated for h > 1: step k = last * exp(sum of the first k
    predicted returns). Needs p + 1 closes per point. Returns (n, horizon)."""
    c = finite_array(coefs, "coefs").reshape(-1)
    p = c.size - 1
    history = _history(closes_history, p + 1)
    returns = np.diff(np.log(history[:, history.shape[1] - (p + 1) :]), axis=1)
    predicted = np.empty((history.shape[0], horizon), dtype=np.float64)
    for step in range(horizon):
        next_return = predict_ar(c, returns)
        predicted[:, step] = next_return
        returns = np.concatenate([returns[:, 1:], next_return[:, None]], axis=1) if p else returns
    return history[:, -1:] * np.exp(np.cumsum(predicted, axis=1))


def _json_ready(value: Any) -> Any:
    """Python floats and ints only; NaN and infinities become None, so json.dumps(allow_nan=False) works."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else None
    return value


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def score(actual: ArrayLike, forecast: ArrayLike, last_close: ArrayLike) -> Score:
    """Every metric of one forecast, next to persistence on the same points (None = undefined). rel_mae and
    rel_rmse are divided by persistence's (promotion reads rel_mae); dm_pvalue is Diebold-Mariano against
    persistence with absolute loss; mae_by_step has one MAE per step (a single value for horizon 1)."""
    actual_2d, forecast_2d, last = _aligned(actual, forecast, last_close)
    n, horizon = actual_2d.shape
    persistence = np.broadcast_to(last, actual_2d.shape)
    model_mae = mae(actual_2d, forecast_2d)
    model_rmse = rmse(actual_2d, forecast_2d)
    result = {
        "n": n,
        "horizon": horizon,
        "mae": model_mae,
        "rmse": model_rmse,
        "rel_mae": _ratio(model_mae, mae(actual_2d, persistence)),
        "rel_rmse": _ratio(model_rmse, rmse(actual_2d, persistence)),
        "dm_pvalue": diebold_mariano(
            forecast_2d - actual_2d, persistence - actual_2d, horizon=horizon, loss="absolute"
        ),
        "directional": directional_accuracy(last, forecast_2d, actual_2d),
        "mae_by_step": [float(v) for v in np.mean(np.abs(forecast_2d - actual_2d), axis=0)],
    }
    return Score.model_validate(_json_ready(result))


def evaluate_split(
    actual: ArrayLike,
    forecast: ArrayLike,
    last_close: ArrayLike,
    closes_history: ArrayLike,
    train_mean_log_return: float,
    ar_coefs: ArrayLike | None,
) -> SplitMetrics:
    """Score the model and every trivial rule on the same points of one split (validation or test).
    train_mean_log_return and ar_coefs must come from the training split only; ar_coefs None leaves the ar
    rule out. closes_history's last column must equal last_close."""
    actual_2d, forecast_2d, last = _aligned(actual, forecast, last_close)
    n, horizon = actual_2d.shape
    history = _history(closes_history, 1)
    if history.shape[0] != n:
        raise ValueError(f"closes_history has {history.shape[0]} points, actual has {n}")
    if not np.array_equal(history[:, -1], last[:, 0]):
        raise ValueError("the last column of closes_history must equal last_close")
    rules = Rules(
        persistence=score(actual_2d, persistence_forecast(history, horizon), last),
        always_up=score(actual_2d, always_up_forecast(history, train_mean_log_return, horizon), last),
        against_last_move=score(actual_2d, against_last_move_forecast(history, horizon), last),
        ar=None if ar_coefs is None else score(actual_2d, ar_forecast(history, ar_coefs, horizon), last),
    )
    return SplitMetrics(n=n, horizon=horizon, model=score(actual_2d, forecast_2d, last), rules=rules)
