"""NVIDIA's tritonclient, run in a process of its own: it reads calls as JSON on stdin and prints what each
answered (or the error's status and message) as JSON.

A process of its own because tritonclient's gRPC messages and kserve's are registered under the same protobuf
names (`inference.*`), and one Python process cannot load both; the tests import kserve.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException


def tensor_metadata(tensors: Any) -> list[dict[str, Any]]:
    return [{"name": t["name"], "datatype": t["datatype"], "shape": [int(d) for d in t["shape"]]} for t in tensors]


def run(client: Any, module: Any, grpc: bool, call: dict[str, Any]) -> Any:
    kind, model = call["call"], call.get("model", "")
    if kind == "health":
        return {
            "live": client.is_server_live(),
            "ready": client.is_server_ready(),
            "model": client.is_model_ready(model),
        }
    if kind == "metadata":
        meta = client.get_model_metadata(model, as_json=True) if grpc else client.get_model_metadata(model)
        server = client.get_server_metadata(as_json=True) if grpc else client.get_server_metadata()
        return {
            "name": meta["name"],
            "versions": list(meta.get("versions", [])),
            "platform": meta["platform"],
            "inputs": tensor_metadata(meta["inputs"]),
            "outputs": tensor_metadata(meta["outputs"]),
            "server": server["name"],
        }
    if kind == "infer":
        datatype = call.get("datatype", "FP32")
        windows = np.asarray(call["windows"], dtype=np.float64 if datatype == "FP64" else np.float32)
        tensor = module.InferInput(call.get("input", "candles"), list(windows.shape), datatype)
        tensor.set_data_from_numpy(windows)
        outputs = [module.InferRequestedOutput(name) for name in call.get("outputs", [])] or None
        result = client.infer(
            model,
            [tensor],
            outputs=outputs,
            request_id=call.get("id", ""),
            model_version=call.get("version", ""),
        )
        answer = result.get_response(as_json=True) if grpc else result.get_response()
        arrays = {}
        for output in answer["outputs"]:
            values = result.as_numpy(output["name"])
            arrays[output["name"]] = {"shape": list(values.shape), "data": values.ravel().tolist()}
        return {
            "outputs": arrays,
            "model_name": answer["model_name"],
            "model_version": answer.get("model_version"),
            "id": answer.get("id"),
        }
    if kind in ("load", "unload"):
        getattr(client, f"{kind}_model")(model)
        return None
    raise ValueError(f"unknown call {kind!r}")


def main() -> None:
    spec = json.load(sys.stdin)
    grpc = spec["transport"] == "grpc"
    module = grpcclient if grpc else httpclient
    client = module.InferenceServerClient(spec["address"])
    results = []
    for call in spec["calls"]:
        try:
            results.append({"ok": run(client, module, grpc, call)})
        except InferenceServerException as exc:
            results.append({"status": exc.status(), "message": exc.message()})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
