"""The one way the project opens an ONNX model: onnxruntime on the CPU, intra-op threads as asked, no inter-op
parallelism (one window is a chain of small steps). The trainer scores the exported file with it, and the model
server serves it with it, so a measured model runs exactly as it is served."""

from __future__ import annotations

import onnxruntime as ort


def onnx_session(model: bytes, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
