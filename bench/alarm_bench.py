"""False alarms and detection times of the live decisions (makeusrich.scoring.sequential) on simulated markets.

Why: a rule that rolls a model back or starts a retrain must have a known error rate. Hourly returns are simulated
from a GARCH(1,1) with Student-t innovations, fitted by maximum likelihood (numpy, Nelder-Mead) to the last 365
days of the bundled BTC/USDT candles, so that volatility clusters and tails are fat as in the market. On each run,
forecasters of known relative quality are scored hour by hour as the tracker scores them (the same volatility
scale, capped losses and misses) and fed to the five detectors. The old rule (a 30-day Diebold-Mariano test and a
coverage threshold re-run every hour) is measured on the same runs, for comparison.

Forecasters, in units of the true conditional volatility sd_t of the return they forecast:
- point: log(forecast / close) = k * sd_t * e, e standard normal, independent of everything (k = 0 is persistence);
  a model "w% worse" has the k whose expected absolute error is (1 + w) times its comparator's;
- ranges: log(quantile / close) = sd_t * width * exp(noise * u) * Q, with Q the innovations' standardised
  quantiles and u standard normal: `width` sets the coverage of the 90% range (exactly 90%, 85% or 80%).

The null ("exactly as good") is the hardest one each decision allows: the served model is as good as the version it
replaced, exactly at Degraded's margin against persistence, and its 90% range covers exactly 90%.

    python bench/alarm_bench.py [--runs 1000] [--seed 1] [--json] [--write]
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import _harness
import numpy as np

from makeusrich.market import files
from makeusrich.scoring import evaluate
from makeusrich.scoring import sequential as seq

HOURS = 24 * 90
WARMUP = 200  # hours simulated before the first scored origin, so that the volatility scale is warm
LEVELS = (0.05, 0.25, 0.5, 0.75, 0.95)
CHUNK = 200  # runs per detector pass: bounds memory
K_NULL_MARGIN = 1.0 + seq.DEGRADED_MARGIN
RANGE_NOISE = 0.1
Array = np.ndarray


@dataclass(frozen=True)
class Garch:
    """GARCH(1,1) with standardised Student-t innovations, returns in percent."""

    omega: float
    alpha: float
    beta: float
    nu: float
    log_likelihood: float
    hours: int

    @property
    def persistence(self) -> float:
        return self.alpha + self.beta


HOUR_NS = np.int64(3_600 * 10**9)


def bundled_closes(days: int) -> tuple[Array, Array]:
    """The closes of the last `days` days of the bundled sample, and whether each follows the previous by an hour."""
    candles = files.read_sample(files.SAMPLE_SYMBOL, files.SAMPLE_INTERVAL)
    candles = candles[candles["close"] > 0]
    opened = candles["open_time"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    kept = opened >= opened[-1] - days * 24 * HOUR_NS
    return candles["close"].to_numpy(dtype=np.float64)[kept], np.r_[False, np.diff(opened[kept]) == HOUR_NS]


def bundled_returns(days: int) -> Array:
    """Hourly log returns in percent over the last `days` days of the bundled sample, skipping the missing hours."""
    close, follows = bundled_closes(days)
    returns = (100 * np.diff(np.log(close)))[follows[1:]]
    return np.asarray(returns - returns.mean())


def bundled_gross_error(factor: float, days: int = 365, every: int = 24) -> Array:
    """On the bundled candles themselves: the first alarm of rollback-point for a version whose every forecast is
    `factor` times the close, against persistence, started at every `every` hours of the last `days` days (each
    run 90 days at most, the volatility scale warm from the hours before it). -1 where none within 90 days; a run
    that reaches the sample's end first without an alarm is left out (it says nothing about 90 days)."""
    close, follows = bundled_closes(days + 91)
    scale = seq.volatility_scale(close, follows)
    limit, detector = seq.threshold(HOURS), seq.Detector.for_losses(seq.ROLLBACK_POINT)
    origins = np.arange(close.size - 1)
    x = seq.point_loss(close[origins + 1], close[origins] * factor, scale[origins])
    x = x - seq.point_loss(close[origins + 1], close[origins], scale[origins])
    firsts = []
    for start in range(close.size - 1 - days * 24, close.size - 1, every):
        run = x[start : start + HOURS]
        path = seq.log_statistic(run[np.isfinite(run)], detector.bets)
        crossed = np.flatnonzero(path >= math.log(limit))
        if crossed.size or run.size == HOURS:
            firsts.append(int(crossed[0]) if crossed.size else -1)
    return np.array(firsts)


def garch_log_likelihood(params: Array, returns: Array) -> float:
    omega, alpha, beta, nu = (float(v) for v in params)
    if omega <= 0 or alpha < 0 or beta < 0 or alpha + beta >= 1 or nu <= 2.05 or nu > 200:
        return -math.inf
    const = math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2) - 0.5 * math.log(math.pi * (nu - 2))
    variance, total, squares = float(np.var(returns)), 0.0, (returns**2).tolist()
    for square in squares:
        total += const - 0.5 * math.log(variance) - (nu + 1) / 2 * math.log1p(square / (variance * (nu - 2)))
        variance = omega + alpha * square + beta * variance
    return total


def nelder_mead(f: Callable[[Array], float], start: Array, steps: Array, iterations: int = 600) -> Array:
    """Minimise f from `start` (the textbook simplex method: reflect, expand, contract, shrink)."""
    simplex = [start] + [start + np.eye(start.size)[i] * steps[i] for i in range(start.size)]
    values = [f(p) for p in simplex]
    for _ in range(iterations):
        order = np.argsort(values)
        simplex, values = [simplex[i] for i in order], [values[i] for i in order]
        centre = np.mean(simplex[:-1], axis=0)
        reflected = centre + (centre - simplex[-1])
        fr = f(reflected)
        if fr < values[0]:
            expanded = centre + 2 * (centre - simplex[-1])
            fe = f(expanded)
            simplex[-1], values[-1] = (expanded, fe) if fe < fr else (reflected, fr)
        elif fr < values[-2]:
            simplex[-1], values[-1] = reflected, fr
        else:
            contracted = centre + 0.5 * (simplex[-1] - centre)
            fc = f(contracted)
            if fc < values[-1]:
                simplex[-1], values[-1] = contracted, fc
            else:
                simplex = [simplex[0] + 0.5 * (p - simplex[0]) for p in simplex]
                values = [f(p) for p in simplex]
        if max(values) - min(values) < 1e-7:
            break
    return simplex[int(np.argmin(values))]


def fit_garch(returns: Array) -> Garch:
    variance = float(np.var(returns))
    start = np.array([0.05 * variance, 0.05, 0.90, 5.0])
    best = nelder_mead(lambda p: -garch_log_likelihood(p, returns), start, start * 0.2)
    omega, alpha, beta, nu = (float(v) for v in best)
    return Garch(omega, alpha, beta, nu, garch_log_likelihood(best, returns), int(returns.size))


def standard_t(rng: np.random.Generator, nu: float, size: tuple[int, ...] | int) -> Array:
    return np.asarray(rng.standard_t(nu, size=size) * math.sqrt((nu - 2) / nu))


@dataclass
class World:
    """Simulated runs: at each origin the close, the next close, the true volatility of the return between them
    and the tracker's volatility scale. Arrays (runs, hours)."""

    close: Array
    actual: Array
    sd: Array
    scale: Array


def simulate(g: Garch, runs: int, rng: np.random.Generator, burn: int = 500) -> World:
    total = burn + WARMUP + HOURS + 1
    z = standard_t(rng, g.nu, (runs, total))
    returns, sd = np.empty((runs, total)), np.empty((runs, total))
    variance = np.full(runs, g.omega / (1 - g.persistence))
    for t in range(total):
        sd[:, t] = np.sqrt(variance)
        returns[:, t] = sd[:, t] * z[:, t]
        variance = g.omega + g.alpha * returns[:, t] ** 2 + g.beta * variance
    returns, sd = returns[:, burn:] / 100, sd[:, burn:] / 100
    closes = 100 * np.exp(np.cumsum(returns, axis=1))
    follows = np.ones(closes.shape[1], dtype=bool)
    follows[0] = False
    scale = np.stack([seq.volatility_scale(row, follows) for row in closes])
    origins = slice(WARMUP, WARMUP + HOURS)
    after = slice(WARMUP + 1, WARMUP + HOURS + 1)
    return World(closes[:, origins], closes[:, after], sd[:, after], scale[:, origins])


def k_for_ratio(ratio: float, comparator_k: float, nu: float, rng: np.random.Generator) -> float:
    """The k whose expected absolute error is `ratio` times that of a forecaster with `comparator_k`."""
    z, e1, e2 = standard_t(rng, nu, 400_000), rng.standard_normal(400_000), rng.standard_normal(400_000)
    target = ratio * float(np.mean(np.abs(z - comparator_k * e2)))
    low, high = 0.0, 5.0
    for _ in range(60):
        k = (low + high) / 2
        low, high = (k, high) if np.mean(np.abs(z - k * e1)) < target else (low, k)
    return (low + high) / 2


def width_for_coverage(coverage: float, nu: float, rng: np.random.Generator) -> float:
    """The width factor at which the noisy widest range covers `coverage` of the outcomes."""
    z, u = standard_t(rng, nu, 400_000), rng.standard_normal(400_000)
    edge = float(np.quantile(standard_t(rng, nu, 2_000_000), LEVELS[-1]))
    low, high = 0.1, 5.0
    for _ in range(60):
        w = (low + high) / 2
        covered = np.mean(np.abs(z) <= w * np.exp(RANGE_NOISE * u) * edge)
        low, high = (w, high) if covered < coverage else (low, w)
    return (low + high) / 2


def point_forecast(world: World, k: float, rng: np.random.Generator) -> Array:
    return np.asarray(world.close * np.exp(k * world.sd * rng.standard_normal(world.close.shape)))


def range_forecast(world: World, width: float, quantiles: Array, rng: np.random.Generator) -> Array:
    spread = world.sd * width * np.exp(RANGE_NOISE * rng.standard_normal(world.close.shape))
    return np.asarray(world.close[..., None] * np.exp(spread[..., None] * quantiles))


def first_alarms(detector: seq.Detector, evidence: Array, limit: float) -> Array:
    """The origin index of each run's first alarm, or -1."""
    found = []
    for start in range(0, evidence.shape[0], CHUNK):
        crossed = seq.log_statistic(evidence[start : start + CHUNK], detector.bets) >= math.log(limit)
        found.append(np.where(crossed.any(axis=1), crossed.argmax(axis=1), -1))
    return np.concatenate(found)


def detection(first: Array) -> dict[str, float | None]:
    """Share detected within 90 days; median and 90th percentile of the days to detection (None where fewer
    than half or nine in ten were detected)."""
    never = 10.0 * HOURS
    days = np.where(first >= 0, (first + 1) / 24, never)
    median, p90 = (float(np.quantile(days, q, method="higher")) for q in (0.5, 0.9))
    return {
        "detected": round(float(np.mean(first >= 0)), 4),
        "median": round(median, 2) if median < never else None,
        "p90": round(p90, 2) if p90 < never else None,
    }


def old_rule_alarms(world: World, served: Array, other: Array, low: Array, high: Array) -> dict[str, float]:
    """The rule this replaces, re-run every hour: on the last 30 days (or fewer, since the version went live),
    MAE ratio above 1 with DM p < 0.05 (absolute errors, HLN-corrected, Student t), or the widest range covering
    under 85% once 24 forecasts are scored. Share of runs with any alarm within 90 days, per part."""
    d = np.abs(np.log(world.actual / served)) - np.abs(np.log(world.actual / other))
    hours = np.arange(1, HOURS + 1)
    n = np.minimum(hours, 720)

    def windowed(values: Array) -> Array:
        total = np.cumsum(values, axis=1)
        before = np.concatenate([np.zeros((values.shape[0], 1)), total], axis=1)[:, hours - n]
        return np.asarray((total - before) / n)

    mean, mean_square = windowed(d), windowed(d**2)
    variance = np.maximum(mean_square - mean**2, 1e-300)
    statistic = mean / np.sqrt(variance / n) * np.sqrt((n - 1) / n)
    critical = np.array([critical_t(int(m) - 1) if m > 1 else np.inf for m in n])
    point = (mean > 0) & (np.abs(statistic) > critical)
    covered = windowed(((world.actual >= low) & (world.actual <= high)).astype(float))
    coverage = (n >= 24) & (covered < 0.85)
    return {
        "point": float(point.any(axis=1).mean()),
        "coverage": float(coverage.any(axis=1).mean()),
        "any": float((point | coverage).any(axis=1).mean()),
    }


def critical_t(df: int) -> float:
    """The two-sided 5% critical value of Student's t (bisection on the project's p-value)."""
    low, high = 0.0, 50.0
    for _ in range(60):
        t = (low + high) / 2
        low, high = (t, high) if evaluate.student_t_two_sided_p(t, df) > 0.05 else (low, t)
    return (low + high) / 2


def measure(runs: int, seed: int) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    garch = fit_garch(bundled_returns(365))
    world = simulate(garch, runs, rng)
    limit = seq.threshold(HOURS)
    quantiles = np.quantile(standard_t(rng, garch.nu, 2_000_000), LEVELS)
    k_margin = k_for_ratio(K_NULL_MARGIN, 0.0, garch.nu, rng)
    widths = {c: width_for_coverage(c, garch.nu, rng) for c in (0.90, 0.85, 0.80)}
    losses, misses = seq.Detector.for_losses, seq.Detector.for_misses

    def points(f: Array) -> Array:
        return seq.point_loss(world.actual, f, world.scale)

    def range_losses(q: Array) -> Array:
        return seq.range_loss(world.actual, world.close, q, LEVELS, world.scale)

    # the null: served as good as the version it replaced, at the margin against persistence, calibrated ranges
    served, replaced = point_forecast(world, k_margin, rng), point_forecast(world, k_margin, rng)
    served_q, replaced_q, baseline_q = (range_forecast(world, widths[0.90], quantiles, rng) for _ in range(3))
    persistence = points(world.close)
    served_miss = seq.outside(world.actual, served_q[..., 0], served_q[..., -1])
    null = {
        seq.DEGRADED_POINT: first_alarms(
            losses(seq.DEGRADED_POINT, seq.DEGRADED_MARGIN), points(served) - K_NULL_MARGIN * persistence, limit
        ),
        seq.DEGRADED_RANGE: first_alarms(
            losses(seq.DEGRADED_RANGE, seq.DEGRADED_MARGIN),
            range_losses(served_q) - K_NULL_MARGIN * range_losses(baseline_q),
            limit,
        ),
        seq.DEGRADED_COVERAGE: first_alarms(misses(seq.DEGRADED_COVERAGE, 0.10), served_miss - 0.10, limit),
        seq.ROLLBACK_POINT: first_alarms(losses(seq.ROLLBACK_POINT), points(served) - points(replaced), limit),
        seq.ROLLBACK_RANGE: first_alarms(
            losses(seq.ROLLBACK_RANGE), range_losses(served_q) - range_losses(replaced_q), limit
        ),
    }
    any_alarm = np.any([first >= 0 for first in null.values()], axis=0)
    old = old_rule_alarms(world, served, replaced, served_q[..., 0], served_q[..., -1])
    detections: dict[str, dict[str, object]] = {}

    def record(name: str, decision: str, first: Array, what: str) -> None:
        detections[name] = {"decision": decision, "what": what, **detection(first)}

    replaced_loss = points(replaced)
    for worse in (2, 5, 10):
        k = k_for_ratio(1 + worse / 100, k_margin, garch.nu, rng)
        x = points(point_forecast(world, k, rng)) - replaced_loss
        what = f"MAE {worse}% above the replaced version's (k {k:.3f} vs {k_margin:.3f})"
        record(f"rollback_mae_{worse}", seq.ROLLBACK_POINT, first_alarms(losses(seq.ROLLBACK_POINT), x, limit), what)
    for worse in (2, 5, 10):
        k = k_for_ratio((1 + worse / 100), 0.0, garch.nu, rng)
        x = points(point_forecast(world, k, rng)) - K_NULL_MARGIN * persistence
        what = f"MAE {worse}% above persistence's (the margin is {seq.DEGRADED_MARGIN:.0%})"
        detector = losses(seq.DEGRADED_POINT, seq.DEGRADED_MARGIN)
        record(f"degraded_mae_{worse}", seq.DEGRADED_POINT, first_alarms(detector, x, limit), what)
    for covers in (85, 80):
        q = range_forecast(world, widths[covers / 100], quantiles, rng)
        miss = seq.outside(world.actual, q[..., 0], q[..., -1])
        first = first_alarms(misses(seq.DEGRADED_COVERAGE, 0.10), miss - 0.10, limit)
        record(f"coverage_{covers}", seq.DEGRADED_COVERAGE, first, f"the 90% range covers {covers}%")
    standardised = np.log(world.actual / world.close) / world.scale
    edges = np.quantile(standardised, [LEVELS[0], LEVELS[-1]])
    miss = seq.outside(world.actual, *(world.close * np.exp(world.scale * edge) for edge in edges))
    record(
        "coverage_ewma_null",
        seq.DEGRADED_COVERAGE,
        first_alarms(misses(seq.DEGRADED_COVERAGE, 0.10), miss - 0.10, limit),
        "EWMA ranges covering 90% on average but not hour by hour (a realistic null: any alarm is false)",
    )
    gross = points(world.close * 1.02) - replaced_loss
    record(
        "rollback_gross_2pct_high",
        seq.ROLLBACK_POINT,
        first_alarms(losses(seq.ROLLBACK_POINT), gross, limit),
        "every forecast 2% above the close (as tests/serving/helpers.scaled_model(..., 1.02))",
    )
    record(
        "rollback_gross_2pct_high_bundled",
        seq.ROLLBACK_POINT,
        bundled_gross_error(1.02),
        "on the bundled candles: every forecast 2% above the close, against persistence, from each day of the last "
        "365 (the end-to-end test's case)",
    )
    return {
        "false_alarm_rate": round(float(any_alarm.mean()), 4),
        "false_alarms_by_decision": {name: round(float(np.mean(first >= 0)), 4) for name, first in null.items()},
        "old_rule_false_alarm_rate": old,
        "detection_days": detections,
        "params": {**asdict(garch), "persistence": round(garch.persistence, 4)},
        "k": round(k_margin, 4),
        "widths": {str(c): round(w, 4) for c, w in widths.items()},
        "threshold": limit,
        "runs": runs,
        "hours": HOURS,
    }


def shown(value: object) -> str:
    return "n/a" if value is None else f"{value}"


def report(result: dict[str, object]) -> str:
    garch = result["params"]
    assert isinstance(garch, dict)
    by_decision = result["false_alarms_by_decision"]
    old = result["old_rule_false_alarm_rate"]
    detections = result["detection_days"]
    assert isinstance(by_decision, dict) and isinstance(old, dict) and isinstance(detections, dict)
    lines = [
        f"Any false alarm within 90 days (five decisions, {result['runs']} runs of {HOURS} hourly checks, "
        f"threshold {result['threshold']:,.0f}): **{result['false_alarm_rate']:.1%}** (bound 5%). "
        f"The rule it replaces, on the same runs: {old['any']:.1%} (point {old['point']:.1%}, "
        f"coverage {old['coverage']:.1%}).",
        "",
        f"GARCH(1,1)-t fitted to the last 365 days of the bundled BTC/USDT candles ({garch['hours']:,} hourly returns, "
        f"percent): omega {garch['omega']:.5f}, alpha {garch['alpha']:.4f}, beta {garch['beta']:.4f} "
        f"(alpha + beta {garch['persistence']}), nu {garch['nu']:.2f}, log-likelihood {garch['log_likelihood']:.1f}. "
        f"The null's point noise k = {result['k']} (MAE {K_NULL_MARGIN:.2f} of persistence's).",
        "",
        _harness.table(
            ["decision", "false alarms within 90 days (bound 1%)"],
            [[name, f"{rate:.2%}"] for name, rate in by_decision.items()],
        ),
        "",
        _harness.table(
            ["scenario", "decision", "detected within 90 days", "median days", "90th percentile days"],
            [
                [f"{name}: {d['what']}", d["decision"], f"{d['detected']:.1%}", shown(d["median"]), shown(d["p90"])]
                for name, d in detections.items()
            ],
        ),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the results as JSON only")
    run = _harness.Run.start(parser, __file__, argv, results="alarms")
    result = measure(run.args.runs, run.args.seed)
    if run.args.json:
        print(json.dumps(result))
        return
    run.finish(
        report(result),
        title="Live decisions: false alarms and time to detection",
        settings={
            "cap": seq.CAP,
            "margin": seq.DEGRADED_MARGIN,
            "alpha per decision": seq.ALPHA,
            "clear factor": seq.CLEAR_FACTOR,
        },
        versions=["numpy"],
    )


if __name__ == "__main__":
    main()
