"""The one table from errors to what a client is told: an HTTP status over REST, a gRPC status code over gRPC.

Both transports answer the same mistake the same way (a malformed tensor is 400 and INVALID_ARGUMENT, an unknown
model 404 and NOT_FOUND), with the same sentence. Client mistakes are logged at debug level only; an error that
is not in the table is a fault of the server: 500 or INTERNAL, logged with its traceback. kserve's own
InvalidInput (its DataPlane's word for a request it cannot decode) is translated to BadRequest where it arises.
"""

from __future__ import annotations

from dataclasses import dataclass

from grpc import StatusCode

from makeusrich.errors import BadRequest, PayloadTooLarge
from makeusrich.serving.kserve_api import InferenceError, ModelNotFound, ModelNotReady, ServerNotReady


@dataclass(frozen=True)
class Status:
    http: int
    grpc: StatusCode


CLIENT_ERRORS: tuple[tuple[type[Exception], Status], ...] = (
    (BadRequest, Status(400, StatusCode.INVALID_ARGUMENT)),
    (ModelNotFound, Status(404, StatusCode.NOT_FOUND)),
    (PayloadTooLarge, Status(413, StatusCode.RESOURCE_EXHAUSTED)),
    (ModelNotReady, Status(503, StatusCode.UNAVAILABLE)),
    (ServerNotReady, Status(503, StatusCode.UNAVAILABLE)),
    (InferenceError, Status(500, StatusCode.INTERNAL)),  # PairModel.predict logged it already, with its traceback
)
SERVER_FAULT = Status(500, StatusCode.INTERNAL)


def status_of(error: BaseException) -> Status | None:
    """The table's status for an error; None for a fault of the server."""
    for kind, status in CLIENT_ERRORS:
        if isinstance(error, kind):
            return status
    return None


def fault_message(error: BaseException) -> str:
    """What a client is told about a fault of the server: its kind, never its details."""
    return f"internal error ({type(error).__name__}); see the server log"
