"""Warm-started retraining: which stored LSTM a scheduled run may start from, and its weights as a file.

Yesterday's run trained on almost the same hours as today's, so today's run starts from its weights and stops
after fewer epochs. What stays honest: the run refits both scalers on its own training split and recalibrates
its margins on its own calibration hours, as a cold run does; and a version is a source only when every hour that
fitted or early-stopped its weights (its lineage's too, by induction) closed by the end of this run's validation
split, so this run's calibration and test hours tuned nothing it starts from and the gates judge it as they judge
a cold run. With fixed fractions and a window that moves forward, yesterday's run always qualifies; a longer
lookback, or a run on older candles, does not.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import Any

import torch

from makeusrich.contract import median_index
from makeusrich.errors import StoreError
from makeusrich.pair import CurrencyPairSpec
from makeusrich.scoring import ranges
from makeusrich.store import ModelMetadata, PairStore, RoleSpan
from makeusrich.trainer.features import FEATURE_SET, Scaler
from makeusrich.trainer.model import Forecaster, LSTMCore

log = logging.getLogger(__name__)

NEWEST_SCANNED = 10
"""Versions read, newest first, to find the newest LSTM when the served version is the baseline."""

State = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Start:
    """How a run's weights begin: a stored version's (`state`), or the seed's when `state` is None; `note` says
    which and why, for the run's metadata and its summary."""

    note: str
    version: str | None = None
    state: State | None = None


def architecture(spec: CurrencyPairSpec) -> dict[str, Any]:
    """What must match for weights to carry over: the inputs, the network's shape and what its head forecasts."""
    model = spec.model
    return {
        "interval": spec.interval,
        "features": FEATURE_SET,
        "window": model.window,
        "horizon": model.horizon,
        "hiddenSize": model.hidden_size,
        "layers": model.layers,
        "quantiles": list(model.quantiles),
    }


def weights_file(forecaster: Forecaster, spec: CurrencyPairSpec) -> bytes:
    """The trained weights and the architecture they belong to, as torch saves them; beside them the rest of the
    served graph's parameters (scalers, the in-window HAR, the margins), so that the graph can be rebuilt with new
    margins alone (a recalibration)."""
    buffer = io.BytesIO()
    state = {name: tensor.detach().cpu() for name, tensor in forecaster.core.state_dict().items()}
    graph = {
        name: tensor.detach().cpu()
        for name, tensor in forecaster.state_dict().items()
        if not name.startswith("core.")  # the network's own weights are `state`
    }
    volatility = {"spans": list(forecaster.features.spans), "floor": forecaster.features.floor}
    torch.save({"architecture": architecture(spec), "state": state, "graph": graph, "volatility": volatility}, buffer)
    return buffer.getvalue()


def read_forecaster(raw: bytes, spec: CurrencyPairSpec) -> Forecaster:
    """The served graph rebuilt from a stored weights file: the network (checked against `spec` as read_weights
    does) and the parameters around it. ValueError when the file is older than files that kept them."""
    saved = _load(raw)
    state = _fitting_state(saved, spec)
    if "graph" not in saved:
        raise ValueError("its weights file was written before versions kept their graph's parameters")
    graph, volatility = saved["graph"], saved["volatility"]
    model = spec.model
    core = LSTMCore(
        model.hidden_size,
        model.layers,
        model.dropout,
        model.horizon,
        len(model.quantiles),
        median_index(model.quantiles),
    )
    core.load_state_dict(state)
    har = ranges.Har(
        spans=tuple(volatility["spans"]),
        floor=float(volatility["floor"]),
        coefficients=graph["features.coefficients"].numpy(),
    )
    forecaster = Forecaster(
        core,
        Scaler(graph["features.mean"].numpy(), graph["features.std"].numpy()),
        Scaler(graph["target_mean"].numpy(), graph["target_std"].numpy()),
        har,
        graph["margins"].numpy(),
    )
    forecaster.eval()
    return forecaster


def read_weights(raw: bytes, spec: CurrencyPairSpec) -> State:
    """Weights from a stored file, refused (ValueError, saying what differs) unless they fit `spec`'s network."""
    return _fitting_state(_load(raw), spec)


def _load(raw: bytes) -> dict[str, Any]:
    """A stored weights file, loaded with weights_only: it can hold tensors and plain values, never code."""
    try:
        saved = torch.load(io.BytesIO(raw), weights_only=True, map_location="cpu")
    except Exception as exc:  # torch raises several kinds for a damaged or foreign file
        raise ValueError(f"its weights file is unreadable ({type(exc).__name__})") from None
    if not isinstance(saved, dict) or not {"architecture", "state"} <= saved.keys():
        raise ValueError("its weights file is unreadable (not a makeusrich weights file)")
    return saved


def _fitting_state(saved: dict[str, Any], spec: CurrencyPairSpec) -> State:
    """The network's weights of a loaded file, refused unless they fit `spec`'s network."""
    stored, state = saved["architecture"], saved["state"]
    wanted = architecture(spec)
    differs = [key for key in wanted if stored.get(key) != wanted[key]]
    if differs:
        key = differs[0]
        raise ValueError(f"its {key} {stored.get(key)} differs from the spec's {wanted[key]}")
    model = spec.model
    core = LSTMCore(model.hidden_size, model.layers, model.dropout, model.horizon, len(model.quantiles), 0)
    try:
        core.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ValueError(f"its weights do not fit the network ({str(exc).splitlines()[0][:120]})") from None
    return {name: tensor.clone() for name, tensor in state.items()}


def tuned_through(meta: ModelMetadata) -> str | None:
    """The close of the last hour that fitted or early-stopped a version's weights (its margins are refit)."""
    roles = meta.data.roles
    if "train" not in roles or "validation" not in roles:
        return None
    return max(roles["train"].to, roles["validation"].to)


def refusal(meta: ModelMetadata, store: PairStore, validation: RoleSpan) -> str | None:
    """Why a version cannot start this run (None when it can, its architecture still to be checked in its file);
    `validation` is this run's validation span."""
    if meta.kind != "lstm":
        return f"{meta.version} is the {meta.kind}, which has no weights to start from"
    if store.weights_path() not in meta.files:
        return f"{meta.version} was trained before versions kept their weights"
    tuned = tuned_through(meta)
    if tuned is None:
        return f"{meta.version} records no data roles"
    if tuned > validation.to:
        return (
            f"{meta.version}'s weights were tuned on hours up to {tuned}, after this run's validation hours end "
            f"({validation.to}): starting from them would let this run's calibration or test hours tune it"
        )
    return None


def candidates(store: PairStore, served: ModelMetadata | None) -> list[ModelMetadata]:
    """The served version when it is an LSTM, then the newest LSTM among the newest versions (when another): a
    served LSTM from before versions kept weights must not keep every later run cold."""
    found = [served] if served is not None and served.kind == "lstm" else []
    for version in reversed(store.versions()[-NEWEST_SCANNED:]):
        try:
            meta = store.model_metadata(version)
        except StoreError as exc:
            log.warning(
                "skipped an unreadable version", extra={"pair": store.pair, "version": version, "why": str(exc)}
            )
            continue
        if meta.kind == "lstm":
            return [*found, meta] if meta.version not in {m.version for m in found} else found
    return found


def choose_start(spec: CurrencyPairSpec, store: PairStore, served: ModelMetadata | None, validation: RoleSpan) -> Start:
    """The weights this run starts from, with the reason; never raises for a bad source: the run goes cold."""
    if not spec.model.warm_start:
        return Start("from the seed: spec.model.warmStart is false")
    found = candidates(store, served)
    if not found:
        return Start("from the seed: the pair has no LSTM version to start from")
    refusals = []
    for meta in found:
        why = refusal(meta, store, validation)
        if why is None:
            try:
                state = read_weights(store.read_file(meta.version, store.weights_path()), spec)
            except (StoreError, ValueError) as exc:
                why = f"{meta.version}: {exc}"
            else:
                which = "served" if served is not None and served.version == meta.version else "newest LSTM"
                return Start(f"from the weights of {meta.version} (the {which} version)", meta.version, state)
        refusals.append(why)
    return Start("from the seed: " + "; ".join(refusals))
