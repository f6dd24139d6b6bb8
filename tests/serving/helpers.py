"""Real inputs and real model versions for the serving tests.

Windows come from the bundled real BTC/USDT candles. New versions are published through PairStore like the
trainer does; their models are the trained one with one more node at the output (a scale factor), so a
test can tell versions apart by their forecasts without training again (training takes seconds, a copy
milliseconds).
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import onnx
from onnx import helper

from makeusrich.market.candles import OHLCV, clean_candles
from makeusrich.market.files import read_sample
from makeusrich.store.base import LATEST, PairStore
from makeusrich.trainer.export import onnx_session, run_onnx

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


def reference(model: bytes, candles: np.ndarray) -> np.ndarray:
    """onnxruntime run directly on the same input, the way the trainer scores the model."""
    return run_onnx(onnx_session(model), candles)


def scaled_model(model: bytes, factor: float) -> bytes:
    """The same graph with its output multiplied by `factor` (names, types and shapes unchanged)."""
    proto = onnx.load_from_string(model)
    graph = proto.graph
    for node in graph.node:
        node.output[:] = ["forecast_unscaled" if name == "forecast" else name for name in node.output]
    graph.initializer.append(helper.make_tensor("forecast_factor", onnx.TensorProto.FLOAT, [], [factor]))
    graph.node.append(helper.make_node("Mul", ["forecast_unscaled", "forecast_factor"], ["forecast"]))
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def nan_above(model: bytes, price: float) -> bytes:
    """The same graph, answering NaN wherever its forecast exceeds `price` (sqrt of a negative number): sound on
    a flat window at 100, broken at real BTC prices."""
    proto = onnx.load_from_string(model)
    graph = proto.graph
    for node in graph.node:
        node.output[:] = ["forecast_raw" if name == "forecast" else name for name in node.output]
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


def next_version(store: PairStore, offset: int = 1) -> str:
    """A version name after every existing one (versions sort by time)."""
    newest = datetime.strptime(store.versions()[-1], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return (newest + timedelta(seconds=offset)).strftime("%Y%m%dT%H%M%SZ")


def publish_model(store: PairStore, model: bytes, base_version: str, promote: bool = True, offset: int = 1) -> str:
    """Publish `model` as a new version of the pair with the base version's config and metadata."""
    version = next_version(store, offset)
    base = store.version_prefix(base_version)
    metadata = {**store.metadata(base_version), "version": version}
    with contextlib.suppress(Exception):  # as the trainer records it for this model (a broken one keeps the base's)
        candles = np.asarray(metadata["smokeTest"]["candles"], dtype=np.float32)[np.newaxis]
        metadata["smokeTest"] = {**metadata["smokeTest"], "forecast": reference(model, candles)[0].tolist()}
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
