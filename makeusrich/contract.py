"""What every component shares, at the bottom of the package: the served model's tensors (contract 2), the
version names of the store (contract 3) and the candle intervals. Pure constants and one small type: no I/O,
no third-party import, so the operator and the dashboard can use it without pulling in torch or pandas.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

# --- contract 2: the model as served -----------------------------------------------------------------------------

INPUT_NAME = "candles"
OUTPUT_NAME = "forecast"
QUANTILES_NAME = "quantiles"
DATATYPE = "FP32"
PLATFORM = "onnxruntime_onnx"
# The model metadata parameter that lists the levels of the `quantiles` output.
QUANTILE_LEVELS = "quantile_levels"
# The v2 gRPC protocol's model metadata has no `parameters`: this project's server sends them as JSON in this
# trailing metadata key of the ModelMetadata call, so its gRPC clients read what REST clients read.
GRPC_PARAMETERS_KEY = "makeusrich-parameters"
ONNX_OPSET = 17  # every model file's opset: onnxruntime and Triton's onnxruntime backend both run it
# The five values of one candle, in the order the model takes them.
FIELDS: tuple[str, ...] = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class TensorSpec:
    """One input or output as the v2 metadata endpoint describes it; -1 marks a dimension of any size."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    description: str = ""  # for people reading metadata.json; the v2 metadata endpoint leaves it out

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    def describe(self) -> str:
        dims = ", ".join(
            "batch" if i == 0 and d == -1 else str(d) if d >= 0 else "any" for i, d in enumerate(self.shape)
        )
        return f"{self.name!r} ({self.datatype} [{dims}])"


DEFAULT_NAMESPACE = "default"


def model_name(namespace: str, pair: str) -> str:
    """A pair's model name on a server of every namespace (`makeusrich up`): the pair's name in `default`,
    `namespace.name` elsewhere (both are DNS labels, without dots, so the name is unambiguous). In a cluster each
    InferenceService serves its own pair, named as the pair."""
    return pair if namespace == DEFAULT_NAMESPACE else f"{namespace}.{pair}"


def model_name_at(namespace: str, pair: str, listed: list[str] | None) -> str:
    """The pair's model name at a server that lists `listed` (None: it does not say): a server of every
    namespace (it lists the qualified name, or any name with a dot) knows it as `model_name`, a server of one
    namespace (an InferenceService) by the pair's name."""
    qualified = model_name(namespace, pair)
    if qualified != pair and listed is not None and (qualified in listed or any("." in n for n in listed)):
        return qualified
    return pair


def input_spec(window: int) -> TensorSpec:
    """The model's input: raw candles, [batch, window, 5], oldest first."""
    return TensorSpec(INPUT_NAME, DATATYPE, (-1, window, len(FIELDS)))


def output_spec(horizon: int) -> TensorSpec:
    """The model's output: predicted closes of the next `horizon` candles, [batch, horizon]."""
    return TensorSpec(OUTPUT_NAME, DATATYPE, (-1, horizon))


def quantiles_spec(horizon: int, levels: int) -> TensorSpec:
    """The second output: calibrated quantiles of those closes, [batch, horizon, levels], levels ascending."""
    return TensorSpec(QUANTILES_NAME, DATATYPE, (-1, horizon, levels))


DEFAULT_LEVELS: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)
"""Quantile levels a model forecasts unless its pair says otherwise: the median and the 50% and 90% ranges."""


def level_problem(levels: tuple[float, ...] | list[float]) -> str | None:
    """What is wrong with a list of quantile levels, or None. A valid list is sorted, distinct, strictly inside
    (0, 1), holds 0.5 (the median is the point forecast) and each level's mirror 1 - level (so that every
    level below the median closes a central range with one above it)."""
    values = [float(v) for v in levels]
    if len(values) < 3:
        return f"quantile levels need at least one range around the median (three levels), got {values}"
    if any(not 0.0 < v < 1.0 for v in values):
        return f"quantile levels must lie strictly between 0 and 1, got {values}"
    if any(b <= a for a, b in itertools.pairwise(values)):
        return f"quantile levels must be sorted and distinct, got {values}"
    if not any(abs(v - 0.5) < 1e-9 for v in values):
        return f"quantile levels must include 0.5 (the median is the point forecast), got {values}"
    mirrored = [v for v in values if not any(abs(1.0 - v - w) < 1e-9 for w in values)]
    if mirrored:
        pair = f"{mirrored[0]:g} needs {1 - mirrored[0]:g}"
        return f"quantile levels must come in pairs around 0.5 ({pair}), got {values}"
    return None


def median_index(levels: tuple[float, ...] | list[float]) -> int:
    """Where the median (the point forecast) sits among valid levels."""
    return min(range(len(levels)), key=lambda i: abs(levels[i] - 0.5))


def central_ranges(levels: tuple[float, ...] | list[float]) -> list[tuple[int, int, float]]:
    """(index of the low level, index of the high level, nominal coverage) of each central range, widest first."""
    count = len(levels)
    return [(i, count - 1 - i, round(levels[count - 1 - i] - levels[i], 9)) for i in range(count // 2)]


# --- contract 3: version names -----------------------------------------------------------------------------------

VERSION_FORMAT = "%Y%m%dT%H%M%SZ"  # UTC time of the run's start: sortable, unique per run
VERSION_PATTERN = r"^\d{8}T\d{6}Z$"
VERSION_RE = re.compile(VERSION_PATTERN)


def version_problem(text: str) -> str | None:
    """Why `text` names no version, or None. A version matches the pattern and spells a real UTC time
    (20261399T256161Z matches and spells none, which would fail later, wherever the time is read)."""
    if VERSION_RE.match(text):
        try:
            datetime.strptime(text, VERSION_FORMAT)
            return None
        except ValueError:
            pass
    return "is not a model version; versions are the UTC time of their run, like 20261126T150000Z"


def is_version(text: str) -> bool:
    return version_problem(text) is None


def iso_z(moment: datetime | None = None) -> str:
    """A moment (default: now) as the documents of this project write times: RFC 3339 in UTC with a Z, to the
    second (metadata.json, latest.json, the Kubernetes status, the server's metadata)."""
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- intervals ---------------------------------------------------------------------------------------------------

# Binance kline intervals with a fixed length. "1s" (too fine to train on hourly schedules) and "1M" (calendar
# months have no fixed length) are left out on purpose.
Interval = Literal["1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w"]
_UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}
INTERVAL_MS: dict[str, int] = {name: int(name[:-1]) * _UNIT_MS[name[-1]] for name in get_args(Interval)}


def quantile_column(level: float) -> str:
    """The column of one quantile level (forecast frames, track rows): `q0.05`, `q0.5`, `q0.95`."""
    return f"q{level:g}"
