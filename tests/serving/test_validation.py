"""The request checks as pure functions: every bad request is refused with a sentence that names the problem,
and a good one becomes exactly the float32 array onnxruntime will get."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from makeusrich.serving.validation import (
    BadRequest,
    Signature,
    TensorSpec,
    check_answer,
    check_forecast,
    check_last_candle_close,
    check_outputs,
    check_request,
    rfc3339,
)
from tests.serving.helpers import real_windows

SINGLE = Signature(TensorSpec("candles", "FP32", (-1, 24, 5)), TensorSpec("forecast", "FP32", (-1, 1)))
LEVELS = (0.05, 0.25, 0.5, 0.75, 0.95)
SIGNATURE = Signature(SINGLE.input, SINGLE.output, TensorSpec("quantiles", "FP32", (-1, 1, 5)), LEVELS)


@dataclass
class Tensor:
    name: str
    datatype: str
    shape: list[Any]
    data: Any


def good(batch: int = 2) -> tuple[np.ndarray, Tensor]:
    windows = real_windows(24, batch)
    return windows, Tensor("candles", "FP32", list(windows.shape), windows.ravel().tolist())


def refused(inputs: list[Tensor], max_batch: int = 64, outputs: tuple[str, ...] = ()) -> str:
    with pytest.raises(BadRequest) as caught:
        check_request(inputs, SIGNATURE, max_batch, outputs)
    return str(caught.value)


def test_a_good_request_is_the_exact_float32_input() -> None:
    windows, tensor = good(3)
    candles = check_request([tensor], SIGNATURE, 64)
    assert candles.dtype == np.float32 and candles.shape == (3, 24, 5) and candles.flags.c_contiguous
    assert np.array_equal(candles, windows)


def test_nested_lists_are_accepted_too() -> None:
    windows, tensor = good(2)
    tensor.data = windows.tolist()
    assert np.array_equal(check_request([tensor], SIGNATURE, 64), windows)


def test_unknown_input_name() -> None:
    _, tensor = good()
    tensor.name = "prices"
    message = refused([tensor])
    assert "unknown input 'prices'" in message and "'candles' (FP32 [batch, 24, 5])" in message


def test_no_input_and_repeated_input() -> None:
    _, tensor = good()
    assert "has no inputs" in refused([])
    assert "2 times" in refused([tensor, tensor])


def test_unknown_requested_output() -> None:
    _, tensor = good()
    message = refused([tensor], outputs=("price",))
    assert message == (
        "unknown output 'price': this model has 2 outputs, 'forecast' (FP32 [batch, 1]) and "
        "'quantiles' (FP32 [batch, 1, 5])"
    )
    with pytest.raises(BadRequest, match=r"^unknown output 'quantiles': this model has one output, 'forecast' "):
        check_request([tensor], SINGLE, 64, ("quantiles",))  # a model from before ranges


def test_requested_outputs_are_those_computed() -> None:
    assert check_outputs([], SIGNATURE) == ("forecast", "quantiles")  # none named: all of them
    assert check_outputs([], SINGLE) == ("forecast",)
    assert check_outputs(["quantiles"], SIGNATURE) == ("quantiles",)
    assert check_outputs(["quantiles", "forecast"], SIGNATURE) == ("quantiles", "forecast")
    with pytest.raises(BadRequest, match="asks for output 'forecast' 2 times; name it once"):
        check_outputs(["forecast", "forecast"], SIGNATURE)


@pytest.mark.parametrize("datatype", ["FP64", "FP16", "INT32", "BYTES", "fp32"])
def test_wrong_datatype(datatype: str) -> None:
    _, tensor = good()
    tensor.datatype = datatype
    assert f"datatype {datatype!r}; this model takes FP32" in refused([tensor])


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ([48, 5], "rank 2"),
        ([1, 2, 24, 5], "rank 4"),
        ([2, 20, 5], "windows of 20 candles; this model takes 24"),
        ([2, 24, 4], "4 values per candle; this model takes 5: open, high, low, close, volume"),
        ([0, 24, 5], "batch of 0 windows"),
        ([2, 24.0, 5], "a list of whole numbers"),
        ([2, True, 5], "a list of whole numbers"),
    ],
)
def test_wrong_shape(shape: list[Any], expected: str) -> None:
    _, tensor = good()
    tensor.shape = shape
    assert expected in refused([tensor])


def test_batch_over_the_limit_is_refused_before_reading_data() -> None:
    tensor = Tensor("candles", "FP32", [10**9, 24, 5], [1.0])  # would be 480 GB if allocated
    message = refused([tensor], max_batch=1024)
    assert "batch of 1000000000 windows, more than this server's limit of 1024" in message


def test_data_count_must_match_the_shape() -> None:
    windows, tensor = good(2)
    tensor.data = windows.ravel().tolist()[:-1]
    assert "has 239 values but its shape [2, 24, 5] needs 240" in refused([tensor])


@pytest.mark.parametrize(
    ("value", "expected"),
    [(float("nan"), "nan"), (float("inf"), "inf"), (-float("inf"), "-inf"), (1e39, "1e+39")],
)
def test_nan_and_infinity_are_refused(value: float, expected: str) -> None:
    _, tensor = good(2)
    tensor.data[1 * 120 + 7 * 5 + 3] = value  # window 1, candle 7, close
    message = refused([tensor])
    assert f"NaN or infinite values (first at window 1, candle 7, close: {expected})" in message


@pytest.mark.parametrize(
    ("data", "expected"),
    [(["1.0"] * 240, "got strings"), ([True] * 240, "got booleans"), ([[1.0, 2.0], [3.0]], "not a regular array")],
)
def test_data_must_be_numbers(data: Any, expected: str) -> None:
    _, tensor = good(2)
    tensor.data = data
    assert expected in refused([tensor])


def test_prices_must_be_positive_and_volumes_not_negative() -> None:
    _windows, tensor = good(2)
    tensor.data[5 * 5 + 1] = 0.0  # window 0, candle 5, high
    assert "price that is not positive (window 0, candle 5, high = 0.0)" in refused([tensor])
    _, tensor = good(2)
    tensor.data[120 + 4] = -1.0  # window 1, candle 0, volume
    assert "negative volume (window 1, candle 0)" in refused([tensor])


def test_a_forecast_must_be_finite() -> None:
    assert check_forecast(np.ones((2, 1), np.float32), 2, SIGNATURE).shape == (2, 1)
    with pytest.raises(BadRequest, match="not finite"):
        check_forecast(np.array([[np.nan]], np.float32), 1, SIGNATURE)
    with pytest.raises(ValueError, match=r"shape \[2, 2\] instead of \[2, 1\]"):
        check_forecast(np.ones((2, 2), np.float32), 2, SIGNATURE)


def test_quantiles_must_have_their_shape_and_be_finite() -> None:
    forecast, quantiles = np.ones((2, 1), np.float32), np.ones((2, 1, 5), np.float32)
    check_answer({"forecast": forecast, "quantiles": quantiles}, 2, SIGNATURE)
    check_answer({"quantiles": quantiles}, 2, SIGNATURE)
    with pytest.raises(ValueError, match=r"quantiles of shape \[2, 1, 3\] instead of \[2, 1, 5\]"):
        check_answer({"quantiles": np.ones((2, 1, 3), np.float32)}, 2, SIGNATURE)
    quantiles[1, 0, 4] = np.inf
    with pytest.raises(BadRequest, match=r"for these candles \(quantiles\) is not finite"):
        check_answer({"forecast": forecast, "quantiles": quantiles}, 2, SIGNATURE)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-01T01:00:00Z", datetime(2024, 1, 1, 1, tzinfo=UTC)),
        ("2024-01-01T03:00:00+02:00", datetime(2024, 1, 1, 1, tzinfo=UTC)),
        ("2024-01-01T01:00:00.250Z", datetime(2024, 1, 1, 1, 0, 0, 250_000, tzinfo=UTC)),
        ("2024-01-01T01:00:00", None),  # no offset: which time zone?
        ("2024-01-01", None),
        ("yesterday", None),
        (1704070800, None),
    ],
)
def test_times_are_rfc3339(text: object, expected: datetime | None) -> None:
    assert rfc3339(text) == expected


def test_last_candle_close_parameter() -> None:
    assert check_last_candle_close(None) is None and check_last_candle_close({"other": 1}) is None
    assert check_last_candle_close({"last_candle_close": "2024-01-01T01:00:00Z"}) == datetime(2024, 1, 1, 1, tzinfo=UTC)
    with pytest.raises(BadRequest) as caught:
        check_last_candle_close({"last_candle_close": "01/01/2024"})
    assert str(caught.value) == (
        "parameter 'last_candle_close' is '01/01/2024', not an RFC 3339 time such as 2024-01-01T01:00:00Z"
    )
