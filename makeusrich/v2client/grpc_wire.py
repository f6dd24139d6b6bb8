"""The v2 protocol over gRPC: the service `inference.GRPCInferenceService`, as KServe and Triton serve it.

The messages are declared here, from the protocol's published field numbers, for the calls this client makes
(the wire knows numbers and types, not message names, so nested messages are declared flat and a parameter
map as its repeated key/value entries). Requests send candles as raw little-endian FP32
(`raw_input_contents`); answers are read raw or from `fp32_contents`, whichever the server sends. A model's
extra metadata (`parameters`, which the protocol's ModelMetadata lacks) is read from the trailing metadata
this project's server sends it in.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import grpc
import grpc.aio
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from makeusrich.contract import DATATYPE, GRPC_PARAMETERS_KEY, INPUT_NAME, TensorSpec
from makeusrich.errors import ModelNotFoundError, ModelNotReadyError, ServingError
from makeusrich.v2client.model import ModelMetadata, Reply

SERVICE = "inference.GRPCInferenceService"
Field = descriptor_pb2.FieldDescriptorProto
BOOL, INT64, UINT64, STRING, BYTES, FLOAT, DOUBLE, MESSAGE = (
    Field.TYPE_BOOL,
    Field.TYPE_INT64,
    Field.TYPE_UINT64,
    Field.TYPE_STRING,
    Field.TYPE_BYTES,
    Field.TYPE_FLOAT,
    Field.TYPE_DOUBLE,
    Field.TYPE_MESSAGE,
)
# name: [(field, number, type, repeated, message type or None)]; InferParameter's fields are one oneof.
MESSAGES: dict[str, list[tuple[str, int, int, bool, str | None]]] = {
    "Empty": [],
    "Live": [("live", 1, BOOL, False, None)],
    "Ready": [("ready", 1, BOOL, False, None)],
    "NamedRequest": [("name", 1, STRING, False, None), ("version", 2, STRING, False, None)],
    "ServerMetadata": [
        ("name", 1, STRING, False, None),
        ("version", 2, STRING, False, None),
        ("extensions", 3, STRING, True, None),
    ],
    "TensorMetadata": [
        ("name", 1, STRING, False, None),
        ("datatype", 2, STRING, False, None),
        ("shape", 3, INT64, True, None),
    ],
    "ModelMetadata": [
        ("name", 1, STRING, False, None),
        ("versions", 2, STRING, True, None),
        ("platform", 3, STRING, False, None),
        ("inputs", 4, MESSAGE, True, "TensorMetadata"),
        ("outputs", 5, MESSAGE, True, "TensorMetadata"),
    ],
    "InferParameter": [
        ("bool_param", 1, BOOL, False, None),
        ("int64_param", 2, INT64, False, None),
        ("string_param", 3, STRING, False, None),
        ("double_param", 4, DOUBLE, False, None),
        ("uint64_param", 5, UINT64, False, None),
    ],
    "Parameter": [("key", 1, STRING, False, None), ("value", 2, MESSAGE, False, "InferParameter")],
    "Contents": [("fp32_contents", 6, FLOAT, True, None)],
    "InputTensor": [
        ("name", 1, STRING, False, None),
        ("datatype", 2, STRING, False, None),
        ("shape", 3, INT64, True, None),
        ("parameters", 4, MESSAGE, True, "Parameter"),
        ("contents", 5, MESSAGE, False, "Contents"),
    ],
    "RequestedOutput": [("name", 1, STRING, False, None), ("parameters", 2, MESSAGE, True, "Parameter")],
    "InferRequest": [
        ("model_name", 1, STRING, False, None),
        ("model_version", 2, STRING, False, None),
        ("id", 3, STRING, False, None),
        ("parameters", 4, MESSAGE, True, "Parameter"),
        ("inputs", 5, MESSAGE, True, "InputTensor"),
        ("outputs", 6, MESSAGE, True, "RequestedOutput"),
        ("raw_input_contents", 7, BYTES, True, None),
    ],
    "OutputTensor": [
        ("name", 1, STRING, False, None),
        ("datatype", 2, STRING, False, None),
        ("shape", 3, INT64, True, None),
        ("parameters", 4, MESSAGE, True, "Parameter"),
        ("contents", 5, MESSAGE, False, "Contents"),
    ],
    "InferResponse": [
        ("model_name", 1, STRING, False, None),
        ("model_version", 2, STRING, False, None),
        ("id", 3, STRING, False, None),
        ("parameters", 4, MESSAGE, True, "Parameter"),
        ("outputs", 5, MESSAGE, True, "OutputTensor"),
        ("raw_output_contents", 6, BYTES, True, None),
    ],
}
# method: (request message, response message)
METHODS = {
    "ServerLive": ("Empty", "Live"),
    "ServerReady": ("Empty", "Ready"),
    "ModelReady": ("NamedRequest", "Ready"),
    "ServerMetadata": ("Empty", "ServerMetadata"),
    "ModelMetadata": ("NamedRequest", "ModelMetadata"),
    "ModelInfer": ("InferRequest", "InferResponse"),
}
PACKAGE = "makeusrich.v2grpc"


def message_classes() -> dict[str, Any]:
    """The message classes of MESSAGES, from a file descriptor built here (in a pool of their own)."""
    file = descriptor_pb2.FileDescriptorProto(name="makeusrich_v2.proto", package=PACKAGE, syntax="proto3")
    for name, fields in MESSAGES.items():
        message = file.message_type.add(name=name)
        if name == "InferParameter":
            message.oneof_decl.add(name="parameter_choice")
        for field, number, kind, repeated, type_name in fields:
            added = message.field.add(
                name=field,
                number=number,
                type=kind,
                label=Field.LABEL_REPEATED if repeated else Field.LABEL_OPTIONAL,
            )
            if type_name:
                added.type_name = f".{PACKAGE}.{type_name}"
            if name == "InferParameter":
                added.oneof_index = 0
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}")) for name in MESSAGES}


M = message_classes()


def parameter_value(parameter: Any) -> Any:
    choice = parameter.WhichOneof("parameter_choice")
    return getattr(parameter, choice) if choice else None


def output_array(tensor: Any, raw: bytes | None) -> np.ndarray:
    """One output as a float32 array of its shape, from its raw bytes or its contents; ValueError otherwise."""
    if tensor.datatype != DATATYPE:
        raise ValueError(f"output {tensor.name!r} is {tensor.datatype}, not {DATATYPE}")
    values = np.frombuffer(raw, dtype="<f4") if raw is not None else np.asarray(tensor.contents.fp32_contents)
    return values.astype(np.float32).reshape(tuple(tensor.shape))


class GrpcWire:
    """The v2 gRPC protocol at grpc://host:port over one channel (opened at the first call, on the caller's
    event loop)."""

    def __init__(self, base_url: str, timeout: float, max_answer_bytes: int) -> None:
        self.base_url = base_url
        self.timeout = timeout
        self.max_answer_bytes = max_answer_bytes
        self._channel: grpc.aio.Channel | None = None
        self._calls: dict[str, Any] = {}

    def _call(self, method: str) -> Any:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(
                self.base_url.removeprefix("grpc://"),
                options=[("grpc.max_receive_message_length", self.max_answer_bytes)],
            )
        if method not in self._calls:
            request, response = METHODS[method]
            self._calls[method] = self._channel.unary_unary(
                f"/{SERVICE}/{method}",
                request_serializer=M[request].SerializeToString,
                response_deserializer=M[response].FromString,
            )
        return self._calls[method]

    async def _ask(self, method: str, request: Any, model: str | None = None) -> tuple[Any, Any]:
        """The answer and its trailing metadata; every failure as one sentence."""
        try:
            call = self._call(method)(request, timeout=self.timeout)
            return await call, await call.trailing_metadata()
        except grpc.aio.AioRpcError as exc:
            raise await self._fail(exc, model) from None

    async def _fail(self, exc: grpc.aio.AioRpcError, model: str | None) -> ServingError:
        code, details = exc.code(), exc.details() or ""
        where = f"model {model!r}" if model else "the model server"
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return ServingError(
                f"{where} at {self.base_url} did not answer in {self.timeout:g} s; the server is overloaded or stuck"
            )
        if code == grpc.StatusCode.UNAVAILABLE and model is not None and await self._reachable():
            return ModelNotReadyError(
                f"model {model!r} at {self.base_url} is not ready (no promoted version loaded yet)", 503
            )
        if code == grpc.StatusCode.UNAVAILABLE:
            return ServingError(
                f"the model server at {self.base_url} is unreachable ({details or 'no answer'}); is `makeusrich "
                "serve --grpc-port` running there?"
            )
        if code == grpc.StatusCode.NOT_FOUND and model is not None:
            return ModelNotFoundError(
                f"the model server at {self.base_url} has no model {model!r}; it could not list what it serves "
                "(the gRPC protocol has no listing)",
                404,
            )
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return ServingError(
                f"{where} at {self.base_url} answered more than {self.max_answer_bytes:,} bytes, or refused a "
                f"request that large: {details}"
            )
        statuses = {grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.INTERNAL: 500}
        return ServingError(f"{where} at {self.base_url} answered {code.name}: {details}", statuses.get(code))

    async def _reachable(self) -> bool:
        try:
            await self._call("ServerLive")(M["Empty"](), timeout=self.timeout)
        except grpc.aio.AioRpcError:
            return False
        return True

    async def live(self) -> bool:
        answer, _ = await self._ask("ServerLive", M["Empty"]())
        return bool(answer.live)

    async def ready(self) -> bool:
        answer, _ = await self._ask("ServerReady", M["Empty"]())
        return bool(answer.ready)

    async def model_ready(self, name: str) -> bool:
        answer, _ = await self._ask("ModelReady", M["NamedRequest"](name=name), name)
        return bool(answer.ready)

    async def list_models(self) -> list[str] | None:
        return None

    async def server_metadata(self) -> dict[str, Any]:
        answer, _ = await self._ask("ServerMetadata", M["Empty"]())
        return {"name": answer.name, "version": answer.version, "extensions": list(answer.extensions)}

    async def model_metadata(self, name: str) -> ModelMetadata:
        answer, trailing = await self._ask("ModelMetadata", M["NamedRequest"](name=name), name)
        sent = dict(trailing or ()).get(GRPC_PARAMETERS_KEY)
        try:
            parameters = json.loads(sent) if sent else {}
            if not isinstance(parameters, dict):
                raise ValueError("its parameters are not an object")
        except ValueError as exc:
            raise ServingError(f"metadata of model {name!r} at {self.base_url} is malformed ({exc})") from None

        def tensors(listed: Any) -> tuple[TensorSpec, ...]:
            return tuple(TensorSpec(t.name, t.datatype, tuple(int(d) for d in t.shape)) for t in listed)

        return ModelMetadata(
            answer.name,
            tuple(answer.versions),
            answer.platform,
            tensors(answer.inputs),
            tensors(answer.outputs),
            parameters,
        )

    async def infer(self, name: str, candles: np.ndarray, outputs: Sequence[str], parameters: dict[str, str]) -> Reply:
        request = M["InferRequest"](
            model_name=name,
            inputs=[M["InputTensor"](name=INPUT_NAME, datatype=DATATYPE, shape=list(candles.shape))],
            outputs=[M["RequestedOutput"](name=output) for output in outputs],
            parameters=[
                M["Parameter"](key=key, value=M["InferParameter"](string_param=value))
                for key, value in parameters.items()
            ],
            raw_input_contents=[np.ascontiguousarray(candles, dtype="<f4").tobytes()],
        )
        answer, _ = await self._ask("ModelInfer", request, name)
        raws = list(answer.raw_output_contents)
        try:
            arrays = {
                tensor.name: output_array(tensor, raws[i] if raws else None) for i, tensor in enumerate(answer.outputs)
            }
        except (ValueError, IndexError) as exc:
            raise ServingError(
                f"model {name!r} at {self.base_url} answered outputs that are not arrays ({exc})"
            ) from None
        return Reply(
            arrays,
            answer.model_name or name,
            answer.model_version or None,
            answer.id or None,
            {entry.key: parameter_value(entry.value) for entry in answer.parameters},
        )

    async def aclose(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
            self._calls.clear()
