"""The baseline model: persistence for the point, and for the ranges a volatility estimate over the window times
empirical quantiles of standardised training returns. One ONNX file in the LSTM's contract (input `candles`,
outputs `forecast` and `quantiles`, everything inside the graph), built with onnx directly: no torch, fitted in
well under a second. It is what a new pair serves first, and the champion an LSTM replaces only through the gates.

The volatility is one of three estimators over the window's last W-1 candles: an exponentially weighted mean
(RiskMetrics' lambda, the weights normalised over the window) of the squared close-to-close log return ("close") or
of Parkinson's range variance (log(high/low))^2 / (4 ln 2) ("range"), or the in-window HAR the LSTM's ranges are
sized by ("har": Garman-Klass range variances averaged over a candle, a day and the window, and the last candle's
relative volume; makeusrich.trainer.features), fitted on the training split. The estimator with the lower pinball
loss on the training split is kept. The median's quantile is the last close (its standardised
quantile is set to 0), so the forecast is persistence exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from makeusrich.contract import INPUT_NAME, ONNX_OPSET, OUTPUT_NAME, QUANTILES_NAME, median_index
from makeusrich.scoring import ranges
from makeusrich.trainer.features import Prepared, relative_volume

LAMBDA = ranges.RISKMETRICS_LAMBDA
ESTIMATORS = ("close", "range", "har")
PARKINSON = 1.0 / (4.0 * math.log(2.0))


@dataclass(frozen=True)
class BaselineFit:
    """What the graph holds: the estimator, and the standardised quantiles z [horizon, levels] of each step's
    cumulative log return (the median's set to 0); with each estimator's pinball loss on the training split."""

    estimator: str
    z: np.ndarray
    window: int
    levels: tuple[float, ...]
    train_pinball: dict[str, float]
    har: ranges.Har  # the in-window HAR fitted on the training split (Prepared.volatility), for estimator "har"

    @property
    def horizon(self) -> int:
        return int(self.z.shape[0])


def weights(window: int, lam: float = LAMBDA) -> np.ndarray:
    """The weight of each of a window's last W-1 candles, oldest first: lam^age, normalised to sum to 1."""
    raw = lam ** np.arange(window - 2, -1, -1, dtype=np.float64)
    return np.asarray(raw / raw.sum())


def candle_variances(ohlcv: np.ndarray, estimator: str) -> np.ndarray:
    """Per candle (from the second on): its squared log return from the previous close, or its Parkinson range
    variance. [n-1] for [n, 5] candles; the same arithmetic as the graph's."""
    if estimator == "close":
        returns = np.log(ohlcv[1:, 3] / ohlcv[:-1, 3])
        return np.asarray(returns * returns)
    if estimator == "range":
        spread = np.log(ohlcv[1:, 1] / ohlcv[1:, 2])
        return np.asarray(spread * spread * PARKINSON)
    raise ValueError(f"unknown volatility estimator {estimator!r}; use one of {', '.join(ESTIMATORS)}")


def sigma_at(ohlcv: np.ndarray, origins: np.ndarray, window: int, estimator: str, har: ranges.Har) -> np.ndarray:
    """The volatility the graph computes for the window ending at each origin (a candle index), without building
    the windows: from the candles origin-W+2 .. origin (and their previous closes)."""
    if estimator == "har":
        return np.asarray(har.sigma(ranges.range_variance(ohlcv), relative_volume(ohlcv, window))[origins])
    variances = candle_variances(ohlcv, estimator)  # variances[i] belongs to candle i + 1
    kernel = weights(window)
    sums = np.convolve(variances, kernel[::-1], mode="valid")  # sums[j] covers variances[j : j + W - 1]
    return np.asarray(np.sqrt(sums[origins - window + 1]))


def fit_baseline(data: Prepared, levels: list[float]) -> BaselineFit:
    """Each estimator's standardised quantiles from the training origins' returns, and the one whose ranges score
    the lower pinball loss there (the training split only: the other roles stay unseen)."""
    origins = data.split.train
    steps = origins[:, None] + np.arange(1, data.horizon + 1)[None, :]
    returns = np.log(data.ohlcv[steps, 3] / data.ohlcv[origins, 3][:, None])  # [n, h] cumulative log returns
    median = median_index(levels)
    fits: dict[str, tuple[np.ndarray, float]] = {}
    for estimator in ESTIMATORS:
        sigma = sigma_at(data.ohlcv, origins, data.window, estimator, data.volatility)
        usable = np.isfinite(sigma) & (sigma > 0)
        if usable.sum() < 2:
            continue
        standardised = returns[usable] / sigma[usable, None]
        z = np.quantile(standardised, levels, axis=0).T  # [h, L]
        z[:, median] = 0.0
        quantiles = sigma[usable, None, None] * z[None, :, :]
        fits[estimator] = (z, float(ranges.pinball_by_origin(returns[usable], quantiles, levels).mean()))
    if not fits:
        raise ValueError("the training candles never move, so no volatility can be estimated")
    chosen = min(fits, key=lambda name: fits[name][1])
    return BaselineFit(
        estimator=chosen,
        z=fits[chosen][0],
        window=data.window,
        levels=tuple(levels),
        train_pinball={name: loss for name, (_, loss) in fits.items()},
        har=data.volatility,
    )


def baseline_outputs(fit: BaselineFit, candles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the graph answers for raw windows [n, W, 5], computed with numpy: forecast [n, h], quantiles [n, h, L]."""
    windows = np.asarray(candles, dtype=np.float32).astype(np.float64)
    last_candle = np.array([fit.window - 1])
    sigma = np.stack([sigma_at(w, last_candle, fit.window, fit.estimator, fit.har)[0] for w in windows])
    last = windows[:, -1, 3]
    quantiles = last[:, None, None] * np.exp(sigma[:, None, None] * fit.z[None, :, :])
    forecast = np.repeat(last[:, None], fit.horizon, axis=1)
    return forecast.astype(np.float32), quantiles.astype(np.float32)


def baseline_onnx(fit: BaselineFit) -> bytes:
    """The graph: candles [batch, W, 5] -> forecast [batch, h] (the last close) and quantiles [batch, h, L]
    (the last close times exp(sigma * z)), computed in float64 inside, float32 at both ends."""
    w, h, count = fit.window, fit.horizon, len(fit.levels)

    def const(name: str, value: np.ndarray) -> onnx.TensorProto:
        return numpy_helper.from_array(np.asarray(value), name)

    spans = fit.har.spans
    span_weights = np.zeros((w - 1, len(spans)))
    for column, span in enumerate(spans):
        span_weights[w - 1 - span :, column] = 1.0 / span
    volume_weights = np.full((w - 1, 1), -1.0 / (w - 1))
    volume_weights[-1] += 1.0
    initializers = [
        const("weights", weights(w).reshape(w - 1, 1)),
        const("z", fit.z.reshape(1, h, count).astype(np.float64)),
        const("ones", np.ones((1, h), dtype=np.float64)),
        const("one", np.array(1.0, dtype=np.float64)),
        const("half", np.array(0.5, dtype=np.float64)),
        const("parkinson", np.array(PARKINSON, dtype=np.float64)),
        const("garman_klass", np.array(ranges.GARMAN_KLASS, dtype=np.float64)),
        const("floor", np.array(fit.har.floor, dtype=np.float64)),
        const("span_weights", span_weights),
        const("volume_weights", volume_weights),
        const("intercept", np.array(fit.har.coefficients[0], dtype=np.float64)),
        const("slopes", np.asarray(fit.har.coefficients[1:], dtype=np.float64).reshape(-1, 1)),
        const("later", np.array([1], dtype=np.int64)),
        const("end", np.array([w], dtype=np.int64)),
        const("earlier_end", np.array([w - 1], dtype=np.int64)),
        const("start", np.array([0], dtype=np.int64)),
        const("time_axis", np.array([1], dtype=np.int64)),
        const("last_axis", np.array([2], dtype=np.int64)),
        *(const(f"field_{i}", np.array(i, dtype=np.int64)) for i in range(5)),
    ]

    def field(index: int) -> list[onnx.NodeProto]:  # one column of the window, [batch, W]
        return [helper.make_node("Gather", ["prices", f"field_{index}"], [f"column_{index}"], axis=2)]

    def later(column: str) -> onnx.NodeProto:  # the window's last W-1 candles
        return helper.make_node("Slice", [column, "later", "end", "time_axis"], [f"{column}_later"])

    def node(op: str, inputs: list[str], output: str) -> onnx.NodeProto:
        return helper.make_node(op, inputs, [output])

    nodes = [helper.make_node("Cast", [INPUT_NAME], ["prices"], to=TensorProto.DOUBLE), *field(3)]
    if fit.estimator == "close":
        nodes += [
            later("column_3"),
            helper.make_node("Slice", ["column_3", "start", "earlier_end", "time_axis"], ["column_3_earlier"]),
            node("Div", ["column_3_later", "column_3_earlier"], "ratio"),
            node("Log", ["ratio"], "log_ratio"),
            node("Mul", ["log_ratio", "log_ratio"], "variance"),
            node("MatMul", ["variance", "weights"], "mean_variance"),  # [batch, 1]
            node("Sqrt", ["mean_variance"], "sigma"),
        ]
    elif fit.estimator == "range":
        nodes += [
            *field(1),
            *field(2),
            later("column_1"),
            later("column_2"),
            node("Div", ["column_1_later", "column_2_later"], "ratio"),
            node("Log", ["ratio"], "log_ratio"),
            node("Mul", ["log_ratio", "log_ratio"], "squared"),
            node("Mul", ["squared", "parkinson"], "variance"),
            node("MatMul", ["variance", "weights"], "mean_variance"),
            node("Sqrt", ["mean_variance"], "sigma"),
        ]
    else:  # the in-window HAR: makeusrich.scoring.ranges.range_variance, Har.sigma, features.relative_volume
        nodes += [*field(0), *field(1), *field(2), *field(4)]
        nodes += [later(f"column_{i}") for i in (0, 1, 2, 3, 4)]
        nodes.append(helper.make_node("Slice", ["column_3", "start", "earlier_end", "time_axis"], ["previous"]))
        for i, name in ((0, "open"), (1, "high"), (2, "low"), (3, "close")):
            nodes += [
                node("Div", [f"column_{i}_later", "previous"], f"{name}_ratio"),
                node("Log", [f"{name}_ratio"], name),
            ]
        nodes += [
            node("Sub", ["high", "low"], "spread"),
            node("Mul", ["spread", "spread"], "spread_squared"),
            node("Mul", ["spread_squared", "half"], "spread_term"),
            node("Sub", ["close", "open"], "body"),
            node("Mul", ["body", "body"], "body_squared"),
            node("Mul", ["body_squared", "garman_klass"], "body_term"),
            node("Mul", ["open", "open"], "jump_term"),
            node("Sub", ["spread_term", "body_term"], "garman_klass_variance"),
            node("Add", ["garman_klass_variance", "jump_term"], "variance"),  # [batch, W-1]
            node("MatMul", ["variance", "span_weights"], "span_means"),  # [batch, spans]
            node("Add", ["span_means", "floor"], "floored"),
            node("Log", ["floored"], "log_means"),
            node("Add", ["column_4_later", "one"], "volume_plus_one"),
            node("Log", ["volume_plus_one"], "log_volume"),
            node("MatMul", ["log_volume", "volume_weights"], "recent_volume"),  # [batch, 1]
            helper.make_node("Concat", ["log_means", "recent_volume"], ["design"], axis=1),
            node("MatMul", ["design", "slopes"], "sloped"),
            node("Add", ["sloped", "intercept"], "log_variance"),
            node("Exp", ["log_variance"], "expected_variance"),
            node("Sqrt", ["expected_variance"], "sigma"),
        ]
    nodes += [
        helper.make_node("Unsqueeze", ["sigma", "last_axis"], ["sigma_3"]),  # [batch, 1, 1]
        helper.make_node("Mul", ["sigma_3", "z"], ["log_moves"]),  # [batch, h, L]
        helper.make_node("Exp", ["log_moves"], ["moves"]),
        helper.make_node("Slice", ["column_3", "earlier_end", "end", "time_axis"], ["last_close"]),  # [batch, 1]
        helper.make_node("Unsqueeze", ["last_close", "last_axis"], ["last_close_3"]),
        helper.make_node("Mul", ["last_close_3", "moves"], ["quantile_prices"]),
        helper.make_node("Cast", ["quantile_prices"], [QUANTILES_NAME], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["last_close", "ones"], ["persistence"]),  # [batch, h]
        helper.make_node("Cast", ["persistence"], [OUTPUT_NAME], to=TensorProto.FLOAT),
    ]
    used = {name for node in nodes for name in node.input}  # one estimator's graph leaves the other's constants
    graph = helper.make_graph(
        nodes,
        "baseline",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", w, 5])],
        [
            helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", h]),
            helper.make_tensor_value_info(QUANTILES_NAME, TensorProto.FLOAT, ["batch", h, count]),
        ],
        [tensor for tensor in initializers if tensor.name in used],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)], producer_name="makeusrich")
    onnx.checker.check_model(model, full_check=True)
    return bytes(model.SerializeToString())
