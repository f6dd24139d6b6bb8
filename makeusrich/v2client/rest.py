"""The v2 protocol over REST (httpx): JSON requests, answers read whole but never past the client's limit."""

from __future__ import annotations

import json
import zlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from makeusrich.contract import DATATYPE, INPUT_NAME
from makeusrich.errors import ModelNotFoundError, ModelNotReadyError, ServingError
from makeusrich.v2client.model import MAX_ANSWER_BYTES, ModelMetadata, Reply

try:  # orjson (a kserve and nicegui dependency) encodes a 64-window batch ~10x faster than json
    import orjson

    def _dumps(value: Any) -> bytes:
        return orjson.dumps(value)

except ImportError:  # pragma: no cover - depends on the environment

    def _dumps(value: Any) -> bytes:
        return json.dumps(value).encode()


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


class RestWire:
    """The v2 REST protocol at `base_url` (checked), over one httpx.AsyncClient that keeps connections alive."""

    def __init__(
        self,
        base_url: str,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ):
        self.base_url = base_url
        self.timeout = timeout
        self.max_answer_bytes = max_answer_bytes
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)),
            transport=transport,
            headers={"accept": "application/json", "accept-encoding": "gzip, deflate"},
        )

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

    async def infer(self, name: str, candles: np.ndarray, outputs: Sequence[str], parameters: dict[str, str]) -> Reply:
        """One inference in JSON: the candles as a flat list, the outputs named (none: every output)."""
        tensor = {
            "name": INPUT_NAME,
            "shape": list(candles.shape),
            "datatype": DATATYPE,
            "data": candles.ravel().tolist(),
        }
        request: dict[str, Any] = {"inputs": [tensor]}
        if outputs:
            request["outputs"] = [{"name": output} for output in outputs]
        if parameters:
            request["parameters"] = parameters
        body = await self._json("POST", f"/v2/models/{name}/infer", name, _dumps(request))
        try:
            arrays = {str(o["name"]): _output_array(o) for o in body["outputs"]}
        except (KeyError, TypeError, ValueError):
            raise ServingError(f"model {name!r} at {self.base_url} answered outputs that are not arrays") from None
        version, answered = body.get("model_version"), body.get("parameters")
        return Reply(
            arrays,
            str(body.get("model_name", name)),
            str(version) if version else None,
            body.get("id"),
            dict(answered) if isinstance(answered, dict) else {},
        )


def _output_array(output: dict[str, Any]) -> np.ndarray:
    """One output of a v2 JSON answer as a float32 array of its shape."""
    return np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])


async def _whole(content: bytes) -> AsyncIterator[bytes]:
    yield content
