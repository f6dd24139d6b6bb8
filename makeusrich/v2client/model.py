"""What both transports of the v2 client share: the server's URL, the model metadata, and one inference reply."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from makeusrich.contract import INPUT_NAME, OUTPUT_NAME, QUANTILE_LEVELS, TensorSpec
from makeusrich.errors import ServingError

# The most of one answer a client reads: a batch of 4,096 windows of a 24-step model with 5 quantile levels is
# about 12 MB of JSON; a server that sends more is broken or hostile, and reading it whole would cost the
# tracker or the dashboard its memory.
MAX_ANSWER_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class ModelMetadata:
    """A model's v2 metadata, with the fields this project's server adds in `parameters`."""

    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    parameters: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ModelMetadata:
        def tensors(key: str) -> tuple[TensorSpec, ...]:
            return tuple(
                TensorSpec(str(t["name"]), str(t["datatype"]), tuple(int(d) for d in t["shape"]))
                for t in body.get(key, [])
            )

        return cls(
            name=str(body["name"]),
            versions=tuple(str(v) for v in body.get("versions") or ()),
            platform=str(body.get("platform", "")),
            inputs=tensors("inputs"),
            outputs=tensors("outputs"),
            parameters=dict(body.get("parameters") or {}),
        )

    @property
    def version(self) -> str | None:
        """The served version: our server names it; a plain v2 server may list several or none."""
        served = self.parameters.get("served_version")
        return str(served) if served else (self.versions[-1] if self.versions else None)

    def _tensor(self, tensors: tuple[TensorSpec, ...], name: str) -> TensorSpec:
        for tensor in tensors:
            if tensor.name == name:
                return tensor
        raise ServingError(f"model {self.name} has no tensor {name!r} (it lists {[t.name for t in tensors]})")

    @property
    def window(self) -> int:
        """Candles per input window, from the input's shape [batch, window, 5]."""
        shape = self._tensor(self.inputs, INPUT_NAME).shape
        if len(shape) != 3 or shape[1] < 1:
            raise ServingError(f"model {self.name}'s input shape {list(shape)} is not [batch, window, 5]")
        return shape[1]

    @property
    def horizon(self) -> int:
        shape = self._tensor(self.outputs, OUTPUT_NAME).shape
        if len(shape) != 2 or shape[1] < 1:
            raise ServingError(f"model {self.name}'s output shape {list(shape)} is not [batch, horizon]")
        return shape[1]

    @property
    def kind(self) -> str | None:
        """Which model is served (lstm or baseline), when the server says (this project's does)."""
        kind = self.parameters.get("model_kind")
        return str(kind) if kind else None

    @property
    def levels(self) -> tuple[float, ...] | None:
        """The levels of the model's `quantiles` output, as our server names them; None for a model without one,
        or from a server that does not say (KServe's Triton runtime)."""
        levels = self.parameters.get(QUANTILE_LEVELS)
        return tuple(float(v) for v in levels) if isinstance(levels, list) and levels else None


@dataclass(frozen=True)
class Reply:
    """One inference answer as a transport read it: every output by name, as float32 arrays of their shapes."""

    outputs: dict[str, np.ndarray]
    model_name: str
    model_version: str | None
    id: str | None
    parameters: dict[str, Any]


class Wire(Protocol):
    """One transport of the v2 protocol. Every failure is a ServingError whose message is one sentence."""

    base_url: str

    async def live(self) -> bool: ...

    async def ready(self) -> bool: ...

    async def model_ready(self, name: str) -> bool: ...

    async def list_models(self) -> list[str] | None: ...

    async def server_metadata(self) -> dict[str, Any]: ...

    async def model_metadata(self, name: str) -> ModelMetadata: ...

    async def infer(
        self, name: str, candles: np.ndarray, outputs: Sequence[str], parameters: dict[str, str]
    ) -> Reply: ...

    async def aclose(self) -> None: ...
