"""`makeusrich serve`: a kserve ModelServer with one onnxruntime-backed kserve.Model per pair (v2 REST and gRPC).

What this adds to kserve's own server, and why:

- It binds the address asked for. kserve's RESTServer always binds 0.0.0.0; here the socket is bound first
  (a busy port is one clear error) and handed to uvicorn (rest.py, which also holds the routes and limits).
- Hot reload. A watcher polls each pair's latest.json; a new version is loaded and checked beside the served one
  (see loader.py) and swapped in with one assignment. A request keeps the version it started with, so requests
  in flight are answered. A refused version is logged and shown in the model's metadata, and the old one
  keeps serving; once latest.json names the served version again, the refusal is forgotten.
- Requests are checked (validation.py) and every bad one is a 400 with a sentence.
- Model metadata (GET /v2/models/<name>) lists the served version in `versions` and, in `parameters` (the
  optional field MLServer also uses), the pair's namespace (when serving from a store), the served version,
  which kind of model it is (`model_kind`: lstm or baseline), window, horizon, interval, when it was trained
  (`model_created_at`), the levels of its `quantiles` output (`quantile_levels`, for models with ranges) and
  where it came from, plus `refused_version`, `refused_reason` and `refused_at` while latest.json names a
  version that was refused.
- A request may name the outputs it wants (`forecast`, `quantiles`); without names it gets every output the
  model has. Every answer carries `parameters` that say how old it is: `model_version`, `model_created_at`,
  `model_age_seconds` and, when the request's parameter `last_candle_close` (RFC 3339) says when its last candle
  closed, `last_candle_age_seconds`.
- Server readiness (GET /v2/health/ready) is Triton's: at least one model, and every model ready.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import numpy as np
import uvicorn

from makeusrich.contract import PLATFORM, QUANTILE_LEVELS, iso_z
from makeusrich.errors import BadRequest, LoadRefused, MakeUsRichError
from makeusrich.net import bind
from makeusrich.serving.grpc_server import start_grpc
from makeusrich.serving.kserve_api import (
    DataPlane,
    InferenceError,
    InferOutput,
    InferRequest,
    InferResponse,
    Model,
    ModelNotReady,
    ModelServer,
)
from makeusrich.serving.loader import (
    ModelSource,
    Served,
    check_apart,
    folder_sources,
    load_artifact,
    stop_checks,
    store_sources,
)
from makeusrich.serving.options import ServeOptions
from makeusrich.serving.rest import create_app, http_server
from makeusrich.serving.validation import check_answer, check_last_candle_close, check_outputs, check_request

log = logging.getLogger(__name__)

REFUSED_RETRY_SECONDS = 300.0


@dataclass(frozen=True)
class Refusal:
    key: str
    version: str
    reason: str
    at: float


class PairModel(Model):
    """One pair's model. `served` is replaced as a whole on reload; a request reads it once."""

    def __init__(self, source: ModelSource, options: ServeOptions) -> None:
        super().__init__(source.name)
        self.source = source
        self.options = options
        self.served: Served | None = None
        self.refusal: Refusal | None = None
        self.source_error: str | None = None
        self._reloading = threading.Lock()
        self._slots = asyncio.Semaphore(options.model_concurrency)

    def load(self) -> bool:
        """kserve's load hook (DataPlane.get_model calls it, on the event loop, for a model not ready): the
        watcher loads versions, in threads, so this only says whether one is loaded."""
        return bool(self.ready)

    def refresh(self) -> str:
        """Serve what the source names now, if it is new and passes the checks. Blocking: run it in a thread.
        Returns what happened, for logs and tests."""
        if not self._reloading.acquire(blocking=False):
            return "busy"
        try:
            return self._refresh()
        finally:
            self._reloading.release()

    def _refresh(self) -> str:
        try:
            candidate = self.source.current()
        except Exception as exc:  # a store that is down must not stop serving the loaded version
            if self.source_error != str(exc):
                log.warning("cannot read %s: %s", self.source.describe(), exc, extra={"model": self.name})
            self.source_error = str(exc)
            return "source-error"
        self.source_error = None
        served = self.served
        if candidate is None:
            return "none" if served is None else "unchanged"
        if served is not None and served.key == candidate.key:
            if self.refusal is not None:  # latest.json was put back to what is served: nothing is refused now
                log.info("latest.json of %s names the served version %s again", self.name, served.version)
                self.refusal = None
            return "unchanged"
        refusal = self.refusal
        if refusal is not None and refusal.key == candidate.key and time.time() - refusal.at < REFUSED_RETRY_SECONDS:
            return "refused-before"
        try:
            artifact = self.source.fetch(candidate)
            smoke = check_apart(artifact, self.options.threads, self.options.check_seconds)
            loaded = load_artifact(artifact, self.options.threads, smoke)
        except Exception as exc:
            reason = str(exc) if isinstance(exc, LoadRefused) else f"{type(exc).__name__}: {exc}"
            self.refusal = Refusal(candidate.key, candidate.version, reason, time.time())
            log.error(
                "refused version %s of %s, %s: %s",
                candidate.version,
                self.name,
                f"still serving {served.version}" if served else "nothing served",
                reason,
                extra={"model": self.name, "refused_version": candidate.version},
            )
            return "refused"
        self.served = loaded
        self.refusal = None
        self.ready = True
        log.info(
            "serving version %s of %s%s",
            loaded.version,
            self.name,
            f" (was {served.version})" if served else "",
            extra={"model": self.name, "version": loaded.version, "load_ms": round(loaded.load_seconds * 1000, 1)},
        )
        return "loaded"

    def metadata(self) -> dict[str, Any]:
        """v2 model metadata plus `parameters` (see the module's docstring)."""
        served, refusal = self.served, self.refusal
        parameters: dict[str, Any] = {"source": self.source.describe()}
        if self.source.namespace is not None:
            parameters["namespace"] = self.source.namespace
        if served is not None:
            parameters.update(
                served_version=served.version,
                loaded_at=served.loaded_at,
                storage_uri=served.where,
                window=served.signature.window,
                horizon=served.signature.horizon,
            )
            if served.interval:
                parameters["interval"] = served.interval
            if served.created_at is not None:
                parameters["model_created_at"] = iso_z(served.created_at)
            if served.kind:
                parameters["model_kind"] = served.kind
            if served.signature.levels:
                parameters[QUANTILE_LEVELS] = list(served.signature.levels)
        if refusal is not None:
            refused_at = iso_z(datetime.fromtimestamp(refusal.at, UTC))
            parameters.update(refused_version=refusal.version, refused_reason=refusal.reason, refused_at=refused_at)
        if self.source_error is not None:
            parameters["source_error"] = self.source_error
        return {
            "name": self.name,
            "versions": [served.version] if served else [],
            "platform": PLATFORM,
            "inputs": [served.signature.input.to_json()] if served else [],
            "outputs": [spec.to_json() for spec in served.signature.outputs] if served else [],
            "parameters": parameters,
        }

    async def predict(
        self,
        payload: InferRequest | dict[str, Any],
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> InferResponse:
        served = self.served
        if served is None:
            raise ModelNotReady(self.name)
        if not isinstance(payload, InferRequest):
            raise BadRequest(f"this server speaks the v2 protocol: POST /v2/models/{self.name}/infer")
        try:
            requested = [output.name for output in payload.request_outputs or []]
            candles = check_request(payload.inputs, served.signature, self.options.max_batch, requested)
            names = check_outputs(requested, served.signature)
            last_candle_close = check_last_candle_close(payload.parameters)
            async with self._slots:  # at most model_concurrency runs of this model hold inference threads
                answer = await asyncio.get_running_loop().run_in_executor(None, served.run, candles, names)
            check_answer(answer, len(candles), served.signature)
        except BadRequest:
            raise  # the client's mistake: HTTP 400 in the server's one table (makeusrich.serving.rest)
        except Exception as exc:
            log.exception("inference failed", extra={"model": self.name, "version": served.version})
            raise InferenceError(f"inference failed on version {served.version}: {exc}") from None
        outputs = [
            InferOutput(name=name, shape=list(values.shape), datatype="FP32", data=np.asarray(values, dtype=np.float32))
            for name, values in answer.items()
        ]
        return InferResponse(
            response_id=payload.id or str(uuid.uuid4()),
            model_name=self.name,
            model_version=served.version,
            infer_outputs=outputs,
            parameters=staleness(served.version, served.created_at, time.time(), last_candle_close),
            use_binary_outputs=payload.use_binary_outputs,
            requested_outputs=payload.request_outputs,
        )


def staleness(
    version: str, created_at: datetime | None, now: float, last_candle_close: datetime | None
) -> dict[str, Any]:
    """The response parameters that say how old an answer is: the model's version, when it was trained and its
    age in seconds, and, when the client said when its last candle closed, that candle's age (a forecast from
    old candles or an old model looks as sure as a fresh one)."""
    parameters: dict[str, Any] = {"model_version": version}
    if created_at is not None:
        parameters.update(model_created_at=iso_z(created_at), model_age_seconds=int(now - created_at.timestamp()))
    if last_candle_close is not None:
        parameters["last_candle_age_seconds"] = int(now - last_candle_close.timestamp())
    return parameters


class ServingDataPlane(DataPlane):
    """kserve's data plane with Triton's server readiness and richer model metadata."""

    async def ready(self) -> bool:
        models = list(self.model_registry.get_models().values())
        return bool(models) and all(model.ready for model in models)

    async def model_metadata(self, model_name: str) -> dict[str, Any]:
        model = self.get_model_from_registry(model_name)
        if isinstance(model, PairModel):
            return model.metadata()
        return cast(dict[str, Any], await super().model_metadata(model_name))

    def metadata(self) -> dict[str, Any]:
        """Server metadata: no protocol extension is offered (no model repository routes)."""
        return {**super().metadata(), "extensions": []}

    def window_of(self, model_name: str) -> int:
        """Candles per window of the served version (what bounds a request's size)."""
        model = self.get_model_from_registry(model_name)
        served = model.served if isinstance(model, PairModel) else None
        if served is None:
            raise ModelNotReady(model_name)
        return served.signature.window


class MakeUsRichModelServer(ModelServer):
    """A kserve ModelServer for this project's models: REST, and gRPC when asked (grpc_server.py, not kserve's
    own, which binds every address and maps errors its way), one process, bound where asked, with a watcher
    that reloads promoted versions."""

    def __init__(self, options: ServeOptions) -> None:
        super().__init__(
            http_port=options.port,
            workers=1,
            enable_grpc=False,
            enable_docs_url=False,
            enable_latency_logging=False,
            grace_period=5,
        )
        self.options = options
        self.dataplane = ServingDataPlane(model_registry=self.registered_models)
        # Each refresh waits on its checks' process in one of these: a slow check holds one thread, no more.
        self._checking = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="check")
        self.fatal: Exception | None = None

    def models(self) -> list[PairModel]:
        return [m for m in self.registered_models.get_models().values() if isinstance(m, PairModel)]

    def sources(self) -> list[ModelSource]:
        options = self.options
        if options.model_dir:
            return list(folder_sources(options.model_dir))
        if not options.store:
            raise MakeUsRichError("serve needs --store URL or --model-dir DIR")
        return list(
            store_sources(options.store, options.namespace, list(options.pairs) or None, options.all_namespaces)
        )

    async def add_new_models(self, load: bool = True) -> list[PairModel]:
        """Register the sources not registered yet (all of them at start; on later polls, when serving every
        pair of a namespace, the pairs promoted since) and, with `load`, load each, all at once and each apart."""
        known = set(self.registered_models.get_models())
        sources = await asyncio.to_thread(self.sources)
        added = [PairModel(source, self.options) for source in sources if source.name not in known]
        for model in added:
            self.register_model(model)
        if load:
            await asyncio.gather(*(self.refresh(model) for model in added))
        return added

    async def refresh(self, model: PairModel) -> str:
        """One model's refresh in a checking thread: never on the event loop, never behind another model's."""
        return await asyncio.get_running_loop().run_in_executor(self._checking, model.refresh)

    async def watch(self) -> None:
        """Poll forever; never raises (a failing poll is logged and retried on the next tick). Each model's
        refresh runs on its own: a version whose check takes long holds back only its own pair's next poll."""
        discovering = not self.options.model_dir and not self.options.pairs
        refreshing: dict[str, asyncio.Task[str]] = {}
        while True:
            await asyncio.sleep(self.options.poll_seconds)
            try:
                if discovering:
                    await self.add_new_models(load=False)  # loaded below, like the others
                for model in self.models():
                    task = refreshing.get(model.name)
                    if task is None or task.done():
                        refreshing[model.name] = asyncio.create_task(self.refresh(model))
            except Exception:
                log.exception("model watcher: poll failed; retrying in %s s", self.options.poll_seconds)

    async def load_and_watch(self, http: uvicorn.Server) -> None:
        """The first versions of every model, then the watcher. When the source cannot be read, or with
        --model-dir nothing is servable (a mounted folder does not change, so it would never be ready), the server
        stops and `self.fatal` says why."""
        try:
            added = await self.add_new_models()
        except Exception as exc:  # no source to serve from (a store or folder that cannot be read): exit saying so
            self.fatal, http.should_exit = exc, True
            return
        if self.options.model_dir and not any(model.ready for model in added):
            reasons = "; ".join(f"{m.name}: {m.refusal.reason if m.refusal else 'no model file'}" for m in added)
            self.fatal = MakeUsRichError(f"no model in {self.options.model_dir} could be served ({reasons})")
            http.should_exit = True
            return
        if not added:
            log.warning("no models to serve yet; the watcher looks for them every %s s", self.options.poll_seconds)
        for model in added:
            if not model.ready:
                log.warning("%s: no servable version yet (%s)", model.name, model.source.describe())
        log.info(
            "models loaded", extra={"models": {m.name: m.served.version if m.served else None for m in self.models()}}
        )
        await self.watch()

    async def run(self, sock: socket.socket) -> None:
        """Answer HTTP at once (liveness while the first versions are checked, readiness once they serve) until
        SIGINT or SIGTERM, loading and watching the models beside it."""
        # Inference threads: enough that models at their concurrency limit leave threads for the others.
        workers = max(4, min(16, 2 * (os.cpu_count() or 2)))
        executor = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="infer")
        asyncio.get_running_loop().set_default_executor(executor)
        http = http_server(create_app(self.dataplane, self.options, self.dataplane.window_of), self.options)
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        grpc = None
        if self.options.grpc_port is not None:
            grpc, grpc_port = await start_grpc(self.dataplane, self.options, self.options.grpc_port)
            log.info("model server listening on grpc://%s:%s (v2 gRPC)", shown, grpc_port)
        log.info("model server listening on http://%s:%s (v2 REST)", shown, port)
        models = asyncio.create_task(self.load_and_watch(http))
        try:
            await http.serve(sockets=[sock])
        finally:
            models.cancel()
            if grpc is not None:  # uvicorn gave requests in flight five seconds: so does gRPC
                await grpc.stop(grace=5)
            stop_checks()  # their threads then return at once, so the process exits without waiting on them
            self._checking.shutdown(wait=False, cancel_futures=True)
        if self.fatal is not None:
            raise self.fatal


def serve(options: ServeOptions, sock: socket.socket | None = None) -> None:
    """Run the model server until SIGINT or SIGTERM (ServeOptions has checked the limits)."""
    server = MakeUsRichModelServer(options)
    sock = sock or bind(options.host, options.port)
    try:
        asyncio.run(server.run(sock))
    finally:
        sock.close()


__all__: Sequence[str] = ["MakeUsRichModelServer", "PairModel", "ServeOptions", "bind", "serve"]
