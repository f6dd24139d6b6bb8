"""Real inputs and real model versions for the serving tests.

Windows come from the bundled real BTC/USDT candles. New versions are published through PairStore like the
trainer does; their models are the trained one with one more node at the output (a scale factor), so a
test can tell versions apart by their forecasts without training again (training takes seconds, a copy
milliseconds). A version as the trainer published it before forecast ranges (`forecast` alone, no quantile
levels) is the trained one with its `quantiles` output removed from the graph, config.pbtxt and metadata.json.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import onnx
from onnx import helper

from makeusrich.contract import INPUT_NAME, OUTPUT_NAME, QUANTILES_NAME
from makeusrich.market import OHLCV, clean_candles, read_sample
from makeusrich.onnxrt import onnx_session
from makeusrich.store import LATEST, PairStore, pair_store

_frame_cache: dict[str, Any] = {}


def sample_frame() -> Any:
    if "frame" not in _frame_cache:
        _frame_cache["frame"] = clean_candles(read_sample("BTCUSDT", "1h"), "1h")[0]
    return _frame_cache["frame"]


def real_windows(window: int, count: int, seed: int = 0) -> np.ndarray:
    """`count` windows of real consecutive candles, [count, window, 5] float32."""
    values = sample_frame()[list(OHLCV)].to_numpy(dtype=np.float32)
    starts = np.random.default_rng(seed).integers(len(values) - 5000, len(values) - window, size=count)
    return np.stack([values[s : s + window] for s in starts])


def reference_outputs(model: bytes, candles: np.ndarray) -> dict[str, np.ndarray]:
    """Every output of the model, onnxruntime run directly on the same input (the way the trainer scores it)."""
    session = onnx_session(model)
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, {INPUT_NAME: candles}), strict=True))


def reference(model: bytes, candles: np.ndarray) -> np.ndarray:
    """The model's forecast [batch, horizon], as onnxruntime gives it."""
    return reference_outputs(model, candles)[OUTPUT_NAME]


def reference_quantiles(model: bytes, candles: np.ndarray) -> np.ndarray:
    """The model's quantiles [batch, horizon, levels], as onnxruntime gives them."""
    return reference_outputs(model, candles)[QUANTILES_NAME]


def _rewire(proto: onnx.ModelProto, output: str, inner: str) -> None:
    """Rename the value `output` to `inner` inside the graph (where it is computed and where other nodes read it,
    as the forecast reads the quantiles' median), so nodes appended after can compute `output` from it."""
    for node in proto.graph.node:
        node.input[:] = [inner if name == output else name for name in node.input]
        node.output[:] = [inner if name == output else name for name in node.output]


def scaled_model(model: bytes, factor: float, outputs: Sequence[str] = (OUTPUT_NAME, QUANTILES_NAME)) -> bytes:
    """The same graph with its outputs (those it has of `outputs`) multiplied by `factor` (names, types and
    shapes unchanged)."""
    proto = onnx.load_from_string(model)
    graph = proto.graph
    graph.initializer.append(helper.make_tensor("scale_factor", onnx.TensorProto.FLOAT, [], [factor]))
    for name in [o.name for o in graph.output if o.name in outputs]:
        _rewire(proto, name, f"{name}_unscaled")
        graph.node.append(helper.make_node("Mul", [f"{name}_unscaled", "scale_factor"], [name]))
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def quantiles_scaled(model: bytes, factors: Sequence[float]) -> bytes:
    """The same graph with each level of its quantiles multiplied by its own factor (the forecast unchanged):
    a factor below 1 on the top level makes the quantiles cross."""
    proto = onnx.load_from_string(model)
    graph = proto.graph
    graph.initializer.append(
        helper.make_tensor("level_factors", onnx.TensorProto.FLOAT, [len(factors)], [float(f) for f in factors])
    )
    _rewire(proto, QUANTILES_NAME, "quantiles_unscaled")
    graph.node.append(helper.make_node("Mul", ["quantiles_unscaled", "level_factors"], [QUANTILES_NAME]))
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def persistence_model(model: bytes, spread: Sequence[float]) -> bytes:
    """A graph with the trained one's inputs and outputs that forecasts the window's last close (persistence
    itself) and the quantiles as that close times `spread` (one factor per level): a model with a known skill,
    a MAE ratio of exactly 1, with ranges as wide as the factors say."""
    proto = onnx.load_from_string(model)
    graph = proto.graph
    del graph.node[:]
    del graph.initializer[:]
    close = OHLCV.index("close")
    graph.initializer.extend(
        [
            helper.make_tensor("last_start", onnx.TensorProto.INT64, [2], [-1, close]),
            helper.make_tensor("last_end", onnx.TensorProto.INT64, [2], [2**62, close + 1]),
            helper.make_tensor("last_axes", onnx.TensorProto.INT64, [2], [1, 2]),
            helper.make_tensor("close_axis", onnx.TensorProto.INT64, [1], [2]),
            helper.make_tensor("spread", onnx.TensorProto.FLOAT, [len(spread)], [float(f) for f in spread]),
        ]
    )
    graph.node.extend(
        [
            helper.make_node("Slice", [INPUT_NAME, "last_start", "last_end", "last_axes"], ["last_close"]),
            helper.make_node("Squeeze", ["last_close", "close_axis"], [OUTPUT_NAME]),  # [batch, 1]
            helper.make_node("Mul", ["last_close", "spread"], [QUANTILES_NAME]),  # [batch, 1, levels]
        ]
    )
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def quantiles_repeated(model: bytes) -> bytes:
    """The same graph with its quantiles given twice along the horizon: [batch, 2 * horizon, levels] beside a
    forecast of [batch, horizon]."""
    proto = onnx.load_from_string(model)
    graph = proto.graph
    _rewire(proto, QUANTILES_NAME, "quantiles_once")
    graph.node.append(helper.make_node("Concat", ["quantiles_once", "quantiles_once"], [QUANTILES_NAME], axis=1))
    (declared,) = [o for o in graph.output if o.name == QUANTILES_NAME]
    declared.type.tensor_type.shape.dim[1].dim_param = "twice_the_horizon"  # onnxruntime infers its size
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def single_output_model(model: bytes) -> bytes:
    """The graph as exported before forecast ranges: the `forecast` output alone."""
    proto = onnx.load_from_string(model)
    kept = [o for o in proto.graph.output if o.name != QUANTILES_NAME]
    del proto.graph.output[:]
    proto.graph.output.extend(kept)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def single_output_config(config: str) -> str:
    """config.pbtxt as the trainer wrote it before forecast ranges: the `quantiles` output taken out."""
    changed = re.sub(r',\s*\{\s*name: "quantiles"[^}]*\}', "", config)
    assert changed != config and QUANTILES_NAME not in changed
    return changed


def single_output_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """metadata.json as the trainer wrote it before forecast ranges: no levels, calibration or range scores,
    one output, a smoke test without quantiles."""
    document = {k: v for k, v in metadata.items() if k not in ("quantiles", "calibration")}
    document["outputs"] = [o for o in metadata["outputs"] if o["name"] != QUANTILES_NAME]
    document["smokeTest"] = {k: v for k, v in metadata["smokeTest"].items() if k != "quantiles"}
    document["metrics"] = {
        split: {k: v for k, v in scores.items() if k != "ranges"} for split, scores in metadata["metrics"].items()
    }
    return document


def publish_single_output(store: PairStore, base_version: str, promote: bool = True, offset: int = 1) -> str:
    """Publish the base version as the trainer would have before forecast ranges."""
    version = next_version(store, offset)
    base = store.version_prefix(base_version)
    files = {
        store.model_path(): single_output_model(store.read_model(base_version)),
        store.config_path(): single_output_config(store.objects.get(base + store.config_path()).decode()).encode(),
    }
    metadata = {**single_output_metadata(store.metadata(base_version)), "version": version}
    store.publish(version, files, metadata, promote=promote)
    return version


def edit_metadata(store: PairStore, version: str, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Rewrite a version's metadata.json in place, as a hand edit or another trainer might have it."""
    key = store.version_prefix(version) + "metadata.json"
    store.objects.put(key, json.dumps(change(json.loads(store.objects.get(key)))).encode())


def nan_above(model: bytes, price: float) -> bytes:
    """The same graph, answering NaN wherever its forecast exceeds `price` (sqrt of a negative number): sound on
    a flat window at 100, broken at real BTC prices."""
    proto = onnx.load_from_string(model)
    graph = proto.graph
    _rewire(proto, OUTPUT_NAME, "forecast_raw")
    graph.initializer.append(helper.make_tensor("nan_limit", onnx.TensorProto.FLOAT, [], [price]))
    graph.node.extend(
        [
            helper.make_node("Sub", ["nan_limit", "forecast_raw"], ["room"]),
            helper.make_node("Sqrt", ["room"], ["root"]),
            helper.make_node("Div", ["root", "root"], ["one_or_nan"]),
            helper.make_node("Mul", ["forecast_raw", "one_or_nan"], ["forecast"]),
        ]
    )
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def slow_model(model: bytes, size: int = 512, matmuls: int = 8) -> bytes:
    """The same graph and answers, made slow but sound: `matmuls` products of [size, size] matrices computed from
    the input (so onnxruntime cannot fold them away), each entry 1/size so they stay finite, added times zero."""
    proto = onnx.load_from_string(model)
    graph = proto.graph
    _rewire(proto, OUTPUT_NAME, "forecast_fast")
    graph.initializer.extend(
        [
            helper.make_tensor("slow_zero", onnx.TensorProto.FLOAT, [], [0.0]),
            helper.make_tensor("slow_entry", onnx.TensorProto.FLOAT, [], [1.0 / size]),
            helper.make_tensor("slow_shape", onnx.TensorProto.INT64, [2], [size, size]),
        ]
    )
    nodes = [
        helper.make_node("ReduceSum", [INPUT_NAME], ["slow_sum"], keepdims=0),
        helper.make_node("Mul", ["slow_sum", "slow_zero"], ["slow_nothing"]),
        helper.make_node("Add", ["slow_nothing", "slow_entry"], ["slow_value"]),
        helper.make_node("Expand", ["slow_value", "slow_shape"], ["slow_0"]),
    ]
    for k in range(matmuls):
        nodes.append(helper.make_node("MatMul", [f"slow_{k}", "slow_0"], [f"slow_{k + 1}"]))
    nodes += [
        helper.make_node("ReduceMean", [f"slow_{matmuls}"], ["slow_mean"], keepdims=0),
        helper.make_node("Mul", ["slow_mean", "slow_zero"], ["slow_added"]),
        helper.make_node("Add", ["forecast_fast", "slow_added"], [OUTPUT_NAME]),
    ]
    graph.node.extend(nodes)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def endless_model(model: bytes, iterations: int = 9 * 10**18) -> bytes:
    """The same graph with a Loop of `iterations` empty steps added to its forecast times zero: it loads and its
    graph is sound, but its first inference never ends. The loop's start depends on the input, so that no
    optimisation can run (or skip) it when the session is made."""
    proto = onnx.load_from_string(model)
    graph = proto.graph
    _rewire(proto, OUTPUT_NAME, "forecast_fast")
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Identity", ["v_in"], ["v_out"])],
        "endless_body",
        [
            helper.make_tensor_value_info("i", onnx.TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", onnx.TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", onnx.TensorProto.FLOAT, []),
        ],
        [
            helper.make_tensor_value_info("cond_out", onnx.TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", onnx.TensorProto.FLOAT, []),
        ],
    )
    graph.initializer.extend(
        [
            helper.make_tensor("endless_trips", onnx.TensorProto.INT64, [], [iterations]),
            helper.make_tensor("endless_true", onnx.TensorProto.BOOL, [], [True]),
            helper.make_tensor("endless_zero", onnx.TensorProto.FLOAT, [], [0.0]),
        ]
    )
    graph.node.extend(
        [
            helper.make_node("ReduceSum", [INPUT_NAME], ["endless_sum"], keepdims=0),
            helper.make_node("Mul", ["endless_sum", "endless_zero"], ["endless_start"]),
            helper.make_node("Loop", ["endless_trips", "endless_true", "endless_start"], ["endless_end"], body=body),
            helper.make_node("Mul", ["endless_end", "endless_zero"], ["endless_added"]),
            helper.make_node("Add", ["forecast_fast", "endless_added"], [OUTPUT_NAME]),
        ]
    )
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def publish_as(
    store_url: str,
    template: str,
    names: Iterable[str],
    namespace: str = "default",
    model: bytes | None = None,
    version: str | None = None,
    as_version: str | None = None,
) -> str:
    """Publish the newest version of pair `template` (or `version`) again under each of `names` (as `as_version`
    where given), promoted: the same files (or `model` instead of its ONNX file, with the smoke test recorded for
    it), config.pbtxt and metadata.json naming the new pair, so that a server and a dashboard treat them as that
    many pairs for the price of one training. Returns the version published."""
    source = pair_store(store_url, namespace, template)
    version = version or source.versions()[-1]
    stored = source.metadata(version)
    files = {path: source.read_file(version, path) for path in stored["files"]}
    metadata = {k: v for k, v in stored.items() if k not in ("files", "storageUri")}
    if model is not None:
        files[source.model_path()] = model
        metadata["smokeTest"] = recorded_smoke_test(model, metadata["smokeTest"])
    quoted = f'"{template}"'.encode()
    for name in names:
        renamed = {
            path.replace(template, name, 1): data.replace(quoted, f'"{name}"'.encode())
            if path.endswith("config.pbtxt")
            else data
            for path, data in files.items()
        }
        published = as_version or version
        pair_store(store_url, namespace, name).publish(
            published, renamed, {**metadata, "pair": name, "version": published}, True
        )
    return as_version or version


def recorded_smoke_test(model: bytes, smoke: dict[str, Any]) -> dict[str, Any]:
    """The smoke test of metadata.json with the answers `model` gives on its window, as the trainer records them."""
    candles = np.asarray(smoke["candles"], dtype=np.float32)[np.newaxis]
    answer = reference_outputs(model, candles)
    recorded = {"forecast": answer[OUTPUT_NAME][0].tolist()}
    if QUANTILES_NAME in answer:
        recorded["quantiles"] = answer[QUANTILES_NAME][0].tolist()
    return {**smoke, **recorded}


def next_version(store: PairStore, offset: int = 1) -> str:
    """A version name after every existing one (versions sort by time)."""
    newest = datetime.strptime(store.versions()[-1], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return (newest + timedelta(seconds=offset)).strftime("%Y%m%dT%H%M%SZ")


def publish_model(
    store: PairStore, model: bytes, base_version: str, promote: bool = True, offset: int = 1, record: bool = True
) -> str:
    """Publish `model` as a new version of the pair with the base version's config and metadata (the smoke test's
    answers recorded for it unless not `record`: a model whose inference never ends keeps the base's)."""
    version = next_version(store, offset)
    base = store.version_prefix(base_version)
    metadata = {**store.metadata(base_version), "version": version}
    with contextlib.suppress(Exception):  # as the trainer records it for this model (a broken one keeps the base's)
        if record:
            metadata["smokeTest"] = recorded_smoke_test(model, metadata["smokeTest"])
    files = {
        store.model_path(): model,
        store.config_path(): store.objects.get(base + store.config_path()),
    }
    store.publish(version, files, metadata, promote=promote)
    return version


def point_latest_at(store: PairStore, version: str, model_sha256: str) -> None:
    """Write latest.json by hand, as a damaged or hand-edited store might have it."""
    latest = {
        "version": version,
        "storageUri": store.storage_uri(version),
        "modelSha256": model_sha256,
        "promotedAt": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    store.objects.put(store.prefix + LATEST, json.dumps(latest).encode())
