"""The stationary block bootstrap (Politis and Romano, JASA 1994): how much a mean over consecutive candles could
owe to luck, when nearby candles are not independent. Pure numpy. The decision rules' comparisons
(makeusrich.scoring.decision) and the ranges' score ratios (makeusrich.scoring.ranges) resample with it."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

RESAMPLES = 2000
BOOTSTRAP_CELLS = 2_000_000
"""Resampled blocks drawn at once: the bootstrap's memory stays bounded however long the series."""


def day_of_candles(interval: timedelta) -> float:
    """The mean block every resample here uses: a day of candles (at least one), so that a day's shared mood stays
    together."""
    return max(1.0, timedelta(days=1) / interval)


def stationary_blocks(
    n: int, mean_block: float, resamples: int, rng: np.random.Generator
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The blocks of `resamples` stationary-bootstrap series of n candles: each a run of consecutive candles from a
    uniform start (wrapping around the end), of a geometric length with mean `mean_block`, so that a resample keeps
    the dependence of nearby candles. Returns starts and lengths, one row per resample; the lengths add up to n
    (the last block cut short, the unused ones 0)."""
    if n < 1 or mean_block < 1 or resamples < 1:
        raise ValueError("a bootstrap needs candles, a mean block of at least one candle, and resamples")
    p = 1.0 / mean_block
    blocks = int(n * p + 6.0 * math.sqrt(n * p) + 10)  # enough nearly always; more are drawn when not
    lengths = rng.geometric(p, size=(resamples, blocks))
    while (short := lengths.sum(axis=1) < n).any():
        lengths = np.concatenate([lengths, np.where(short[:, None], rng.geometric(p, size=(resamples, blocks)), 0)], 1)
    ends = np.minimum(np.cumsum(lengths, axis=1), n)
    starts = rng.integers(0, n, size=lengths.shape)
    return np.asarray(starts, dtype=np.int64), np.asarray(np.diff(ends, axis=1, prepend=0), dtype=np.int64)


def block_sums(values: FloatArray, starts: NDArray[np.int64], lengths: NDArray[np.int64]) -> FloatArray:
    """The sum of `values` over each resample's blocks, from prefix sums: O(blocks), not O(candles), a resample."""
    prefix = np.concatenate([[0.0], np.cumsum(np.concatenate([values, values]))])
    return np.asarray((prefix[starts + lengths] - prefix[starts]).sum(axis=-1), dtype=np.float64)


Resampled = tuple[FloatArray, FloatArray]
"""A series' sums and sums of squares over each bootstrap resample: its mean and its spread there."""


def resampled_sums(series: list[FloatArray], mean_block: float, resamples: int, seed: int) -> list[Resampled]:
    """Every series of one length resampled by the same stationary-bootstrap blocks (`mean_block`: a day of
    candles, say), so that differences and ratios between them are resampled pairwise; the blocks are drawn a
    bounded number at a time."""
    n = series[0].size
    rng = np.random.default_rng(seed)
    at_once = max(1, BOOTSTRAP_CELLS // max(1, int(n / mean_block)))
    sums: list[list[FloatArray]] = [[] for _ in series]
    squares: list[list[FloatArray]] = [[] for _ in series]
    for done in range(0, resamples, at_once):
        starts, lengths = stationary_blocks(n, mean_block, min(at_once, resamples - done), rng)
        for k, x in enumerate(series):
            sums[k].append(block_sums(x, starts, lengths))
            squares[k].append(block_sums(x * x, starts, lengths))
    return [(np.concatenate(s), np.concatenate(q)) for s, q in zip(sums, squares, strict=True)]


def ratio_intervals(
    losses: FloatArray, rivals: list[FloatArray], mean_block: float, resamples: int = RESAMPLES, seed: int = 0
) -> list[tuple[float, float, float]]:
    """The ratio of the mean of `losses` to each rival's on the same points, with its 95% percentile interval over
    the same resamples for all: (ratio, low, high) per rival. A high end below 1 says the first is better beyond
    luck."""
    x = np.asarray(losses, dtype=np.float64)
    if any(np.asarray(r).shape != x.shape for r in rivals) or x.ndim != 1 or x.size < 2:
        raise ValueError("a ratio of mean losses needs two or more points, the same for every series")
    if any(np.sum(r) <= 0 for r in rivals):
        raise ValueError("a ratio of mean losses needs rivals whose losses are not all zero")
    resampled = resampled_sums([x, *(np.asarray(r, dtype=np.float64) for r in rivals)], mean_block, resamples, seed)
    found = []
    for rival, (sums, _) in zip(rivals, resampled[1:], strict=True):
        low, high = np.quantile(resampled[0][0] / np.maximum(sums, np.finfo(float).tiny), [0.025, 0.975])
        found.append((float(x.sum() / np.sum(rival)), float(low), float(high)))
    return found
