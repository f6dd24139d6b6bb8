"""The model server's gRPC side: the v2 (Open Inference) gRPC service, `inference.GRPCInferenceService`.

It answers over the same DataPlane as REST (rest.py), so both transports serve the same models, the same
versions (a hot reload swaps both at once), the same checks (validation.py), the same errors (statuses.py: a
malformed tensor is INVALID_ARGUMENT, an unknown model NOT_FOUND, a model still loading UNAVAILABLE, each with
REST's sentence) and the same metrics (kserve's latency histograms, recorded by each model's call).

Differences that the protocol makes: its model metadata has no `parameters` (REST's carry the served version,
the kind of model, the quantile levels...), so ModelMetadata sends them as JSON in the trailing metadata key
`makeusrich-parameters` (contract.GRPC_PARAMETERS_KEY), which this project's client reads and any other client
may ignore. The repository RPCs (load and unload) are refused with UNIMPLEMENTED, as the REST routes are not
offered. One message may hold the largest
valid request of the largest window a pair may have (or `--max-body-mb`); the model's own checks then refuse
what does not fit it.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import grpc
import numpy as np
import orjson

from makeusrich.contract import DATATYPE, FIELDS, GRPC_PARAMETERS_KEY
from makeusrich.errors import BadRequest, MakeUsRichError
from makeusrich.pair import MAX_WINDOW
from makeusrich.serving.kserve_api import (
    DataPlane,
    GRPCInferenceServiceServicer,
    InferRequest,
    InferResponse,
    InvalidInput,
    ModelNotReady,
    add_GRPCInferenceServiceServicer_to_server,
)
from makeusrich.serving.kserve_api import grpc_messages as pb
from makeusrich.serving.options import ServeOptions
from makeusrich.serving.rest import BODY_HEADROOM
from makeusrich.serving.statuses import SERVER_FAULT, fault_message, status_of

log = logging.getLogger(__name__)

FP32_BYTES = 4
Answer = TypeVar("Answer")


def message_limit(options: ServeOptions) -> int:
    """The most bytes one gRPC message may have: --max-body-mb, else a full batch of the longest windows a pair
    may have, as raw FP32."""
    if options.max_body_bytes:
        return options.max_body_bytes
    return options.max_batch * MAX_WINDOW * len(FIELDS) * FP32_BYTES + BODY_HEADROOM


def plain_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """A gRPC parameter map ({name: InferParameter}) as REST's JSON parameters ({name: value})."""
    plain: dict[str, Any] = {}
    for key, value in parameters.items():
        choice = value.WhichOneof("parameter_choice")
        if choice is not None:
            plain[key] = getattr(value, choice)
    return plain


def decode_request(request: Any) -> InferRequest:
    """A v2 InferRequest from a ModelInferRequest, its raw contents (when sent) checked to hold exactly the bytes
    their shapes need and decoded, and its parameters made plain. BadRequest otherwise."""
    raws = list(request.raw_input_contents)
    if raws and len(raws) != len(request.inputs):
        raise BadRequest(
            f"the request has {len(request.inputs)} inputs and {len(raws)} raw_input_contents; send one raw "
            "content per input, or none"
        )
    for tensor, raw in zip(request.inputs, raws, strict=False):
        if tensor.HasField("contents"):
            raise BadRequest(f"input {tensor.name!r} has both contents and raw_input_contents; send one of them")
        if tensor.datatype == DATATYPE and all(d >= 0 for d in tensor.shape):
            needed = math.prod(tensor.shape) * FP32_BYTES
            if len(raw) != needed:
                raise BadRequest(
                    f"input {tensor.name!r} has {len(raw)} bytes of raw contents but its shape "
                    f"{list(tensor.shape)} of {DATATYPE} needs {needed}"
                )
    try:
        decoded = InferRequest.from_grpc(request)
    except InvalidInput as exc:
        raise BadRequest(str(exc)) from None
    except Exception as exc:
        raise BadRequest(f"the gRPC inference request is malformed ({type(exc).__name__}: {exc})") from None
    for tensor, raw in zip(decoded.inputs, raws, strict=False):
        if tensor.datatype == DATATYPE:  # other datatypes: the model's checks refuse them by name
            tensor.data = np.frombuffer(raw, dtype="<f4")
    decoded.parameters = plain_parameters(request.parameters)
    return decoded


def grpc_parameter(value: Any) -> Any:
    """One answer parameter as an InferParameter (bool, int or string, as the protocol has them)."""
    if isinstance(value, bool):
        return pb.InferParameter(bool_param=value)
    if isinstance(value, int):
        return pb.InferParameter(int64_param=value)
    return pb.InferParameter(string_param=str(value))


def encode_response(result: InferResponse) -> Any:
    """A ModelInferResponse with every output as raw little-endian FP32 (`raw_output_contents`, the compact form
    Triton's clients read). kserve's own encoder fails on numpy outputs when the request came raw."""
    response = pb.ModelInferResponse(
        model_name=result.model_name, model_version=result.model_version or "", id=result.id or ""
    )
    for key, value in (result.parameters or {}).items():
        response.parameters[key].CopyFrom(grpc_parameter(value))
    for output in result.outputs:
        values = np.asarray(output.data, dtype="<f4")
        response.outputs.add(name=output.name, datatype=output.datatype, shape=list(values.shape))
        response.raw_output_contents.append(values.tobytes())
    return response


def answered(method: Callable[[Any, Any, Any], Awaitable[Answer]]) -> Callable[[Any, Any, Any], Awaitable[Answer]]:
    """An RPC whose errors become the status the one table names, with the error's sentence; a fault of the
    server is INTERNAL, logged with its traceback, and the server goes on."""

    @functools.wraps(method)
    async def rpc(self: Any, request: Any, context: Any) -> Answer:
        try:
            return await method(self, request, context)
        except Exception as exc:
            status = status_of(exc)
            if status is None:
                log.error("gRPC %s failed", method.__name__, exc_info=exc)
                code, message = SERVER_FAULT.grpc, fault_message(exc)
            else:
                log.debug("gRPC %s: %s %s", method.__name__, status.grpc.name, exc)
                code, message = status.grpc, str(exc)
        await context.abort(code, message)  # raises: the client gets the status
        raise AssertionError("grpc's abort returned")

    return rpc


class V2Servicer(GRPCInferenceServiceServicer):
    """Each RPC of the v2 gRPC service over the server's DataPlane."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane

    @answered
    async def ServerLive(self, request: Any, context: Any) -> Any:
        return pb.ServerLiveResponse(live=(await self.dataplane.live()).get("status") == "alive")

    @answered
    async def ServerReady(self, request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=await self.dataplane.ready())

    @answered
    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        metadata = self.dataplane.metadata()
        return pb.ServerMetadataResponse(
            name=metadata["name"], version=metadata["version"], extensions=metadata["extensions"]
        )

    @answered
    async def ModelReady(self, request: Any, context: Any) -> Any:
        return pb.ModelReadyResponse(ready=await self.dataplane.model_ready(request.name))

    @answered
    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        metadata = await self.dataplane.model_metadata(request.name)
        parameters = orjson.dumps(metadata.get("parameters") or {}).decode()
        context.set_trailing_metadata(((GRPC_PARAMETERS_KEY, parameters),))
        return pb.ModelMetadataResponse(
            name=metadata["name"],
            versions=metadata["versions"],
            platform=metadata["platform"],
            inputs=metadata["inputs"],
            outputs=metadata["outputs"],
        )

    @answered
    async def ModelInfer(self, request: Any, context: Any) -> Any:
        name = request.model_name
        if not await self.dataplane.model_ready(name, True):  # ModelNotFound (NOT_FOUND) when unknown
            raise ModelNotReady(name)
        if request.model_version:
            served = (await self.dataplane.model_metadata(name))["versions"]
            if request.model_version not in served:
                raise BadRequest(
                    f"model {name!r} serves version {', '.join(served) or 'none'}, not {request.model_version!r}; "
                    "this server serves the promoted version only: leave model_version empty"
                )
        headers = {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}
        try:
            result, _ = await self.dataplane.infer(name, decode_request(request), headers)
        except InvalidInput as exc:  # kserve's DataPlane refused the request: ours is BadRequest
            raise BadRequest(str(exc)) from None
        if not isinstance(result, InferResponse):
            raise TypeError(f"model {name} answered {type(result).__name__}, not an InferResponse")
        return encode_response(result)

    async def RepositoryModelLoad(self, request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, REPOSITORY_REFUSED)

    async def RepositoryModelUnload(self, request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, REPOSITORY_REFUSED)


REPOSITORY_REFUSED = (
    "this server serves what latest.json promotes and offers no model repository control (load and unload would "
    "let anyone take a model out of service)"
)


async def start_grpc(dataplane: DataPlane, options: ServeOptions, port: int) -> tuple[grpc.aio.Server, int]:
    """A started gRPC server on --host and `port` (0 picks a free one): the server and the port it listens on.
    Port reuse is off, so a busy port is one clear error rather than two servers sharing it."""
    server = grpc.aio.server(
        options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", message_limit(options)),
            ("grpc.max_send_message_length", -1),
        ]
    )
    add_GRPCInferenceServiceServicer_to_server(V2Servicer(dataplane), server)
    host = f"[{options.host}]" if ":" in options.host else options.host
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:
        bound = 0
    if not bound:
        raise MakeUsRichError(
            f"cannot listen on {options.host}:{port} for gRPC; pick another --grpc-port or stop what uses it"
        )
    await server.start()
    return server, bound
