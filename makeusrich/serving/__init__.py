"""Serving (contract 2): `makeusrich serve`, a v2 (Open Inference) model server over onnxruntime, and `predict`.

    kserve_api   kserve's one room: every name used from it, re-exported
    server       the model server: a kserve Model per pair, versions watched in the store
    rest         the HTTP side: exactly the v2 routes offered
    grpc_server  the gRPC side: the v2 gRPC service over the same data plane
    statuses     the one table from errors to HTTP statuses and gRPC codes
    loader       a stored version checked before it is served (files, signature, smoke test)
    validation   a request's tensors checked before they cost memory
    triton       config.pbtxt, as KServe's Triton runtime reads it
    options, cli `makeusrich serve` and `makeusrich predict`

The v2 client is makeusrich.v2client. makeusrich.cli takes `add_serving_commands`; kserve is loaded only when
the server runs.
"""

from makeusrich.serving.cli import add_serving_commands

__all__ = ["add_serving_commands"]
