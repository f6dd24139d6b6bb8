"""The one way the project opens an ONNX model: onnxruntime on the CPU, intra-op threads as asked, no inter-op
parallelism (one window is a chain of small steps). The trainer scores the exported file with it, and the model
server serves it with it, so a measured model runs exactly as it is served."""

from __future__ import annotations

import onnxruntime as ort


def onnx_session(model: bytes, threads: int = 1, once: bool = False) -> ort.InferenceSession:
    """A session; `once` for one batch and gone (the tracker's shadows, a thousand pairs a round): no graph
    optimisation, which costs more to open than it saves on one batch, and no memory arena kept beyond it."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if once:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.enable_cpu_mem_arena = False
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
