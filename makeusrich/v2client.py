"""A small async client for the KServe v2 (Open Inference) REST protocol, for this project's models.

It talks to any v2 server that serves contract 2 (`makeusrich serve`, KServe's Triton runtime, MLServer):
health, model metadata, and inference from a candle frame to a forecast frame (with the model's quantiles as
columns `q0.05`... when it has a `quantiles` output; models from before ranges have none). One
httpx.AsyncClient per V2Client keeps connections alive. Every failure is a ServingError whose message is one
sentence: the server is unreachable, the model is unknown or not ready, the request timed out, or what the
server said was wrong.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import numpy as np
import pandas as pd

from makeusrich.contract import DATATYPE, INPUT_NAME, OUTPUT_NAME, QUANTILES_NAME, TensorSpec, iso_z, quantile_column
from makeusrich.errors import ModelNotFoundError, ModelNotReadyError, ServingError
from makeusrich.market import OHLCV, close_moments, interval_ms

try:  # orjson (a kserve and nicegui dependency) encodes a 64-window batch ~10x faster than json
    import orjson

    def _dumps(value: Any) -> bytes:
        return orjson.dumps(value)

except ImportError:  # pragma: no cover - depends on the environment

    def _dumps(value: Any) -> bytes:
        return json.dumps(value).encode()


DEFAULT_URL = "http://127.0.0.1:8080"
SERVING_URL_ENV = "MAKEUSRICH_SERVING_URL"
# The most of one answer a client reads: a batch of 4,096 windows of a 24-step model with 5 quantile levels is
# about 12 MB of JSON; a server that sends more is broken or hostile, and reading it whole would cost the
# tracker or the dashboard its memory.
MAX_ANSWER_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Answer:
    """A model server's answer, read whole but never past the client's limit."""

    status_code: int
    content: bytes
    reason_phrase: str = ""

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


@dataclass(frozen=True)
class ModelMetadata:
    """GET /v2/models/<name>, with the fields this project's server adds in `parameters`."""

    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    parameters: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ModelMetadata:
        def tensors(key: str) -> tuple[TensorSpec, ...]:
            return tuple(
                TensorSpec(str(t["name"]), str(t["datatype"]), tuple(int(d) for d in t["shape"]))
                for t in body.get(key, [])
            )

        return cls(
            name=str(body["name"]),
            versions=tuple(str(v) for v in body.get("versions") or ()),
            platform=str(body.get("platform", "")),
            inputs=tensors("inputs"),
            outputs=tensors("outputs"),
            parameters=dict(body.get("parameters") or {}),
        )

    @property
    def version(self) -> str | None:
        """The served version: our server names it; a plain v2 server may list several or none."""
        served = self.parameters.get("served_version")
        return str(served) if served else (self.versions[-1] if self.versions else None)

    def _tensor(self, tensors: tuple[TensorSpec, ...], name: str) -> TensorSpec:
        for tensor in tensors:
            if tensor.name == name:
                return tensor
        raise ServingError(f"model {self.name} has no tensor {name!r} (it lists {[t.name for t in tensors]})")

    @property
    def window(self) -> int:
        """Candles per input window, from the input's shape [batch, window, 5]."""
        shape = self._tensor(self.inputs, INPUT_NAME).shape
        if len(shape) != 3 or shape[1] < 1:
            raise ServingError(f"model {self.name}'s input shape {list(shape)} is not [batch, window, 5]")
        return shape[1]

    @property
    def horizon(self) -> int:
        shape = self._tensor(self.outputs, OUTPUT_NAME).shape
        if len(shape) != 2 or shape[1] < 1:
            raise ServingError(f"model {self.name}'s output shape {list(shape)} is not [batch, horizon]")
        return shape[1]

    @property
    def kind(self) -> str | None:
        """Which model is served (lstm or baseline), when the server says (this project's does)."""
        kind = self.parameters.get("model_kind")
        return str(kind) if kind else None

    @property
    def levels(self) -> tuple[float, ...] | None:
        """The levels of the model's `quantiles` output, as our server names them; None for a model without one,
        or from a server that does not say (KServe's Triton runtime)."""
        levels = self.parameters.get("quantile_levels")
        return tuple(float(v) for v in levels) if isinstance(levels, list) and levels else None


@dataclass(frozen=True)
class InferResult:
    """One answer: the forecast [batch, horizon], the quantiles [batch, horizon, levels] when the model has them
    and they were asked for, and the response's `parameters` (our server says there how old the model and the
    candles are: model_created_at, model_age_seconds, last_candle_age_seconds)."""

    forecast: np.ndarray
    model_name: str
    model_version: str | None
    id: str | None
    quantiles: np.ndarray | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


def candle_array(candles: pd.DataFrame, window: int) -> np.ndarray:
    """The last `window` candles of a candle frame as a [1, window, 5] float32 array."""
    missing = [c for c in OHLCV if c not in candles.columns]
    if missing:
        raise ServingError(f"the candle frame lacks the columns {missing}")
    if len(candles) < window:
        raise ServingError(f"the model needs {window} candles and only {len(candles)} were given")
    values = candles[list(OHLCV)].tail(window).to_numpy(dtype=np.float32)
    return values.reshape(1, window, len(OHLCV))


def forecast_frame(
    candles: pd.DataFrame,
    forecast: np.ndarray,
    interval: str,
    model_version: str | None,
    quantiles: np.ndarray | None = None,
    levels: Sequence[float] | None = None,
) -> pd.DataFrame:
    """One row per predicted candle: when it closes, the predicted close, and the change from the last close;
    with quantiles [horizon, levels] and their levels, one more column per level (`q0.05`, ...)."""
    last = candles.iloc[-1]
    step = pd.Timedelta(milliseconds=interval_ms(interval))
    prices = np.asarray(forecast, dtype=np.float64).reshape(-1)
    last_close = float(last["close"])
    frame = pd.DataFrame(
        {
            "close_time": [last["open_time"] + step * (i + 2) for i in range(len(prices))],
            "close": prices,
            "last_close": last_close,
            "change": prices / last_close - 1.0,
            "model_version": model_version,
        }
    )
    if quantiles is not None and levels:
        values = np.asarray(quantiles, dtype=np.float64).reshape(len(prices), len(levels))
        for i, level in enumerate(levels):
            frame[quantile_column(level)] = values[:, i]
    return frame


def check_url(url: str) -> str:
    """A model server's base URL, without a trailing slash; a ServingError unless it is http(s)://host[:port]."""
    text = url.strip()
    if "://" not in text:
        raise ServingError(f"the model server URL {url!r} has no scheme; write it as http://{text or 'host:port'}")
    try:
        parsed = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise ServingError(f"the model server URL {url!r} is not a URL ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ServingError(f"the model server URL {url!r} must look like http://host:port or https://host")
    return text.rstrip("/")


class V2Client:
    """`async with V2Client(url) as client: ...`; or call `aclose()` when done."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ):
        self.base_url = check_url(base_url)
        self.timeout = timeout
        self.max_answer_bytes = max_answer_bytes
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)),
            transport=transport,
            headers={"accept": "application/json", "accept-encoding": "gzip, deflate"},
        )

    async def __aenter__(self) -> V2Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, body: bytes | None = None) -> Answer:
        headers = {"content-type": "application/json"} if body is not None else None
        request = self._http.build_request(method, path, content=body, headers=headers)
        try:
            response = await self._http.send(request, stream=True)
            try:
                return Answer(response.status_code, await self._read(response, method, path), response.reason_phrase)
            finally:
                await response.aclose()
        except httpx.TimeoutException:
            raise ServingError(
                f"{method} {self.base_url}{path} timed out after {self.timeout:g} s; the server is overloaded or stuck"
            ) from None
        except httpx.TransportError as exc:
            raise ServingError(
                f"the model server at {self.base_url} is unreachable ({type(exc).__name__}: {exc or 'no answer'}); "
                "is `makeusrich serve` running there?"
            ) from None

    async def _read(self, response: httpx.Response, method: str, path: str) -> bytes:
        """The answer's body, refused (by its Content-Length, or once it grows past the limit) when too big. A
        gzip or deflate body is inflated here, a piece at a time and never past the limit: httpx would inflate
        each piece whole, and a small piece of a hostile gzip inflates to hundreds of megabytes."""
        too_big = ServingError(
            f"{method} {self.base_url}{path} answered more than {self.max_answer_bytes:,} bytes; refused unread "
            "(a v2 model server answers a forecast in kilobytes: check that the URL is one)"
        )
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_answer_bytes:
            raise too_big
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("identity", "", "gzip", "deflate"):
            raise ServingError(
                f"{method} {self.base_url}{path} answered in {encoding!r}, which this client does not read (it "
                "asks for gzip or deflate: check what stands between it and the model server)"
            )
        inflater = zlib.decompressobj(47) if encoding in ("gzip", "deflate") else None  # 47: gzip or zlib header
        body = bytearray()
        if response.is_stream_consumed:  # built whole (a mock transport in tests): its bytes are decoded already
            inflater, raws = None, _whole(response.content)
        else:
            raws = response.aiter_raw()
        async for raw in raws:
            pending = raw
            while pending:
                if inflater is None:
                    piece, pending = pending, b""
                else:
                    piece = inflater.decompress(pending, self.max_answer_bytes + 1 - len(body))
                    pending = b"" if inflater.eof else inflater.unconsumed_tail
                body += piece
                if len(body) > self.max_answer_bytes:
                    raise too_big
        return bytes(body)

    async def _fail(self, response: Answer, model: str | None) -> ServingError:
        try:
            message = str(response.json().get("error") or response.text)
        except (ValueError, AttributeError):
            message = response.text.strip()[:300] or response.reason_phrase
        status = response.status_code
        if status == 404 and model is not None:
            names = await self.list_models()
            served = "it could not list what it serves"
            if names is not None:
                served = f"it serves {', '.join(names) or 'no model yet'}"
            return ModelNotFoundError(f"the model server at {self.base_url} has no model {model!r}; {served}", status)
        if status == 503 and model is not None:
            return ModelNotReadyError(
                f"model {model!r} at {self.base_url} is not ready (no promoted version loaded yet)", status
            )
        where = f"model {model!r}" if model else "the model server"
        return ServingError(f"{where} at {self.base_url} answered {status}: {message}", status)

    async def _json(
        self, method: str, path: str, model: str | None = None, body: bytes | None = None
    ) -> dict[str, Any]:
        response = await self._request(method, path, body)
        if response.status_code != 200:
            raise await self._fail(response, model)
        try:
            value = response.json()
        except ValueError:
            raise ServingError(f"{self.base_url}{path} answered with something that is not JSON") from None
        if not isinstance(value, dict):
            raise ServingError(f"{self.base_url}{path} answered with JSON that is not an object")
        return value

    async def _health(self, path: str, model: str | None = None) -> bool:
        response = await self._request("GET", path)
        if response.status_code == 200:
            return True
        if response.status_code == 503:
            return False
        raise await self._fail(response, model)

    async def live(self) -> bool:
        return await self._health("/v2/health/live")

    async def ready(self) -> bool:
        return await self._health("/v2/health/ready")

    async def list_models(self) -> list[str] | None:
        """The names of the models the server has: KServe's `GET /v2/models`, else Triton's repository index;
        None when it offers neither (the v2 protocol itself has no listing)."""
        for method, path, body in (("GET", "/v2/models", None), ("POST", "/v2/repository/index", b"{}")):
            try:
                response = await self._request(method, path, body)
                value = response.json() if response.status_code == 200 else None
            except (ServingError, ValueError):
                continue
            if isinstance(value, dict) and isinstance(value.get("models"), list):
                return sorted(str(name) for name in value["models"])
            if isinstance(value, list):
                return sorted(str(item["name"]) for item in value if isinstance(item, dict) and "name" in item)
        return None

    async def server_metadata(self) -> dict[str, Any]:
        return await self._json("GET", "/v2")

    async def model_ready(self, name: str) -> bool:
        """True when the model answers requests; False while it loads; ModelNotFoundError when unknown."""
        return await self._health(f"/v2/models/{name}/ready", name)

    async def model_metadata(self, name: str) -> ModelMetadata:
        body = await self._json("GET", f"/v2/models/{name}", name)
        try:
            return ModelMetadata.from_json(body)
        except (KeyError, TypeError, ValueError) as exc:
            raise ServingError(f"metadata of model {name!r} at {self.base_url} is malformed ({exc})") from None

    async def infer_result(
        self,
        name: str,
        candles: np.ndarray,
        quantiles: bool = True,
        last_candle_close: datetime | None = None,
    ) -> InferResult:
        """Forecasts for raw candle windows: [window, 5] or [batch, window, 5]. With `quantiles` the request
        names no outputs, so any v2 server answers every output the model has (the quantiles too, when it has
        them); without, it asks for the forecast alone. `last_candle_close` (when the last candle of the window
        closed) lets our server say how old the candles are."""
        array = np.asarray(candles, dtype=np.float32)
        if array.ndim == 2:
            array = array[np.newaxis]
        if array.ndim != 3:
            raise ServingError(f"candles must be [window, 5] or [batch, window, 5], not {list(array.shape)}")
        tensor = {"name": INPUT_NAME, "shape": list(array.shape), "datatype": DATATYPE, "data": array.ravel().tolist()}
        request: dict[str, Any] = {"inputs": [tensor]}
        if not quantiles:
            request["outputs"] = [{"name": OUTPUT_NAME}]
        if last_candle_close is not None:
            request["parameters"] = {"last_candle_close": iso_z(last_candle_close)}
        body = await self._json("POST", f"/v2/models/{name}/infer", name, _dumps(request))
        try:
            outputs = {str(o["name"]): o for o in body["outputs"]}
            forecast = _output_array(outputs[OUTPUT_NAME])
            ranges = _output_array(outputs[QUANTILES_NAME]) if QUANTILES_NAME in outputs else None
        except (KeyError, TypeError, ValueError):
            raise ServingError(
                f"model {name!r} at {self.base_url} answered without a usable {OUTPUT_NAME!r} output"
            ) from None
        if forecast.ndim != 2 or forecast.shape[0] != array.shape[0]:
            raise ServingError(f"model {name!r} returned shape {list(forecast.shape)} for {array.shape[0]} windows")
        if ranges is not None and (ranges.ndim != 3 or ranges.shape[:2] != forecast.shape):
            raise ServingError(
                f"model {name!r} returned quantiles of shape {list(ranges.shape)} for forecasts of shape "
                f"{list(forecast.shape)}"
            )
        version = body.get("model_version")
        parameters = body.get("parameters")
        return InferResult(
            forecast,
            str(body.get("model_name", name)),
            str(version) if version else None,
            body.get("id"),
            ranges,
            dict(parameters) if isinstance(parameters, dict) else {},
        )

    async def infer(self, name: str, candles: np.ndarray) -> np.ndarray:
        """[batch, horizon] predicted closes for [batch, window, 5] (or one [window, 5]) raw candles."""
        return (await self.infer_result(name, candles, quantiles=False)).forecast

    async def forecast(
        self,
        name: str,
        candles: pd.DataFrame,
        interval: str,
        window: int | None = None,
        levels: Sequence[float] | None = None,
    ) -> pd.DataFrame:
        """The model's forecast after the last candle of a candle frame (makeusrich.market.candles), one row per
        predicted candle, with a column per quantile level when the model has quantiles. The window length and
        the levels come from the model's metadata unless given (it is read only when one is missing)."""
        meta = None
        if window is None:
            meta = await self.model_metadata(name)
            window = meta.window
        array = candle_array(candles, window)
        closes_at = close_moments(candles["open_time"].tail(1), interval).iloc[0].to_pydatetime()
        result = await self.infer_result(name, array, last_candle_close=closes_at)
        if result.quantiles is not None and levels is None:
            levels = (meta or await self.model_metadata(name)).levels
        if levels is not None and result.quantiles is not None and len(levels) != result.quantiles.shape[2]:
            raise ServingError(
                f"model {name!r} at {self.base_url} answered {result.quantiles.shape[2]} quantiles per candle but "
                f"its metadata names {len(levels)} levels"
            )
        quantiles = result.quantiles[0] if result.quantiles is not None else None
        return forecast_frame(candles, result.forecast[0], interval, result.model_version, quantiles, levels)


def _output_array(output: dict[str, Any]) -> np.ndarray:
    """One output of a v2 JSON answer as a float32 array of its shape."""
    return np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])


async def _whole(content: bytes) -> AsyncIterator[bytes]:
    yield content
