"""The model server's HTTP side: exactly the v2 (Open Inference) routes this project offers, on uvicorn.

Routes, each over kserve's DataPlane: `GET /v2` (server metadata), `/v2/health/live`, `/v2/health/ready`,
`/v2/models` (the names served, as kserve lists them), `/v2/models/<name>`, `/v2/models/<name>/ready`,
`POST /v2/models/<name>/infer`, and `/metrics` (Prometheus). Nothing else: no model repository routes (load and
unload would let anyone take a model out of service), no `/versions/` routes, no v1 protocol.

What a client can send is bounded before it costs memory: headers (count and total size, 431), and the body
of an inference request (413 when its declared length, or what arrives, passes the largest valid request of
that model). Every client mistake is a 4xx with one sentence and at most one debug log line; only a fault of
the server itself is logged with a traceback. One table (statuses.py) maps errors to statuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import resource
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, cast

import orjson
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from makeusrich.errors import BadRequest, PayloadTooLarge
from makeusrich.serving.kserve_api import (
    INFERENCE_CONTENT_LENGTH_HEADER,
    DataPlane,
    InferenceRequest,
    InferRequest,
    InvalidInput,
    ModelNotReady,
    ServerNotReady,
)
from makeusrich.serving.options import ServeOptions
from makeusrich.serving.statuses import CLIENT_ERRORS, SERVER_FAULT, fault_message

log = logging.getLogger(__name__)

# A v2 request's headers are a handful of short lines: far more is an attack or a broken client.
MAX_HEADERS = 100
MAX_HEADER_BYTES = 16 * 1024
# Characters one FP32 value may take in a JSON request ("-123456.78901234567, " is 21), with room to spare.
JSON_BYTES_PER_VALUE = 32
BODY_HEADROOM = 64 * 1024
TOO_DEEP = "the request body nests JSON too deeply to be a v2 inference request"


def body_limit(max_batch: int, window: int, fields: int = 5) -> int:
    """Bytes in the largest valid inference request: a full batch of windows, every value at its widest in JSON."""
    return max_batch * window * fields * JSON_BYTES_PER_VALUE + BODY_HEADROOM


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with PayloadTooLarge as soon as it is known to exceed `limit`: from Content-Length
    before anything is read, or while a chunked body arrives."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest(f"Content-Length {declared[:40]!r} is not a number of bytes")
        if int(declared) > limit:
            raise PayloadTooLarge(f"the request body has {int(declared):,} bytes; this model takes at most {limit:,}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"the request body passed {limit:,} bytes, the most this model takes")
    return bytes(body)


def _load_json(body: bytes) -> Any:
    """The JSON document of a v2 request, its shapes lists of whole numbers as JSON writes them ("24" or 24.0
    are refused, not converted)."""
    document = _parse_json(body)
    inputs = document.get("inputs") if isinstance(document, dict) else None
    for tensor in inputs if isinstance(inputs, list) else ():
        shape = tensor.get("shape") if isinstance(tensor, dict) else None
        if isinstance(shape, list) and not all(type(d) is int for d in shape):
            name = tensor.get("name")
            raise BadRequest(
                f"input {name!r} has shape {shape!r}; a shape is a list of whole numbers, such as [1, 24, 5]"
            )
    return document


def _parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        reason = str(exc)
    if "recursion" in reason.lower() or "depth" in reason.lower():
        raise BadRequest(TOO_DEEP)
    try:  # NaN and Infinity are not JSON, but Python's json writes them: say what is wrong with the data
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequest(f"the request body is not valid JSON ({reason})") from None


def decode_request(body: bytes, headers: dict[str, str], model_name: str) -> InferRequest:
    """A v2 inference request from a body: JSON whatever the content type says (curl -d sends form encoding),
    or the binary tensor extension when Inference-Header-Content-Length is given, with exactly the bytes its
    inputs declare. BadRequest otherwise."""
    json_length = headers.get(INFERENCE_CONTENT_LENGTH_HEADER)
    if json_length is not None:
        if not json_length.isdigit() or int(json_length) > len(body):
            raise BadRequest(f"{INFERENCE_CONTENT_LENGTH_HEADER} {json_length[:40]!r} does not fit the body")
        header = _load_json(body[: int(json_length)])
        try:
            request = InferRequest.from_bytes(body, int(json_length), model_name)
            sizes = [int((tensor.get("parameters") or {}).get("binary_data_size") or 0) for tensor in header["inputs"]]
        except InvalidInput as exc:  # kserve's own word for what it could not decode: ours is BadRequest
            raise BadRequest(str(exc)) from None
        except Exception as exc:
            raise BadRequest(f"the binary inference request is malformed ({type(exc).__name__}: {exc})") from None
        declared = int(json_length) + sum(sizes)
        if declared != len(body):
            raise BadRequest(
                f"the binary inference request has {len(body)} bytes but its header and binary_data_size "
                f"account for {declared}; send exactly the declared bytes"
            )
        return request
    document = _load_json(body)
    try:
        parsed = InferenceRequest.model_validate(document, strict=False)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise BadRequest(f"the request body is not a v2 inference request: {where}: {first['msg']}") from None
    except RecursionError:
        raise BadRequest(TOO_DEEP) from None
    return InferRequest.from_inference_request(parsed, model_name)


class FastJSONResponse(JSONResponse):
    """JSON encoded by orjson (numpy arrays included): about ten times faster than json for a batch of windows.
    FastAPI's own ORJSONResponse is deprecated."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


class HeaderLimits:
    """ASGI middleware: 431 for a request with too many or too large headers, before any route runs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = scope.get("headers") or []
            size = sum(len(name) + len(value) for name, value in headers)
            if len(headers) > MAX_HEADERS or size > MAX_HEADER_BYTES:
                log.debug("431 for %s: %d headers, %d bytes", scope.get("path"), len(headers), size)
                message = (
                    f"the request has {len(headers)} headers of {size} bytes; at most {MAX_HEADERS} headers "
                    f"of {MAX_HEADER_BYTES} bytes are accepted"
                )
                response = JSONResponse(status_code=431, content={"error": message})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _quiet(status: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        log.debug("%s %s: %s %s", request.method, request.url.path, status, exc)
        return JSONResponse(status_code=status, content={"error": str(exc)})

    return handler


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Unknown routes and methods (404, 405): what this server does not offer, said in our format."""
    assert isinstance(exc, HTTPException)
    log.debug("%s %s: %s", request.method, request.url.path, exc.status_code)
    detail = "this server offers the v2 routes under /v2 only" if exc.status_code == 404 else str(exc.detail)
    return JSONResponse(status_code=exc.status_code, content={"error": detail}, headers=exc.headers)


async def _server_fault(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse(status_code=SERVER_FAULT.http, content={"error": fault_message(exc)})


def infer_route(
    dataplane: DataPlane, options: ServeOptions, window_of: Callable[[str], int]
) -> Callable[[str, Request], Awaitable[Response]]:
    """POST /v2/models/<name>/infer: the body bounded by the model's largest valid request, decoded (JSON or the
    binary extension), run through kserve's DataPlane and encoded as the client asked."""

    async def infer(model_name: str, request: Request) -> Response:
        if not await dataplane.model_ready(model_name, True):  # ModelNotFound (404) when unknown
            raise ModelNotReady(model_name)
        limit = options.max_body_bytes or body_limit(options.max_batch, window_of(model_name))
        try:
            body = await read_body(request, limit)
        except ClientDisconnect:
            log.debug("POST %s: the client went away before sending the whole body", request.url.path)
            return Response(status_code=400)
        headers = dict(request.headers)
        infer_request = decode_request(body, headers, model_name)
        try:
            result, response_headers = await dataplane.infer(model_name, infer_request, headers)
        except InvalidInput as exc:  # kserve's DataPlane refused the request: ours is BadRequest
            raise BadRequest(str(exc)) from None
        result, encode_headers = dataplane.encode(model_name, result, headers, {})
        response_headers.update(encode_headers)
        if isinstance(result, bytes):
            return Response(result, headers=response_headers, media_type="application/octet-stream")
        return FastJSONResponse(result, headers=response_headers)

    return infer


def create_app(dataplane: DataPlane, options: ServeOptions, window_of: Callable[[str], int]) -> FastAPI:
    """The FastAPI application: every route this server answers, and the error table. `window_of` names the
    served window of a model (what bounds its requests' size)."""
    app = FastAPI(
        title="makeusrich model server",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        default_response_class=FastJSONResponse,
    )

    async def server_metadata() -> dict[str, Any]:
        return cast(dict[str, Any], dataplane.metadata())

    async def live() -> dict[str, bool]:
        return {"live": (await dataplane.live()).get("status") == "alive"}

    async def ready() -> dict[str, bool]:
        if not await dataplane.ready():
            raise ServerNotReady()
        return {"ready": True}

    async def models() -> dict[str, list[str]]:
        return {"models": sorted(dataplane.model_registry.get_models())}

    async def model_metadata(model_name: str) -> dict[str, Any]:
        return cast(dict[str, Any], await dataplane.model_metadata(model_name))

    async def model_ready(model_name: str) -> dict[str, Any]:
        if not await dataplane.model_ready(model_name):
            raise ModelNotReady(model_name)
        return {"name": model_name, "ready": True}

    async def metrics() -> Response:
        """Prometheus text at /metrics itself (a mounted app would answer it with a redirect to /metrics/)."""
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    infer = infer_route(dataplane, options, window_of)

    for path, handler in (
        ("/v2", server_metadata),
        ("/v2/health/live", live),
        ("/v2/health/ready", ready),
        ("/v2/models", models),
        ("/v2/models/{model_name}", model_metadata),
        ("/v2/models/{model_name}/ready", model_ready),
    ):
        app.add_api_route(path, handler, methods=["GET"])
    app.add_api_route("/v2/models/{model_name}/infer", infer, methods=["POST"])
    app.add_api_route("/metrics", metrics, methods=["GET"])
    for error, status in CLIENT_ERRORS:
        app.add_exception_handler(error, _quiet(status.http))
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _server_fault)
    return app


# File descriptors kept free of connections: the store's files and sockets, model loads, the log.
RESERVED_FDS = 128


def connection_limit(options: ServeOptions) -> int:
    """The most connections to hold open: --max-connections, else what the descriptor limit leaves. The soft
    limit is raised to the hard one first (as Go's runtime does), since 1,024 is a common soft default."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    room = max(64, (soft if soft != resource.RLIM_INFINITY else hard) - RESERVED_FDS)
    return min(options.max_connections, room) if options.max_connections else room


def guarded_protocol(request_timeout: float, max_connections: int) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol with two guards it lacks: a request must arrive whole within `request_timeout` of
    the connection (or of its first byte, on a kept-alive connection), and past `max_connections` the least
    recently active idle connection is closed. Without them idle and half-sent requests hold descriptors until
    the process runs out, and then no client is served."""
    active: OrderedDict[Guarded, None] = OrderedDict()  # least recently active first

    class Guarded(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            if self._deadline is None:
                self._deadline = self.loop.call_later(request_timeout, self._too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                log.debug("closed a connection that sent no whole request in %g s", request_timeout)
                self.transport.close()

        def _idle(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]
            self._arm()
            active[self] = None
            if len(active) > max_connections:
                oldest = next((c for c in active if c is not self and c._idle()), None)
                if oldest is not None:
                    active.pop(oldest)
                    oldest.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            active.pop(self, None)
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()
            if self in active:
                active.move_to_end(self)

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._disarm()

    return Guarded


class QuietLoopErrors:
    """The event loop's exception handler, saying each kind of trouble once a minute with a count rather than
    each time (out of descriptors, asyncio says so at every accept); an error that is no OSError the first time
    with its traceback, so that a bug still shows where it is."""

    def __init__(self, every_s: float = 60.0) -> None:
        self.every_s = every_s
        self.seen: dict[str, tuple[float, int]] = {}

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message") or "event loop error")
        error = context.get("exception")
        key = f"{message}: {type(error).__name__}: {error}" if error is not None else message
        now = time.monotonic()
        last, count = self.seen.get(key, (-self.every_s, 0))
        if now - last < self.every_s:
            self.seen[key] = (last, count + 1)
            return
        first = key not in self.seen
        self.seen[key] = (now, 0)
        more = f" (and {count} more times since it was last said)" if count else ""
        bug = isinstance(error, BaseException) and not isinstance(error, OSError)  # OSError: the system's state
        log.error("%s%s", key, more, exc_info=error if first and bug else None)


def http_server(app: FastAPI, options: ServeOptions) -> uvicorn.Server:
    """uvicorn for the app: `await server.serve(sockets=[sock])` on a socket bound beforehand runs it until
    SIGINT or SIGTERM (then five seconds for requests in flight), or until `server.should_exit`. The header limits
    wrap the app from outside: as a FastAPI middleware they cost a third of a millisecond per request (measured
    with bench/serve_bench.py), as a plain ASGI wrapper nothing measurable."""
    asyncio.get_running_loop().set_exception_handler(QuietLoopErrors())
    config = uvicorn.Config(
        HeaderLimits(app),
        http=guarded_protocol(options.request_timeout, connection_limit(options)),
        log_config=None,  # makeusrich.log configured logging already
        access_log=options.access_log,
        lifespan="off",
        timeout_graceful_shutdown=5,
        server_header=False,
    )
    return uvicorn.Server(config)
