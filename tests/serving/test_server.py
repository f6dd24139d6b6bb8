"""`makeusrich serve` as a client sees it: a real server process on loopback, serving a model trained by the real
trainer on real candles. Every v2 endpoint, forecasts equal to onnxruntime's on the same input, and every kind
of bad request answered with a 400 and a sentence, on a connection that stays open."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from makeusrich.contract import iso_z
from makeusrich.errors import MakeUsRichError
from makeusrich.net import bind
from makeusrich.serving.rest import QuietLoopErrors
from tests.fixtures.model_server import RunningServer, free_port
from tests.fixtures.models import TrainedStore
from tests.fixtures.shell import makeusrich
from tests.fixtures.waiting import eventually_sync
from tests.serving.helpers import publish_as, real_windows, reference, reference_outputs, slow_model
from tests.serving.test_loader import kserve_mount

PAIR = "btc-usdt"


def model_bytes(server: RunningServer) -> bytes:
    assert server.store is not None
    return server.store.store().read_model(server.store.version)


def infer_body(candles: np.ndarray, **extra: Any) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "candles", "shape": list(candles.shape), "datatype": "FP32", "data": candles.ravel().tolist()}
        ],
        **extra,
    }


def test_health_and_server_metadata(model_server: RunningServer) -> None:
    assert httpx.get(f"{model_server.url}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{model_server.url}/v2/health/ready").json() == {"ready": True}
    meta = httpx.get(f"{model_server.url}/v2").json()
    assert meta["name"] == "kserve" and "version" in meta
    assert httpx.get(f"{model_server.url}/v2/models").json() == {"models": [PAIR]}  # discovered in the store


def test_model_metadata_describes_the_served_graph(model_server: RunningServer) -> None:
    assert model_server.store is not None
    response = httpx.get(f"{model_server.url}/v2/models/{PAIR}")
    assert response.status_code == 200
    meta = response.json()
    version = model_server.store.version
    assert meta["name"] == PAIR and meta["versions"] == [version] and meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "candles", "datatype": "FP32", "shape": [-1, 24, 5]}]
    assert meta["outputs"] == [
        {"name": "forecast", "datatype": "FP32", "shape": [-1, 1]},
        {"name": "quantiles", "datatype": "FP32", "shape": [-1, 1, 5]},
    ]
    params = meta["parameters"]
    assert params["served_version"] == version and params["window"] == 24 and params["horizon"] == 1
    assert params["interval"] == "1h" and params["storage_uri"] == model_server.store.store().storage_uri(version)
    assert "refused_version" not in params
    # the same as the trainer recorded, i.e. as the ONNX graph says (checked against the graph in test_loader)
    stored = model_server.store.store().metadata(version)
    assert params["quantile_levels"] == stored["quantiles"] == [0.05, 0.25, 0.5, 0.75, 0.95]
    assert params["model_created_at"] == stored["createdAt"]
    for kind in ("inputs", "outputs"):
        assert [{k: t[k] for k in ("name", "datatype", "shape")} for t in stored[kind]] == meta[kind]
    ready = httpx.get(f"{model_server.url}/v2/models/{PAIR}/ready")
    assert ready.status_code == 200 and ready.json() == {"name": PAIR, "ready": True}


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_forecasts_equal_onnxruntime_on_the_same_input(model_server: RunningServer, batch: int) -> None:
    windows = real_windows(24, batch, seed=batch)
    response = httpx.post(f"{model_server.url}/v2/models/{PAIR}/infer", json=infer_body(windows, id="req-1"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == PAIR and body["model_version"] == model_server.store.version  # type: ignore[union-attr]
    assert body["id"] == "req-1"
    forecast, quantiles = body["outputs"]  # no outputs named: every output the model has
    assert forecast["name"] == "forecast" and forecast["datatype"] == "FP32" and forecast["shape"] == [batch, 1]
    assert quantiles["name"] == "quantiles" and quantiles["datatype"] == "FP32" and quantiles["shape"] == [batch, 1, 5]
    got = np.asarray(forecast["data"], dtype=np.float32).reshape(batch, 1)
    expected = reference_outputs(model_bytes(model_server), windows)
    assert np.array_equal(got, expected["forecast"])  # bit for bit: float32 in, float32 out, the same onnxruntime
    got_quantiles = np.asarray(quantiles["data"], dtype=np.float32).reshape(batch, 1, 5)
    assert np.array_equal(got_quantiles, expected["quantiles"])
    last_close = windows[:, -1, 3]
    assert np.all(np.abs(got[:, 0] / last_close - 1) < 0.1)  # real hourly moves are small


def test_a_request_gets_the_outputs_it_names(model_server: RunningServer) -> None:
    windows = real_windows(24, 3, seed=5)
    expected = reference_outputs(model_bytes(model_server), windows)
    url = f"{model_server.url}/v2/models/{PAIR}/infer"
    only_forecast = httpx.post(url, json=infer_body(windows, outputs=[{"name": "forecast"}])).json()
    assert [o["name"] for o in only_forecast["outputs"]] == ["forecast"]
    assert np.array_equal(
        np.asarray(only_forecast["outputs"][0]["data"], np.float32).reshape(3, 1), expected["forecast"]
    )
    only_quantiles = httpx.post(url, json=infer_body(windows, outputs=[{"name": "quantiles"}])).json()
    (output,) = only_quantiles["outputs"]
    assert output["name"] == "quantiles" and output["shape"] == [3, 1, 5]
    got = np.asarray(output["data"], dtype=np.float32).reshape(3, 1, 5)
    assert np.array_equal(got, expected["quantiles"])
    assert (np.diff(got, axis=-1) >= 0).all() and np.array_equal(got[..., 2], expected["forecast"])  # the median
    unknown = httpx.post(url, json=infer_body(windows, outputs=[{"name": "ranges"}]))
    assert unknown.status_code == 400
    assert unknown.json()["error"] == (
        "unknown output 'ranges': this model has 2 outputs, 'forecast' (FP32 [batch, 1]) and "
        "'quantiles' (FP32 [batch, 1, 5])"
    )


def seconds_since(moment: str) -> float:
    return time.time() - datetime.fromisoformat(moment).timestamp()


def test_every_answer_says_how_old_the_model_and_the_candles_are(model_server: RunningServer) -> None:
    assert model_server.store is not None
    created_at = model_server.store.store().metadata(model_server.store.version)["createdAt"]
    url = f"{model_server.url}/v2/models/{PAIR}/infer"
    windows = real_windows(24, 1)
    before = seconds_since(created_at)
    plain = httpx.post(url, json=infer_body(windows)).json()["parameters"]
    after = seconds_since(created_at)
    assert plain["model_version"] == model_server.store.version and plain["model_created_at"] == created_at
    assert int(before) - 1 <= plain["model_age_seconds"] <= after + 1
    assert "last_candle_age_seconds" not in plain
    closed = iso_z(datetime.now(UTC) - timedelta(hours=3))  # the window's last candle closed three hours ago
    with_close = httpx.post(url, json=infer_body(windows, parameters={"last_candle_close": closed})).json()
    assert 3 * 3600 - 2 <= with_close["parameters"]["last_candle_age_seconds"] <= 3 * 3600 + 2
    binary = infer_body(windows, outputs=[{"name": "forecast", "parameters": {"binary_data": True}}])
    response = httpx.post(url, json=binary)  # the binary extension carries them in its JSON header too
    header = json.loads(response.content[: int(response.headers["inference-header-content-length"])])
    assert header["parameters"]["model_version"] == model_server.store.version


def test_binary_tensor_output_extension(model_server: RunningServer) -> None:
    windows = real_windows(24, 2)
    body = infer_body(windows, outputs=[{"name": "forecast", "parameters": {"binary_data": True}}])
    response = httpx.post(f"{model_server.url}/v2/models/{PAIR}/infer", json=body)
    assert response.status_code == 200
    header_length = int(response.headers["inference-header-content-length"])
    header = json.loads(response.content[:header_length])
    assert header["outputs"][0]["parameters"]["binary_data_size"] == 8
    got = np.frombuffer(response.content[header_length:], dtype=np.float32).reshape(2, 1)
    assert np.array_equal(got, reference(model_bytes(model_server), windows))


def test_json_without_a_json_content_type_is_accepted(model_server: RunningServer) -> None:
    """`curl -d` sends application/x-www-form-urlencoded; the body is still a v2 request."""
    windows = real_windows(24, 1)
    response = httpx.post(
        f"{model_server.url}/v2/models/{PAIR}/infer",
        content=json.dumps(infer_body(windows)),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200, response.text


def _nan_body() -> bytes:
    data = real_windows(24, 1).ravel().tolist()
    data[3] = float("nan")
    return json.dumps({"inputs": [{"name": "candles", "shape": [1, 24, 5], "datatype": "FP32", "data": data}]}).encode()


def _with(**changes: Any) -> bytes:
    tensor = {"name": "candles", "shape": [1, 24, 5], "datatype": "FP32", "data": real_windows(24, 1).ravel().tolist()}
    tensor.update(changes)
    return json.dumps({"inputs": [tensor]}).encode()


BAD_REQUESTS: list[tuple[str, bytes, str]] = [
    ("unknown input", _with(name="prices"), "unknown input 'prices'"),
    ("wrong datatype", _with(datatype="FP64"), "datatype 'FP64'; this model takes FP32"),
    ("wrong rank", _with(shape=[24, 5]), "rank 2 (shape [24, 5]); this model takes rank 3"),
    (
        "wrong window",
        _with(shape=[1, 12, 5], data=real_windows(12, 1).ravel().tolist()),
        "windows of 12 candles; this model takes 24",
    ),
    ("NaN", _nan_body(), "NaN or infinite values (first at window 0, candle 0, close: nan)"),
    ("infinite in float32", _with(data=[1e39] * 120), "NaN or infinite values"),
    ("batch over the limit", _with(shape=[100_000, 24, 5], data=[1.0]), "more than this server's limit of 1024"),
    ("not JSON", b"candles please", "the request body is not valid JSON"),
    ("JSON but not a request", b'{"instances": [[1, 2]]}', "not a v2 inference request: inputs: Field required"),
    ("data that is not numbers", _with(data=["x"] * 120), "data must be numbers, got strings"),
    ("data count", _with(data=[1.0] * 119), "has 119 values but its shape [1, 24, 5] needs 120"),
    ("negative price", _with(data=[-1.0] * 120), "a price that is not positive"),
    (
        "malformed last_candle_close",
        json.dumps({**json.loads(_with()), "parameters": {"last_candle_close": "yesterday"}}).encode(),
        "parameter 'last_candle_close' is 'yesterday', not an RFC 3339 time such as 2024-01-01T01:00:00Z",
    ),
    (
        "output asked twice",
        json.dumps({**json.loads(_with()), "outputs": [{"name": "forecast"}] * 2}).encode(),
        "name it once",
    ),
]


def test_bad_requests_get_400_with_a_reason_and_the_connection_stays_open(model_server: RunningServer) -> None:
    connection = http.client.HTTPConnection(model_server.host, model_server.port, timeout=10)
    connection.connect()
    sock = connection.sock
    for label, body, reason in BAD_REQUESTS:
        connection.request("POST", f"/v2/models/{PAIR}/infer", body, {"content-type": "application/json"})
        response = connection.getresponse()
        payload = json.loads(response.read())
        assert response.status == 400, (label, payload)
        assert reason in payload["error"], (label, payload["error"])
        assert connection.sock is sock, f"{label}: the server closed the keep-alive connection"
    connection.request("POST", f"/v2/models/{PAIR}/infer", json.dumps(infer_body(real_windows(24, 1))))
    assert connection.getresponse().status == 200 and connection.sock is sock
    connection.close()
    assert model_server.alive()
    assert "Traceback" not in model_server.log()  # a client's mistake is not logged as a server error


def test_unknown_model_is_404(model_server: RunningServer) -> None:
    for method, path in (("GET", ""), ("GET", "/ready"), ("POST", "/infer")):
        body = infer_body(real_windows(24, 1)) if method == "POST" else None
        response = httpx.request(method, f"{model_server.url}/v2/models/eth-usdt{path}", json=body)
        assert response.status_code == 404, path
        assert response.json() == {"error": "Model with name eth-usdt does not exist."}


def test_hostile_traffic_does_not_kill_the_server(model_server: RunningServer) -> None:
    """Half requests, garbage bytes and a huge declared body: the process lives and keeps answering."""
    for payload in (
        b"POST /v2/models/btc-usdt/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{",
        b"\x00\xff garbage \r\n\r\n",
        b"GET /v2/models/" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ):
        with socket.create_connection((model_server.host, model_server.port), timeout=5) as sock:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            with contextlib.suppress(OSError):
                sock.recv(65536)
    binary = httpx.post(
        f"{model_server.url}/v2/models/{PAIR}/infer",
        content=b'{"inputs": 5}',
        headers={"inference-header-content-length": "13"},
    )
    assert binary.status_code == 400 and "malformed" in binary.json()["error"]
    assert model_server.alive()
    assert httpx.get(f"{model_server.url}/v2/health/ready").status_code == 200


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket in LISTEN state on `port`, from /proc/net/tcp (IPv4, Linux)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


def test_binds_only_the_address_asked_for(model_server: RunningServer) -> None:
    assert listening_addresses(model_server.port) == {"127.0.0.1"}  # kserve alone would bind 0.0.0.0


def test_a_busy_port_is_one_clear_error(model_server: RunningServer) -> None:
    with pytest.raises(MakeUsRichError, match=f"cannot listen on 127.0.0.1:{model_server.port}: .*pick another --port"):
        bind("127.0.0.1", model_server.port)


def test_model_dir_serves_a_kserve_mount_on_the_address_asked_for(
    trained_store_template: Any, start_model_server: Any, tmp_path: Path
) -> None:
    """The ClusterServingRuntime entrypoint: a storageUri folder as KServe mounts it at /mnt/models."""
    mount = kserve_mount(trained_store_template, tmp_path / "mnt-models")
    server = start_model_server("--model-dir", str(mount), host="127.0.0.2")
    meta = httpx.get(f"{server.url}/v2/models/{PAIR}").json()
    assert meta["versions"] == [trained_store_template.version] and meta["inputs"][0]["shape"] == [-1, 24, 5]
    windows = real_windows(24, 3)
    response = httpx.post(f"{server.url}/v2/models/{PAIR}/infer", json=infer_body(windows))
    assert [o["name"] for o in response.json()["outputs"]] == ["forecast", "quantiles"]
    got = np.asarray(response.json()["outputs"][0]["data"], dtype=np.float32).reshape(3, 1)
    assert np.array_equal(got, reference((mount / PAIR / "1" / "model.onnx").read_bytes(), windows))
    with pytest.raises(httpx.ConnectError):  # bound to 127.0.0.2 only
        httpx.get(f"http://127.0.0.1:{server.port}/v2/health/live")


def test_model_dir_with_nothing_servable_exits_with_the_reason(trained_store_template: Any, tmp_path: Path) -> None:
    mount = kserve_mount(trained_store_template, tmp_path / "mnt-models")
    (mount / PAIR / "1" / "model.onnx").write_bytes(b"truncated")
    result = makeusrich("serve", "--model-dir", str(mount), "--port", str(free_port()))
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("makeusrich serve: no model in") and "does not match the sha256" in last


# --- what a hostile or unlucky client can send (bench/results/probes/hardening.md) -----------------------------


def raw_exchange(server: RunningServer, request: bytes, timeout: float = 10.0) -> bytes:
    """Send bytes as they are and return what the server answers before closing or going quiet."""
    with socket.create_connection((server.host, server.port), timeout=timeout) as sock:
        sock.sendall(request)
        answer = b""
        with contextlib.suppress(TimeoutError, OSError):
            while b"\r\n\r\n" not in answer or not answer.split(b"\r\n\r\n", 1)[1]:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        return answer


def test_repository_versions_and_v1_routes_are_not_offered(model_server: RunningServer) -> None:
    for method, path in (
        ("POST", f"/v2/repository/models/{PAIR}/unload"),
        ("POST", f"/v2/repository/models/{PAIR}/load"),
        ("POST", "/v2/repository/index"),
        ("GET", f"/v2/models/{PAIR}/versions/1"),
        ("POST", f"/v2/models/{PAIR}/versions/1/infer"),
        ("GET", "/v1/models"),
        ("POST", f"/v1/models/{PAIR}:predict"),
    ):
        response = httpx.request(method, f"{model_server.url}{path}")
        assert response.status_code in (404, 405), (path, response.status_code)
        assert "error" in response.json()
    assert httpx.get(f"{model_server.url}/v2/models/{PAIR}/ready").status_code == 200  # still in service
    assert httpx.get(f"{model_server.url}/v2").json()["extensions"] == []
    assert "Traceback" not in model_server.log()


def test_a_body_larger_than_any_valid_request_is_refused_before_it_is_read(model_server: RunningServer) -> None:
    """186 MB declared and nothing sent: the answer comes at once, so the server did not wait to read it."""
    head = (
        f"POST /v2/models/{PAIR}/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 186000000\r\n\r\n"
    ).encode()
    answer = raw_exchange(model_server, head + b"{", timeout=5)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"at most" in answer
    chunked = (
        f"POST /v2/models/{PAIR}/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode() + b"".join(b"100000\r\n" + b" " * 0x100000 + b"\r\n" for _ in range(24))  # 24 MiB of spaces
    answer = raw_exchange(model_server, chunked, timeout=10)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    windows = real_windows(24, 1024)  # the largest valid request still passes
    assert httpx.post(f"{model_server.url}/v2/models/{PAIR}/infer", json=infer_body(windows)).status_code == 200
    assert model_server.alive()


def test_the_body_limit_is_a_flag(start_model_server: Any, trained_store_template: Any, tmp_path: Path) -> None:
    server = start_model_server("--store", trained_store_template.url, "--max-body-mb", "0.01")
    small = httpx.post(f"{server.url}/v2/models/{PAIR}/infer", json=infer_body(real_windows(24, 1)))
    assert small.status_code == 200
    large = httpx.post(f"{server.url}/v2/models/{PAIR}/infer", json=infer_body(real_windows(24, 8)))
    assert large.status_code == 413 and "takes at most 10,485" in large.json()["error"]


def test_too_many_or_too_large_headers_are_refused(model_server: RunningServer) -> None:
    many = {f"x-h{i}": "1" for i in range(150)}
    assert httpx.get(f"{model_server.url}/v2/health/live", headers=many).status_code == 431
    large = {"x-large": "a" * 20_000}
    assert httpx.get(f"{model_server.url}/v2/health/live", headers=large).status_code == 431
    assert httpx.get(f"{model_server.url}/v2/health/live").status_code == 200


def test_client_mistakes_are_4xx_without_a_traceback(model_server: RunningServer) -> None:
    url = f"{model_server.url}/v2/models/{PAIR}/infer"
    deep = b"[" * 5000 + b"]" * 5000
    response = httpx.post(url, content=b'{"inputs": ' + deep + b"}")
    assert response.status_code == 400 and "nests JSON too deeply" in response.json()["error"]
    for shape in (["1", "24", "5"], [1.0, 24.0, 5.0], [True, 24, 5]):
        response = httpx.post(url, content=_with(shape=shape))
        assert response.status_code == 400 and "a shape is a list of whole numbers" in response.json()["error"], shape
    # A client that goes away half-way through its body.
    half = f"POST /v2/models/{PAIR}/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n".encode() + b"{" * 100
    with socket.create_connection((model_server.host, model_server.port), timeout=5) as sock:
        sock.sendall(half)
    assert httpx.get(f"{model_server.url}/v2/health/live").status_code == 200  # answered after the drop
    log = model_server.log()
    assert "Traceback" not in log and '"level": "error"' not in log, log[-2000:]


def test_binary_requests_are_exact(model_server: RunningServer) -> None:
    windows = real_windows(24, 1)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "candles",
                    "shape": [1, 24, 5],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": windows.nbytes},
                }
            ]
        }
    ).encode()
    url = f"{model_server.url}/v2/models/{PAIR}/infer"
    headers = {"inference-header-content-length": str(len(header)), "content-type": "application/octet-stream"}
    exact = httpx.post(url, content=header + windows.tobytes(), headers=headers)
    assert exact.status_code == 200, exact.text
    trailing = httpx.post(url, content=header + windows.tobytes() + b"extra", headers=headers)
    assert trailing.status_code == 400 and "send exactly the declared bytes" in trailing.json()["error"]
    short = httpx.post(url, content=header + windows.tobytes()[:-4], headers=headers)
    assert short.status_code == 400


def test_a_model_from_before_ranges_is_served_as_before(single_output_server: RunningServer) -> None:
    """`forecast` alone: metadata, answers and refusals as they were, plus how old the answer is."""
    assert single_output_server.store is not None
    version = single_output_server.store.version
    meta = httpx.get(f"{single_output_server.url}/v2/models/{PAIR}").json()
    assert meta["versions"] == [version]
    assert meta["outputs"] == [{"name": "forecast", "datatype": "FP32", "shape": [-1, 1]}]
    assert "quantile_levels" not in meta["parameters"]
    windows = real_windows(24, 4, seed=2)
    url = f"{single_output_server.url}/v2/models/{PAIR}/infer"
    body = httpx.post(url, json=infer_body(windows)).json()
    (output,) = body["outputs"]
    assert output["name"] == "forecast" and output["shape"] == [4, 1]
    got = np.asarray(output["data"], dtype=np.float32).reshape(4, 1)
    assert np.array_equal(got, reference(model_bytes(single_output_server), windows))
    assert body["parameters"]["model_version"] == version and body["parameters"]["model_age_seconds"] >= 0
    asked = httpx.post(url, json=infer_body(windows, outputs=[{"name": "quantiles"}]))
    assert asked.status_code == 400
    assert (
        asked.json()["error"] == "unknown output 'quantiles': this model has one output, 'forecast' (FP32 [batch, 1])"
    )


def test_a_slow_model_cannot_starve_another_pairs_requests(
    trained_store: TrainedStore, start_model_server: Callable[..., RunningServer]
) -> None:
    """Inference runs in worker threads, at most --model-concurrency runs per model: while four clients keep a slow
    but sound model (about a second a request) busy, another pair's requests are answered before the slow model
    has answered once. (When small batches ran on the event loop, each slow request held every other pair back.)"""
    model = trained_store.store().read_model(trained_store.version)
    publish_as(trained_store.url, PAIR, ["slow"], model=slow_model(model, 1024, 64))
    server = start_model_server("--store", trained_store.url, store=trained_store)
    eventually_sync(lambda: httpx.get(f"{server.url}/v2/models/slow/ready").status_code == 200, timeout=120)
    body = infer_body(real_windows(24, 1))
    finished: list[str] = []
    started: list[int] = []

    def slow_client() -> None:
        with httpx.Client(timeout=120) as client:
            started.append(1)
            assert client.post(f"{server.url}/v2/models/slow/infer", json=body).status_code == 200
            finished.append("slow")

    clients = [threading.Thread(target=slow_client) for _ in range(4)]
    for client in clients:
        client.start()
    eventually_sync(lambda: len(started) == 4)
    with httpx.Client(timeout=120) as good:
        for _ in range(5):
            assert good.post(f"{server.url}/v2/models/{PAIR}/infer", json=body).status_code == 200
            finished.append(PAIR)
    for client in clients:
        client.join()
    assert finished[:5] == [PAIR] * 5, finished


def test_idle_and_half_sent_connections_are_closed_and_never_crowd_out_a_client(
    trained_store: TrainedStore, start_model_server: Callable[..., RunningServer]
) -> None:
    """Connections that send nothing, half a header line or half a body are closed after --request-timeout, and
    past --max-connections the least recently active idle one makes room: a good client is answered every time,
    and the log holds no traceback. (Before, 1,100 idle connections under a 1,024 descriptor limit failed every
    good request and wrote tens of thousands of tracebacks.)"""
    server = start_model_server(
        "--store", trained_store.url, "--request-timeout", "2", "--max-connections", "40", store=trained_store
    )
    half_header = b"POST /v2/models/btc-usdt/infer HTTP/1.1\r\nHost: x\r\nContent-Le"
    half_body = b"POST /v2/models/btc-usdt/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{"
    idle = []
    for k in range(60):
        sock = socket.create_connection((server.host, server.port), timeout=30)
        sock.sendall((b"", half_header, half_body)[k % 3])
        idle.append(sock)
    body = infer_body(real_windows(24, 1))
    answers = [httpx.post(f"{server.url}/v2/models/{PAIR}/infer", json=body, timeout=30).status_code for _ in range(4)]
    assert answers == [200] * 4

    def closed_by_the_server(sock: socket.socket) -> bool:
        try:
            while sock.recv(65536):
                pass  # an answer before the close is fine
        except TimeoutError:
            return False  # still open after 30 s
        except OSError:
            pass  # reset: closed too
        return True

    assert all(closed_by_the_server(sock) for sock in idle)
    for sock in idle:
        sock.close()
    assert server.alive() and "Traceback" not in server.log()


def test_loop_errors_are_said_once_a_minute_and_a_bug_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """Out of descriptors, asyncio reports every accept that fails: one line a minute with a count, no traceback
    (an OSError is the system's state); an error that is a bug keeps its traceback the first time."""
    handler = QuietLoopErrors(every_s=60.0)
    loop = asyncio.new_event_loop()
    try:
        with caplog.at_level(logging.ERROR, logger="makeusrich.serving.rest"):
            for _ in range(1000):
                handler(loop, {"message": "socket.accept() out of system resource", "exception": OSError(24, "x")})
            handler(loop, {"message": "Task exception was never retrieved", "exception": ValueError("bug")})
    finally:
        loop.close()
    said = [(r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert said == [
        ("socket.accept() out of system resource: OSError: [Errno 24] x", False),
        ("Task exception was never retrieved: ValueError: bug", True),
    ]
    assert handler.seen["socket.accept() out of system resource: OSError: [Errno 24] x"][1] == 999  # counted
