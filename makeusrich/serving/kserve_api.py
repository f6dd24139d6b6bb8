"""The one place that imports kserve: every name the model server uses from it, re-exported.

kserve.model_server parses sys.argv when imported and can exit on options of ours, so the import runs with argv
hidden. Only public kserve names are used (classes of the v2 protocol, the model base class, the data plane and
the model server); a test imports each by name, so an upgrade that moves one fails there, not in production.
"""

from __future__ import annotations

import sys

_argv, sys.argv = sys.argv, sys.argv[:1]
try:
    from kserve import Model, ModelServer, model_server
    from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER
    from kserve.errors import InferenceError, InvalidInput, ModelNotFound, ModelNotReady, ServerNotReady
    from kserve.protocol.dataplane import DataPlane
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as grpc_messages
    from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import (
        GRPCInferenceServiceServicer,
        add_GRPCInferenceServiceServicer_to_server,
    )
    from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
    from kserve.protocol.rest.v2_datamodels import InferenceRequest
finally:
    sys.argv = _argv
model_server.args.configure_logging = False  # makeusrich.log configures logging; kserve's loggers propagate to it

__all__ = [
    "INFERENCE_CONTENT_LENGTH_HEADER",
    "DataPlane",
    "GRPCInferenceServiceServicer",
    "InferOutput",
    "InferRequest",
    "InferResponse",
    "InferenceError",
    "InferenceRequest",
    "InvalidInput",
    "Model",
    "ModelNotFound",
    "ModelNotReady",
    "ModelServer",
    "ServerNotReady",
    "add_GRPCInferenceServiceServicer_to_server",
    "grpc_messages",
]
