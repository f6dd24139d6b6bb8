"""A small async client for the KServe v2 (Open Inference) protocol, for this project's models, over REST or gRPC.

It talks to any v2 server that serves contract 2 (`makeusrich serve`, KServe's Triton runtime, MLServer):
health, model metadata, and inference from a candle frame to a forecast frame (with the model's quantiles as
columns `q0.05`... when it has a `quantiles` output; models from before ranges have none). The URL's scheme
picks the transport: http(s):// speaks REST (rest.py), grpc:// the v2 gRPC service (grpc_wire.py); what a
caller gets is the same. Every failure is a ServingError whose message is one sentence: the server is
unreachable, the model is unknown or not ready, the request timed out, or what the server said was wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import numpy as np
import pandas as pd

from makeusrich.contract import OUTPUT_NAME, QUANTILES_NAME, iso_z, quantile_column
from makeusrich.errors import ServingError
from makeusrich.market import OHLCV, close_moments, interval_ms
from makeusrich.net import DEFAULT_URL, check_url
from makeusrich.v2client.model import MAX_ANSWER_BYTES, ModelMetadata, Wire
from makeusrich.v2client.rest import RestWire


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


class V2Client:
    """`async with V2Client(url) as client: ...`; or call `aclose()` when done. `transport` replaces httpx's
    (REST only: a mock in tests)."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ):
        self.base_url = check_url(base_url)
        self.timeout = timeout
        self._wire: Wire
        if self.base_url.startswith("grpc://"):
            from makeusrich.v2client.grpc_wire import GrpcWire  # grpcio: loaded by the processes that speak it

            self._wire = GrpcWire(self.base_url, timeout, max_answer_bytes)
        else:
            self._wire = RestWire(self.base_url, timeout, transport, max_answer_bytes)

    async def __aenter__(self) -> V2Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._wire.aclose()

    async def live(self) -> bool:
        return await self._wire.live()

    async def ready(self) -> bool:
        return await self._wire.ready()

    async def list_models(self) -> list[str] | None:
        """The names of the models the server has: KServe's `GET /v2/models`, else Triton's repository index;
        None when it offers neither (the v2 protocol itself has no listing, nor has its gRPC service)."""
        return await self._wire.list_models()

    async def server_metadata(self) -> dict[str, Any]:
        return await self._wire.server_metadata()

    async def model_ready(self, name: str) -> bool:
        """True when the model answers requests; False while it loads; ModelNotFoundError when unknown."""
        return await self._wire.model_ready(name)

    async def model_metadata(self, name: str) -> ModelMetadata:
        return await self._wire.model_metadata(name)

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
        parameters = {"last_candle_close": iso_z(last_candle_close)} if last_candle_close is not None else {}
        reply = await self._wire.infer(name, array, () if quantiles else (OUTPUT_NAME,), parameters)
        forecast, ranges = reply.outputs.get(OUTPUT_NAME), reply.outputs.get(QUANTILES_NAME)
        if forecast is None:
            raise ServingError(f"model {name!r} at {self.base_url} answered without a usable {OUTPUT_NAME!r} output")
        if forecast.ndim != 2 or forecast.shape[0] != array.shape[0]:
            raise ServingError(f"model {name!r} returned shape {list(forecast.shape)} for {array.shape[0]} windows")
        if ranges is not None and (ranges.ndim != 3 or ranges.shape[:2] != forecast.shape):
            raise ServingError(
                f"model {name!r} returned quantiles of shape {list(ranges.shape)} for forecasts of shape "
                f"{list(forecast.shape)}"
            )
        return InferResult(forecast, reply.model_name, reply.model_version, reply.id, ranges, reply.parameters)

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
