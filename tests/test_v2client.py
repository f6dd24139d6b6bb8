"""The v2 client against the real server, over REST and gRPC (the same answers either way), and its errors: each
failure is one sentence saying what happened."""

from __future__ import annotations

import asyncio
import gzip
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pandas as pd
import pytest

from makeusrich.v2client import (
    ModelNotFoundError,
    ModelNotReadyError,
    ServingError,
    V2Client,
    candle_array,
)
from tests.fixtures.model_server import RunningServer, free_port
from tests.serving.helpers import real_windows, reference, reference_outputs, sample_frame

PAIR = "btc-usdt"


@pytest.fixture(params=["rest", "grpc"])
async def client(model_server: RunningServer, request: pytest.FixtureRequest) -> AsyncIterator[V2Client]:
    async with V2Client(model_server.grpc_url if request.param == "grpc" else model_server.url, timeout=10) as v2:
        yield v2


def served_model(server: RunningServer) -> bytes:
    assert server.store is not None
    return server.store.store().read_model(server.store.version)


async def test_health_and_metadata(client: V2Client, model_server: RunningServer) -> None:
    assert await client.live() and await client.ready() and await client.model_ready(PAIR)
    meta = await client.model_metadata(PAIR)
    assert meta.name == PAIR and meta.window == 24 and meta.horizon == 1
    assert meta.levels == (0.05, 0.25, 0.5, 0.75, 0.95)
    assert meta.version == model_server.store.version  # type: ignore[union-attr]
    assert meta.parameters["interval"] == "1h" and meta.platform == "onnxruntime_onnx"
    assert (await client.server_metadata())["name"] == "kserve"


async def test_infer_returns_what_onnxruntime_returns(client: V2Client, model_server: RunningServer) -> None:
    windows = real_windows(24, 5, seed=9)
    got = await client.infer(PAIR, windows)
    assert got.dtype == np.float32 and np.array_equal(got, reference(served_model(model_server), windows))
    one = await client.infer(PAIR, windows[0])  # one [window, 5] array is a batch of one
    assert one.shape == (1, 1) and one[0, 0] == got[0, 0]


async def test_infer_result_carries_the_quantiles_and_how_old_things_are(
    client: V2Client, model_server: RunningServer
) -> None:
    assert model_server.store is not None
    windows = real_windows(24, 3, seed=4)
    expected = reference_outputs(served_model(model_server), windows)
    closed = datetime.now(UTC) - timedelta(hours=2)
    result = await client.infer_result(PAIR, windows, last_candle_close=closed)
    assert np.array_equal(result.forecast, expected["forecast"])
    assert result.quantiles is not None and np.array_equal(result.quantiles, expected["quantiles"])
    created_at = model_server.store.store().metadata(model_server.store.version)["createdAt"]
    assert result.parameters["model_version"] == model_server.store.version
    assert result.parameters["model_created_at"] == created_at
    assert 7200 - 2 <= result.parameters["last_candle_age_seconds"] <= 7200 + 2
    forecast_only = await client.infer_result(PAIR, windows, quantiles=False)
    assert forecast_only.quantiles is None and np.array_equal(forecast_only.forecast, expected["forecast"])


async def test_forecast_frame_from_real_candles(client: V2Client, model_server: RunningServer) -> None:
    frame = sample_frame().iloc[:-100].reset_index(drop=True)  # any point in history
    forecast = await client.forecast(PAIR, frame, "1h")
    assert list(forecast.columns) == [
        "close_time", "close", "last_close", "change", "model_version", "q0.05", "q0.25", "q0.5", "q0.75", "q0.95"
    ]  # fmt: skip
    assert len(forecast) == 1
    row = forecast.iloc[0]
    assert row["close_time"] == frame["open_time"].iloc[-1] + pd.Timedelta(hours=2)  # the next candle's close
    answer = reference_outputs(served_model(model_server), candle_array(frame, 24))
    expected = answer["forecast"][0, 0]
    assert row["close"] == float(expected) == row["q0.5"]
    assert [row[f"q{level}"] for level in (0.05, 0.25, 0.5, 0.75, 0.95)] == answer["quantiles"][0, 0].tolist()
    assert row["last_close"] == frame["close"].iloc[-1]
    assert row["change"] == pytest.approx(row["close"] / row["last_close"] - 1)
    assert row["model_version"] == model_server.store.version  # type: ignore[union-attr]


async def test_a_model_from_before_ranges_still_forecasts(single_output_server: RunningServer) -> None:
    assert single_output_server.store is not None
    model = single_output_server.store.store().read_model(single_output_server.store.version)
    frame = sample_frame().iloc[:-50].reset_index(drop=True)
    async with V2Client(single_output_server.url, timeout=10) as v2:
        assert (await v2.model_metadata(PAIR)).levels is None
        result = await v2.infer_result(PAIR, candle_array(frame, 24))
        assert result.quantiles is None and np.array_equal(result.forecast, reference(model, candle_array(frame, 24)))
        forecast = await v2.forecast(PAIR, frame, "1h")
    assert list(forecast.columns) == ["close_time", "close", "last_close", "change", "model_version"]
    assert forecast["close"].iloc[0] == float(result.forecast[0, 0])


async def test_server_refusal_is_passed_on_in_one_sentence(client: V2Client) -> None:
    with pytest.raises(ServingError) as caught:
        await client.infer(PAIR, real_windows(12, 1))
    assert caught.value.status == 400
    said = "400" if client.base_url.startswith("http") else "INVALID_ARGUMENT"
    assert str(caught.value) == (
        f"model 'btc-usdt' at {client.base_url} answered {said}: input 'candles' holds windows of 12 candles; "
        "this model takes 24 (shape [batch, 24, 5], oldest candle first)"
    )


async def test_unknown_model_names_the_models_the_server_has(client: V2Client) -> None:
    """Over gRPC the protocol has no listing: the sentence says so."""
    rest = client.base_url.startswith("http")
    served = "it serves btc-usdt" if rest else "it could not list what it serves (the gRPC protocol has no listing)"
    expected = f"the model server at {client.base_url} has no model 'eth-usdt'; {served}"
    with pytest.raises(ModelNotFoundError, match=f"^{re.escape(expected)}$"):
        await client.model_metadata("eth-usdt")
    with pytest.raises(ModelNotFoundError, match=re.escape(served)):
        await client.model_ready("eth-usdt")
    assert await client.list_models() == (["btc-usdt"] if rest else None)


async def test_model_listing_from_a_triton_server_or_none() -> None:
    """KServe's Python servers answer GET /v1/models; Triton answers POST /v2/repository/index; others neither."""

    def triton(request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path == "/v2/repository/index":
            return httpx.Response(200, json=[{"name": "eth-usdt", "state": "READY"}, {"name": "btc-usdt"}])
        return httpx.Response(404, json={"error": "not found"})

    async with mock(httpx.MockTransport(triton)) as v2:
        with pytest.raises(ModelNotFoundError, match="has no model 'x'; it serves btc-usdt, eth-usdt$"):
            await v2.model_metadata("x")
    async with mock(httpx.MockTransport(lambda request: httpx.Response(404, text="no"))) as v2:
        with pytest.raises(ModelNotFoundError, match="has no model 'x'; it could not list what it serves$"):
            await v2.model_metadata("x")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("127.0.0.1:8080", "has no scheme; write it as http://127.0.0.1:8080"),
        ("localhost:8080", "has no scheme; write it as http://localhost:8080"),
        ("ftp://host", "must look like http://host:port"),
        ("http://", "must look like http://host:port"),
        ("http://host:port", "is not a URL"),
        ("grpc://host", "must be grpc://host:port, with the port and no path"),
        ("grpc://host:8081/v2", "must be grpc://host:port, with the port and no path"),
    ],
)
def test_a_server_url_must_be_http_or_grpc_with_a_host(url: str, message: str) -> None:
    with pytest.raises(ServingError, match=re.escape(message)):
        V2Client(url)


async def test_too_few_candles_is_said_before_sending(client: V2Client) -> None:
    with pytest.raises(ServingError, match="the model needs 24 candles and only 10 were given"):
        await client.forecast(PAIR, sample_frame().tail(10), "1h", window=24)


@pytest.mark.parametrize("scheme", ["http", "grpc"])
async def test_unreachable_server(scheme: str) -> None:
    url = f"{scheme}://127.0.0.1:{free_port()}"
    async with V2Client(url, timeout=2) as v2:
        with pytest.raises(ServingError, match=f"the model server at {url} is unreachable .*is `makeusrich serve"):
            await v2.live()
        with pytest.raises(ServingError, match=f"the model server at {url} is unreachable"):
            await v2.model_metadata(PAIR)  # over gRPC: not mistaken for a model that is not ready


async def test_a_server_that_never_answers_times_out() -> None:
    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)  # read nothing, answer nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with V2Client(f"http://127.0.0.1:{port}", timeout=0.3) as v2:
            with pytest.raises(
                ServingError, match=r"GET http://127.0.0.1:\d+/v2/models/btc-usdt timed out after 0.3 s"
            ):
                await v2.model_metadata(PAIR)
    finally:
        for writer in writers:  # the server's end of each connection, or it leaks past the test's loop
            writer.close()
        server.close()
        await server.wait_closed()


def mock(handler: httpx.MockTransport) -> V2Client:
    return V2Client("http://v2.test", transport=handler)


async def test_not_ready_and_odd_answers_from_any_v2_server() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/ready"):
            return httpx.Response(503, json={"error": "Model with name m is not ready."})
        if path.endswith("/infer"):
            return httpx.Response(503, json={"error": "Model with name m is not ready."})
        if path == "/v2/models/html":
            return httpx.Response(200, text="<html>proxy login</html>")
        if path == "/v2/models/broken":
            return httpx.Response(200, json={"name": "broken", "inputs": [{"name": "candles"}]})
        return httpx.Response(500, text="upstream exploded")

    async with mock(httpx.MockTransport(handler)) as v2:
        assert await v2.model_ready("m") is False
        with pytest.raises(ModelNotReadyError, match="model 'm' at http://v2.test is not ready"):
            await v2.infer("m", np.ones((24, 5)))
        with pytest.raises(ServingError, match="answered with something that is not JSON"):
            await v2.model_metadata("html")
        with pytest.raises(ServingError, match="metadata of model 'broken' at http://v2.test is malformed"):
            await v2.model_metadata("broken")
        with pytest.raises(ServingError, match="the model server at http://v2.test answered 500: upstream exploded"):
            await v2.server_metadata()
        with pytest.raises(ServingError, match=r"candles must be \[window, 5\] or \[batch, window, 5\]"):
            await v2.infer("m", np.ones(5))


async def test_a_grpc_answer_past_the_limit_is_refused(model_server: RunningServer) -> None:
    async with V2Client(model_server.grpc_url, timeout=10, max_answer_bytes=1000) as v2:
        assert (await v2.infer(PAIR, real_windows(24, 4))).shape == (4, 1)
        with pytest.raises(ServingError, match="answered more than 1,000 bytes"):
            await v2.infer_result(PAIR, real_windows(24, 64))


async def test_an_answer_past_the_limit_is_refused_unread() -> None:
    """A server that declares a huge body, or streams one without end (chunked, or a small gzip that inflates),
    is refused once the limit is passed: the client never holds more than the limit in memory."""
    sent: dict[str, int] = {}
    endless = 64 * 1024 * 1024  # more than a client would survive reading whole, were it not refused

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        while (await reader.readline()).strip():
            pass  # the request's headers
        path = line.split()[1].decode()
        try:
            if path == "/v2/models/claims":
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 200000000\r\n\r\n{")
            elif path == "/v2/models/zipped":
                meta = {"name": "zipped", "inputs": [], "outputs": [], "parameters": {"window": 24}}
                body = gzip.compress(json.dumps(meta).encode())
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n" % len(body) + body
                )
            elif path == "/v2/models/bomb":
                body = gzip.compress(b" " * (4 * 1024 * 1024))
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n" % len(body) + body
                )
            else:
                writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                chunk = b"[" * 65536
                sent["bytes"] = 0
                while sent["bytes"] < endless:
                    writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    await writer.drain()
                    sent["bytes"] += len(chunk)
            await writer.drain()
        except ConnectionError:
            pass  # the client hung up, as it should
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with V2Client(f"http://127.0.0.1:{port}", timeout=10, max_answer_bytes=1024 * 1024) as v2:
            assert (await v2.model_metadata("zipped")).parameters == {"window": 24}  # a sound gzip answer is read
            for name in ("claims", "bomb", "endless"):
                with pytest.raises(ServingError, match=r"answered more than 1,048,576 bytes; refused unread"):
                    await v2.model_metadata(name)
        assert sent["bytes"] < endless  # it hung up rather than read to the end
    finally:
        server.close()
        await server.wait_closed()
