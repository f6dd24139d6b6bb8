"""`makeusrich serve` as NVIDIA's tritonclient sees it, over both transports of the v2 protocol: gRPC (`--grpc-port`)
and REST. A real server process on loopback serves a model trained by the real trainer; forecasts must equal
onnxruntime's on the same input, bit for bit, whichever transport asks. Bad gRPC requests get INVALID_ARGUMENT or
NOT_FOUND with REST's sentence, and the server lives on. tritonclient runs in a process of its own
(triton_calls.py says why)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from makeusrich.v2client.grpc_wire import SERVICE, M
from tests.fixtures.model_server import RunningServer, free_port
from tests.fixtures.shell import makeusrich
from tests.serving.helpers import real_windows, reference_outputs
from tests.serving.test_server import PAIR, model_bytes

TRANSPORTS = ("grpc", "http")
CALLS = Path(__file__).with_name("triton_calls.py")


def triton(server: RunningServer, transport: str, *calls: dict[str, Any]) -> list[dict[str, Any]]:
    """What tritonclient got for each call: {"ok": answer} or {"status": ..., "message": ...}."""
    address = f"{server.host}:{server.grpc_port if transport == 'grpc' else server.port}"
    spec = json.dumps({"transport": transport, "address": address, "calls": list(calls)})
    done = subprocess.run(
        [sys.executable, str(CALLS)], input=spec, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results: list[dict[str, Any]] = json.loads(done.stdout)
    return results


def infer(windows: np.ndarray, **extra: Any) -> dict[str, Any]:
    return {"call": "infer", "model": PAIR, "windows": windows.tolist(), **extra}


def array(output: dict[str, Any]) -> np.ndarray:
    return np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_health_and_metadata_say_what_rest_says(model_server: RunningServer, transport: str) -> None:
    health, meta = triton(
        model_server, transport, {"call": "health", "model": PAIR}, {"call": "metadata", "model": PAIR}
    )
    assert health["ok"] == {"live": True, "ready": True, "model": True}
    rest = httpx.get(f"{model_server.url}/v2/models/{PAIR}").json()
    assert model_server.store is not None and meta["ok"]["versions"] == [model_server.store.version]
    for key in ("name", "platform", "inputs", "outputs"):
        assert meta["ok"][key] == rest[key], key
    assert meta["ok"]["server"] == "kserve"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_forecasts_equal_onnxruntime_over_both_transports(model_server: RunningServer, transport: str) -> None:
    one, seven = real_windows(24, 1, seed=41), real_windows(24, 7, seed=47)
    answers = triton(
        model_server, transport, infer(one, id="req-1"), infer(seven, id="req-7"), infer(seven, outputs=["forecast"])
    )
    for windows, answer in zip((one, seven), answers[:2], strict=True):
        expected = reference_outputs(model_bytes(model_server), windows)
        got = answer["ok"]["outputs"]
        assert np.array_equal(array(got["forecast"]), expected["forecast"])  # bit for bit
        assert np.array_equal(array(got["quantiles"]), expected["quantiles"])
        assert answer["ok"]["model_name"] == PAIR and answer["ok"]["id"] == f"req-{len(windows)}"
        assert model_server.store is not None and answer["ok"]["model_version"] == model_server.store.version
    only = answers[2]["ok"]["outputs"]
    assert list(only) == ["forecast"]
    assert np.array_equal(array(only["forecast"]), reference_outputs(model_bytes(model_server), seven)["forecast"])


def with_nan(windows: np.ndarray) -> np.ndarray:
    spoiled = windows.astype(np.float64)
    spoiled[1, 5, 2] = np.nan
    return spoiled


BAD_REQUESTS: dict[str, tuple[dict[str, Any], str]] = {
    "a window of the wrong length": (infer(real_windows(24, 2)[:, 1:]), "holds windows of 23 candles"),
    "FP64 candles": (infer(real_windows(24, 2), datatype="FP64"), "has datatype 'FP64'; this model takes FP32"),
    "NaN in the candles": (infer(with_nan(real_windows(24, 2))), "holds NaN or infinite values"),
    "an unknown input": (infer(real_windows(24, 2), input="prices"), "unknown input 'prices'"),
    "an unknown output": (infer(real_windows(24, 2), outputs=["volatility"]), "unknown output 'volatility'"),
    "a version not served": (infer(real_windows(24, 2), version="20000101T000000Z"), "leave model_version empty"),
}


def test_bad_grpc_requests_are_invalid_argument_with_rest_s_sentence(model_server: RunningServer) -> None:
    cases = list(BAD_REQUESTS)
    answers = triton(
        model_server, "grpc", *(BAD_REQUESTS[case][0] for case in cases), {"call": "health", "model": PAIR}
    )
    for case, answer in zip(cases, answers, strict=False):
        assert answer.get("status") == "StatusCode.INVALID_ARGUMENT", (case, answer)
        assert BAD_REQUESTS[case][1] in answer["message"], (case, answer)
    assert answers[-1]["ok"]["live"] and model_server.alive()
    rest = httpx.post(  # the same sentence over REST
        f"{model_server.url}/v2/models/{PAIR}/infer",
        json={"inputs": [{"name": "prices", "shape": [1, 24, 5], "datatype": "FP32", "data": [1.0] * 120}]},
    )
    assert rest.status_code == 400 and rest.json()["error"] == answers[cases.index("an unknown input")]["message"]


def raw_request(windows: np.ndarray, raw: bytes) -> Any:
    request = M["InferRequest"](model_name=PAIR, raw_input_contents=[raw])
    request.inputs.add(name="candles", datatype="FP32", shape=list(windows.shape))
    return request


def test_raw_contents_must_hold_exactly_what_their_shape_needs(model_server: RunningServer) -> None:
    """Sent with the v2 client's own messages (grpc_wire), so that the byte count can be wrong on purpose."""
    windows = real_windows(24, 2, seed=9)
    whole = windows.astype("<f4").tobytes()
    with grpc.insecure_channel(f"{model_server.host}:{model_server.grpc_port}") as channel:
        model_infer = channel.unary_unary(
            f"/{SERVICE}/ModelInfer",
            request_serializer=M["InferRequest"].SerializeToString,
            response_deserializer=M["InferResponse"].FromString,
        )
        exact = model_infer(raw_request(windows, whole))
        forecast = np.frombuffer(exact.raw_output_contents[0], dtype="<f4").reshape(2, 1)
        assert np.array_equal(forecast, reference_outputs(model_bytes(model_server), windows)["forecast"])
        for raw in (whole[:-4], whole + b"\0" * 4):
            with pytest.raises(grpc.RpcError) as caught:
                model_infer(raw_request(windows, raw))
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            expected = f"has {len(raw)} bytes of raw contents but its shape [2, 24, 5] of FP32 needs {len(whole)}"
            assert expected in caught.value.details()
    assert model_server.alive() and "Traceback" not in model_server.log()


def test_an_unknown_model_is_not_found_and_repository_control_is_not_offered(model_server: RunningServer) -> None:
    unknown, metadata, load, unload, health = triton(
        model_server,
        "grpc",
        {**infer(real_windows(24, 1)), "model": "eth-usdt"},
        {"call": "metadata", "model": "eth-usdt"},
        {"call": "load", "model": PAIR},
        {"call": "unload", "model": PAIR},
        {"call": "health", "model": PAIR},
    )
    assert unknown["status"] == "StatusCode.NOT_FOUND" and "eth-usdt" in unknown["message"]
    assert metadata["status"] == "StatusCode.NOT_FOUND"
    for refused in (load, unload):
        assert refused["status"] == "StatusCode.UNIMPLEMENTED" and "no model repository control" in refused["message"]
    assert health["ok"]["model"]  # unload was refused: the model still serves


def predictions_counted(server: RunningServer) -> float:
    for family in text_string_to_metric_families(httpx.get(f"{server.url}/metrics").text):
        for sample in family.samples:
            if sample.name == "request_predict_seconds_count" and sample.labels.get("model_name") == PAIR:
                return float(sample.value)
    return 0.0


def test_grpc_inferences_are_counted_in_the_same_metrics_as_rest(model_server: RunningServer) -> None:
    before = predictions_counted(model_server)
    answers = triton(model_server, "grpc", *(infer(real_windows(24, 1, seed=i)) for i in range(3)))
    assert all("ok" in answer for answer in answers)
    assert predictions_counted(model_server) == before + 3


def test_a_message_past_the_limit_is_resource_exhausted(start_model_server: Any, trained_store_template: Any) -> None:
    server = start_model_server("--store", trained_store_template.url, "--max-body-mb", "0.01", grpc=True)
    small, large, health = triton(
        server, "grpc", infer(real_windows(24, 8)), infer(real_windows(24, 64)), {"call": "health", "model": PAIR}
    )
    assert small["ok"]["outputs"]["forecast"]["shape"] == [8, 1]
    assert large["status"] == "StatusCode.RESOURCE_EXHAUSTED"
    assert health["ok"]["live"] and server.alive()


def test_a_busy_grpc_port_is_one_clear_error(model_server: RunningServer, trained_store_template: Any) -> None:
    port = model_server.grpc_port
    result = makeusrich(
        "serve", "--store", trained_store_template.url, "--port", str(free_port()), "--grpc-port", str(port), timeout=60
    )
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port} for gRPC; pick another --grpc-port" in result.stderr
    assert "Traceback" not in result.stderr
