"""ONNX export of the Forecaster (contract 2: candles in; forecast and quantiles out) and the Triton config.pbtxt
beside it (contract 3)."""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence

import numpy as np
import onnx
import onnxruntime as ort
import torch

from makeusrich.contract import INPUT_NAME, ONNX_OPSET, OUTPUT_NAME, QUANTILES_NAME
from makeusrich.errors import MakeUsRichError
from makeusrich.onnxrt import onnx_session
from makeusrich.trainer.model import Forecaster

PARITY_RTOL = 1e-4


def export_onnx(model: Forecaster, window: int) -> bytes:
    """One self-contained ONNX file (no external data), batch dimension dynamic."""
    model = model.cpu().eval()
    example = torch.full((1, window, 5), 100.0)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the LSTM batch_first export warning is expected and harmless
        torch.onnx.export(
            model,
            (example,),
            buffer,  # type: ignore[arg-type]  # file-like objects are accepted at run time
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME, QUANTILES_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}, QUANTILES_NAME: {0: "batch"}},
        )
    proto = onnx.load_from_string(buffer.getvalue())
    # The exporter names the horizon and level dimensions symbolically; spell them out, so that the graph says
    # what config.pbtxt says and a reader needs no shape inference to know them.
    for output, sizes in zip(
        proto.graph.output, ((model.core.horizon,), (model.core.horizon, model.core.levels)), strict=True
    ):
        for dim, size in zip(output.type.tensor_type.shape.dim[1:], sizes, strict=True):
            dim.dim_value = size
    onnx.checker.check_model(proto, full_check=True)
    return bytes(proto.SerializeToString())


def run_onnx(
    session: ort.InferenceSession, candles: np.ndarray, batch_size: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """The exported model's forecast [n, h] and quantiles [n, h, levels] for raw candle windows."""
    parts = [
        session.run(
            [OUTPUT_NAME, QUANTILES_NAME],
            {INPUT_NAME: np.ascontiguousarray(candles[i : i + batch_size], dtype=np.float32)},
        )
        for i in range(0, len(candles), batch_size)
    ]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def check_parity(model: Forecaster, model_bytes: bytes, candles: np.ndarray) -> float:
    """Largest relative difference between torch and onnxruntime prices (forecast and quantiles) on the given
    raw windows; raises when it exceeds PARITY_RTOL (an export that changes a forecast must never be
    published)."""
    with torch.no_grad():
        expected = model.cpu().eval()(torch.from_numpy(np.asarray(candles, dtype=np.float32)))
    return parity(run_onnx(onnx_session(model_bytes), candles), [e.numpy() for e in expected], "the trained one")


def parity(got: Sequence[np.ndarray], expected: Sequence[np.ndarray], reference: str) -> float:
    """Largest relative difference between an exported graph's outputs and those of `reference` it was built from;
    raises beyond PARITY_RTOL: a graph that changes a forecast is a bug and is never published."""
    worst = max(float(np.max(np.abs(g - e) / np.abs(e))) for g, e in zip(got, expected, strict=True))
    if not worst <= PARITY_RTOL:
        raise MakeUsRichError(
            f"the exported ONNX model differs from {reference} by {worst:.2e} (relative) on held-out windows; this "
            "is a bug in the export, please report it"
        )
    return worst


def triton_config(name: str, window: int, horizon: int, levels: int) -> str:
    """config.pbtxt for Triton's onnxruntime backend, names and types exactly as in the ONNX graph. The batch
    dimension is spelled out as -1 with max_batch_size 0, so any batch size the client sends is accepted."""
    return f"""name: "{name}"
platform: "onnxruntime_onnx"
max_batch_size: 0
input [
  {{
    name: "{INPUT_NAME}"
    data_type: TYPE_FP32
    dims: [ -1, {window}, 5 ]
  }}
]
output [
  {{
    name: "{OUTPUT_NAME}"
    data_type: TYPE_FP32
    dims: [ -1, {horizon} ]
  }},
  {{
    name: "{QUANTILES_NAME}"
    data_type: TYPE_FP32
    dims: [ -1, {horizon}, {levels} ]
  }}
]
instance_group [
  {{
    kind: KIND_CPU
    count: 1
  }}
]
"""
