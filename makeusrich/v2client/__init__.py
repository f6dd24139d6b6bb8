"""The small v2 (Open Inference) client that the dashboard, the tracker and `makeusrich predict` use.

    client     V2Client: health, metadata and forecasts from candle frames; the URL's scheme picks the transport
    model      what the transports share: the URL check, model metadata, one reply
    rest       the REST transport (httpx)
    grpc_wire  the gRPC transport (grpcio), its messages declared from the protocol's field numbers

Callers import from this package, not its modules.
"""

from makeusrich.errors import ModelNotFoundError, ModelNotReadyError, ServingError
from makeusrich.net import DEFAULT_URL, SERVING_URL_ENV, check_url
from makeusrich.v2client.client import InferResult, V2Client, candle_array, forecast_frame
from makeusrich.v2client.model import MAX_ANSWER_BYTES, ModelMetadata

__all__ = [
    "DEFAULT_URL",
    "MAX_ANSWER_BYTES",
    "SERVING_URL_ENV",
    "InferResult",
    "ModelMetadata",
    "ModelNotFoundError",
    "ModelNotReadyError",
    "ServingError",
    "V2Client",
    "candle_array",
    "check_url",
    "forecast_frame",
]
