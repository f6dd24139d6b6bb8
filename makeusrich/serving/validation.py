"""Checks of v2 inference requests against a model's signature, as pure functions.

Every check raises BadRequest with one sentence a client can act on; the server turns it into HTTP 400. They
take plain values (names, datatypes, shapes, data), so they are tested without a server and reused by any
front end. Malformed input must never reach onnxruntime: a wrong shape there is an opaque runtime error, and a
NaN comes back as a NaN forecast that looks like an answer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from makeusrich.contract import FIELDS, TensorSpec
from makeusrich.errors import BadRequest

LAST_CANDLE_CLOSE = "last_candle_close"  # request parameter: when the window's last candle closed


@dataclass(frozen=True)
class Signature:
    """The candles-in, forecast-out contract of one served model (contract 2): the `forecast` output, and the
    `quantiles` output with its levels for models that have one (None and () for models from before ranges)."""

    input: TensorSpec
    output: TensorSpec
    quantiles: TensorSpec | None = None
    levels: tuple[float, ...] = ()

    @property
    def window(self) -> int:
        return self.input.shape[1]

    @property
    def horizon(self) -> int:
        return self.output.shape[1]

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        """Every output the model has, in the graph's order."""
        return (self.output,) if self.quantiles is None else (self.output, self.quantiles)


class RequestTensor(Protocol):
    """What the checks read from one request input; kserve's InferInput has these attributes."""

    name: str
    datatype: str
    shape: list[int]
    data: Any


def check_header(datatype: str, shape: Sequence[Any], signature: Signature, max_batch: int) -> tuple[int, ...]:
    """Datatype, rank, window length, field count and batch size, before any data is touched (a shape that
    promises a billion windows is refused without allocating anything)."""
    spec = signature.input
    if datatype != spec.datatype:
        raise BadRequest(f"input {spec.name!r} has datatype {datatype!r}; this model takes {spec.datatype}")
    if not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise BadRequest(f"input {spec.name!r} has shape {list(shape)}; a shape is a list of whole numbers")
    dims = tuple(int(d) for d in shape)
    if len(dims) != len(spec.shape):
        raise BadRequest(
            f"input {spec.name!r} has rank {len(dims)} (shape {list(dims)}); this model takes rank "
            f"{len(spec.shape)}: [batch, {signature.window}, {len(FIELDS)}]"
        )
    batch, window, fields = dims
    if window != signature.window:
        raise BadRequest(
            f"input {spec.name!r} holds windows of {window} candles; this model takes {signature.window} "
            f"(shape [batch, {signature.window}, {len(FIELDS)}], oldest candle first)"
        )
    if fields != len(FIELDS):
        raise BadRequest(
            f"input {spec.name!r} has {fields} values per candle; this model takes {len(FIELDS)}: " + ", ".join(FIELDS)
        )
    if batch < 1:
        raise BadRequest(f"input {spec.name!r} has a batch of {batch} windows; send at least one")
    if batch > max_batch:
        raise BadRequest(
            f"input {spec.name!r} has a batch of {batch} windows, more than this server's limit of {max_batch}; "
            "split the request"
        )
    return dims


def to_candles(data: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    """The request's data as a float32 array of `shape`, or BadRequest: data must be numbers (a flat list in
    row-major order or nested lists), exactly as many as the shape says, finite in float32, prices positive
    and volumes not negative."""
    try:
        raw = np.asarray(data)
    except (ValueError, TypeError):
        raise BadRequest(f"input {name!r}: data is not a regular array of numbers") from None
    if raw.dtype.kind not in "iuf":
        kind = {"b": "booleans", "U": "strings", "S": "bytes", "O": "mixed or nested values"}.get(raw.dtype.kind)
        raise BadRequest(f"input {name!r}: data must be numbers, got {kind or raw.dtype}")
    expected = math.prod(shape)
    if raw.size != expected:
        raise BadRequest(f"input {name!r} has {raw.size} values but its shape {list(shape)} needs {expected}")
    with np.errstate(over="ignore", invalid="ignore"):
        candles = raw.astype(np.float32, copy=False).reshape(shape)
    finite = np.isfinite(candles)
    if not finite.all():
        b, t, f = (int(i) for i in np.argwhere(~finite)[0])
        raise BadRequest(
            f"input {name!r} holds NaN or infinite values (first at window {b}, candle {t}, {FIELDS[f]}: "
            f"{float(raw.reshape(shape)[b, t, f]):g}); values must be finite 32-bit floats"
        )
    prices = candles[:, :, :4]
    if not (prices > 0).all():
        b, t, f = (int(i) for i in np.argwhere(prices <= 0)[0])
        raise BadRequest(
            f"input {name!r} has a price that is not positive (window {b}, candle {t}, {FIELDS[f]} = "
            f"{float(candles[b, t, f])}); prices must be > 0"
        )
    if (candles[:, :, 4] < 0).any():
        b, t = (int(i) for i in np.argwhere(candles[:, :, 4] < 0)[0])
        raise BadRequest(f"input {name!r} has a negative volume (window {b}, candle {t}); volumes must be >= 0")
    return np.ascontiguousarray(candles)


def check_request(
    inputs: Sequence[RequestTensor],
    signature: Signature,
    max_batch: int,
    requested_outputs: Sequence[str] = (),
) -> np.ndarray:
    """The candles of a v2 request, checked against the model: what onnxruntime will be given. Exactly one input,
    with the model's input name; requested outputs, if any, must be outputs the model has."""
    spec = signature.input
    unknown = [tensor.name for tensor in inputs if tensor.name != spec.name]
    if unknown:
        raise BadRequest(
            f"unknown input {unknown[0]!r}: this model takes one input, {spec.describe()}, raw candles oldest first"
        )
    if not inputs:
        raise BadRequest(f"the request has no inputs: send one input, {spec.describe()}")
    if len(inputs) > 1:
        raise BadRequest(f"the request sends input {spec.name!r} {len(inputs)} times; send it once")
    check_outputs(requested_outputs, signature)
    tensor = inputs[0]
    shape = check_header(tensor.datatype, tensor.shape, signature, max_batch)
    return to_candles(tensor.data, shape, tensor.name)


def check_outputs(requested: Sequence[str], signature: Signature) -> tuple[str, ...]:
    """The outputs to compute: those a request names, each once and each one the model has; all of them when it
    names none (as the v2 protocol says)."""
    known = [spec.name for spec in signature.outputs]
    for name in requested:
        if name not in known:
            has = " and ".join(spec.describe() for spec in signature.outputs)
            count = "one output" if len(known) == 1 else f"{len(known)} outputs"
            raise BadRequest(f"unknown output {name!r}: this model has {count}, {has}")
        if requested.count(name) > 1:
            raise BadRequest(f"the request asks for output {name!r} {requested.count(name)} times; name it once")
    return tuple(requested) if requested else tuple(known)


def check_output(values: np.ndarray, expected: tuple[int, ...], what: str) -> np.ndarray:
    """The model's answer must have the promised shape and be finite; a model that returns NaN for
    valid-looking candles is reported, not passed on as a price."""
    if values.shape != expected:
        raise ValueError(f"the model returned {what} of shape {list(values.shape)} instead of {list(expected)}")
    if not np.isfinite(values).all():
        raise BadRequest(
            f"the model's answer for these candles ({what}) is not finite; check that prices and volumes are "
            "plausible (raw values, not normalised)"
        )
    return values


def check_forecast(forecast: np.ndarray, batch: int, signature: Signature) -> np.ndarray:
    return check_output(forecast, (batch, signature.horizon), "forecast")


def check_answer(answer: Mapping[str, np.ndarray], batch: int, signature: Signature) -> None:
    """Each output the model computed, checked for the shape its kind promises."""
    for name, values in answer.items():
        if signature.quantiles is not None and name == signature.quantiles.name:
            check_output(values, (batch, signature.horizon, len(signature.levels)), "quantiles")
        else:
            check_forecast(values, batch, signature)


def rfc3339(value: object) -> datetime | None:
    """A time as RFC 3339 writes it (2024-01-01T01:00:00Z, or with an offset such as +02:00), in UTC; None for
    anything else (a date alone, a time without its offset, a number)."""
    if not isinstance(value, str) or "T" not in value.upper():
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo is not None else None


def check_last_candle_close(parameters: Mapping[str, Any] | None) -> datetime | None:
    """The request's `last_candle_close` parameter (the close of the window's last candle), if it has one: a
    client that sends it learns how old its data is; one that sends it malformed is told, not ignored."""
    value = (parameters or {}).get(LAST_CANDLE_CLOSE)
    if value is None:
        return None
    moment = rfc3339(value)
    if moment is None:
        raise BadRequest(
            f"parameter {LAST_CANDLE_CLOSE!r} is {value!r}, not an RFC 3339 time such as 2024-01-01T01:00:00Z"
        )
    return moment
