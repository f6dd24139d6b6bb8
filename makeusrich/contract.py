"""What every component shares, at the bottom of the package: the served model's tensors (contract 2), the
version names of the store (contract 3) and the candle intervals. Pure constants and one small type: no I/O,
no third-party import, so the operator and the dashboard can use it without pulling in torch or pandas.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

# --- contract 2: the model as served -----------------------------------------------------------------------------

INPUT_NAME = "candles"
OUTPUT_NAME = "forecast"
DATATYPE = "FP32"
PLATFORM = "onnxruntime_onnx"
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


def input_spec(window: int) -> TensorSpec:
    """The model's input: raw candles, [batch, window, 5], oldest first."""
    return TensorSpec(INPUT_NAME, DATATYPE, (-1, window, len(FIELDS)))


def output_spec(horizon: int) -> TensorSpec:
    """The model's output: predicted closes of the next `horizon` candles, [batch, horizon]."""
    return TensorSpec(OUTPUT_NAME, DATATYPE, (-1, horizon))


# --- contract 3: version names -----------------------------------------------------------------------------------

VERSION_FORMAT = "%Y%m%dT%H%M%SZ"  # UTC time of the run's start: sortable, unique per run
VERSION_PATTERN = r"^\d{8}T\d{6}Z$"
VERSION_RE = re.compile(VERSION_PATTERN)


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
