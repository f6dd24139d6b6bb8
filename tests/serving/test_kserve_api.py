"""Every kserve name the model server relies on, by name: an upgrade that moves or drops one fails here, with the
name, before it fails in production. pyproject.toml pins the kserve range these were checked with."""

from __future__ import annotations

import inspect

import pytest

from makeusrich.serving import kserve_api

# What the server calls on each kserve class (beyond constructing it).
USED: dict[str, tuple[str, ...]] = {
    "DataPlane": (
        "metadata",
        "live",
        "ready",
        "model_ready",
        "model_metadata",
        "infer",
        "encode",
        "get_model_from_registry",
        "model_registry",
    ),
    "InferRequest": ("from_bytes", "from_inference_request", "parameters", "request_outputs"),
    "InferResponse": ("parameters", "requested_outputs", "infer_outputs"),
    "ModelServer": ("register_model",),
    "Model": ("load", "predict", "ready", "name"),
}


@pytest.mark.parametrize("name", kserve_api.__all__)
def test_every_reexported_name_exists(name: str) -> None:
    assert getattr(kserve_api, name, None) is not None, f"kserve no longer offers {name}"


@pytest.mark.parametrize(("cls", "attribute"), [(c, a) for c, attrs in USED.items() for a in attrs])
def test_every_member_we_call_exists(cls: str, attribute: str) -> None:
    owner = getattr(kserve_api, cls)
    present = hasattr(owner, attribute) or attribute in inspect.signature(owner.__init__).parameters
    if not present:  # set in __init__ (a model's name and readiness)
        present = attribute in vars(owner("probe")) if cls == "Model" else False
    assert present, f"kserve's {cls} has no {attribute} any more"


def test_the_server_builds_on_kserve_model_server() -> None:
    """ModelServer's constructor takes the options the server passes."""
    parameters = inspect.signature(kserve_api.ModelServer.__init__).parameters
    for option in ("http_port", "workers", "enable_grpc", "enable_docs_url", "enable_latency_logging", "grace_period"):
        assert option in parameters, option
