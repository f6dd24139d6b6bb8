"""metadata.json (contract 3) of a version, assembled from what its run measured and decided: the LSTM's and the
baseline's alike, with the hours each role used (`data.roles`) and the last one that tuned the version."""

from __future__ import annotations

import platform
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import onnx
import onnxruntime
import pandas as pd
import torch

from makeusrich import __version__
from makeusrich.contract import input_spec, iso_z, output_spec, quantiles_spec
from makeusrich.market import CandleSet, close_moments
from makeusrich.pair import CurrencyPair
from makeusrich.store import (
    BaselineInfo,
    Calibration,
    DataSpan,
    Epoch,
    Metrics,
    ModelMetadata,
    Promotion,
    RoleSpan,
    SmokeTest,
    Training,
)
from makeusrich.trainer.baseline import LAMBDA, BaselineFit
from makeusrich.trainer.features import ROLES, Prepared
from makeusrich.trainer.train import TrainingResult
from makeusrich.trainer.warm import Start

INPUT_DESCRIPTION = "raw open, high, low, close, volume; oldest first; last row = last closed candle"
TUNING_ROLES = {"lstm": ("train", "validation", "calibration"), "baseline": ("train",)}
"""The roles whose hours tune each kind of model: the baseline is fitted on the training split and nothing else."""


def role_spans(data: Prepared, closes: pd.Series) -> dict[str, RoleSpan]:
    """Each role's origins and hours: from the close of its first origin to that of its last target."""
    spans = {}
    for role in ROLES:
        origins = data.split.of(role)
        spans[role] = RoleSpan(
            origins=len(origins),
            from_=iso_z(closes.iloc[int(origins.min())]),
            to=iso_z(closes.iloc[int(origins.max()) + data.horizon]),
        )
    return spans


def data_span(data: Prepared, candles: CandleSet, interval: str, kind: str) -> DataSpan:
    closes = close_moments(data.open_time, interval)  # metadata names candles by their close
    roles = role_spans(data, closes)
    return DataSpan(
        from_=iso_z(data.open_time.iloc[0]),  # the span runs from the first candle's open...
        to=iso_z(closes.iloc[-1]),  # ...to the last one's close
        rows=len(closes),
        gaps=len(candles.report.gaps),
        missing_candles=candles.report.missing_candles,
        broken_dropped=len(candles.report.broken_dropped),
        windows={role: span.origins for role, span in roles.items()},
        test_from=roles["test"].from_,  # when the first test forecast is made
        validation_from=roles["validation"].from_,
        roles=roles,
        tuned_until=max(roles[role].to for role in TUNING_ROLES[kind]),
    )


def with_weight_roles(document: ModelMetadata, served: ModelMetadata) -> ModelMetadata:
    """A recalibrated version's metadata with the train and validation hours that fitted and early-stopped its
    weights (the served version's), not those of the split its run cut to fit naive baselines."""
    roles = {**document.data.roles, **{role: served.data.roles[role] for role in ("train", "validation")}}
    windows = {**document.data.windows, **{role: span.origins for role, span in roles.items()}}
    tuned = max(roles[role].to for role in TUNING_ROLES["lstm"])
    data = document.data.model_copy(update={"roles": roles, "windows": windows, "tuned_until": tuned})
    return document.model_copy(update={"data": data})


def recalibration_training(seconds: float, parity: float, threads: int, served: str, points: int) -> Training:
    """A recalibration trains nothing, as a baseline's fit does: the served version's weights, new margins."""
    start = f"recalibrated: the weights of {served}, margins refitted on {points} held-out hours"
    return baseline_training(seconds, parity, threads).model_copy(update={"warm_from": served, "start": start})


def software() -> dict[str, str]:
    return {
        "makeusrich": __version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
    }


def build_metadata(
    pair: CurrencyPair,
    version: str,
    kind: str,
    candles: CandleSet,
    data: Prepared,
    metrics: Metrics,
    promotion: Promotion,
    training: Training,
    smoke: SmokeTest,
    calibration: Calibration | None = None,
    baseline: BaselineInfo | None = None,
) -> ModelMetadata:
    spec = pair.spec
    levels = spec.model.quantiles
    described = "calibrated quantiles" if kind == "lstm" else "quantiles (the last close times exp(volatility * z))"
    return ModelMetadata(
        pair=pair.name,
        namespace=pair.namespace,
        symbol=spec.symbol,
        interval=spec.interval,
        version=version,
        kind=kind,
        created_at=iso_z(datetime.now(UTC)),
        source=candles.source,
        data=data_span(data, candles, spec.interval, kind),
        window=data.window,
        horizon=data.horizon,
        inputs=[replace(input_spec(data.window), description=INPUT_DESCRIPTION)],
        outputs=[
            replace(output_spec(data.horizon), description="predicted close prices of the next candles (the median)"),
            replace(
                quantiles_spec(data.horizon, len(levels)),
                description=f"{described} of those closes, one per level in `quantiles`, ascending",
            ),
        ],
        quantiles=levels,
        calibration=calibration,
        baseline=baseline,
        spec=spec.model.model_dump(by_alias=True),
        metrics=metrics,
        promotion=promotion,
        training=training,
        software=software(),
        smoke_test=smoke,
    )


def lstm_training(result: TrainingResult, parity: float, threads: int, total_seconds: float, start: Start) -> Training:
    return Training(
        seconds=round(result.seconds, 3),
        epochs=len(result.epochs),
        best_epoch=result.best_epoch,
        stopped_early=result.stopped_early,
        device=result.device,
        threads=threads,
        history=[
            Epoch(epoch=e.epoch, train_loss=e.train_loss, validation_loss=e.validation_loss) for e in result.epochs
        ],
        onnx_parity_max_relative=parity,
        total_seconds=total_seconds,
        warm_from=start.version,
        start=start.note,
    )


def lstm_calibration(
    margins: np.ndarray, data: Prepared, levels: list[float], typical: float | None = None
) -> Calibration:
    """The conformal margins in log returns at the training hours' median volatility, or at `typical` (the graph
    holds them in standardised units of the volatility it expects at each origin)."""
    typical = float(np.median(data.scale[data.split.train])) if typical is None else typical
    return Calibration(
        levels=levels,
        margins=(margins * data.target_scaler.std[:, None] * typical).round(8).tolist(),
        points=len(data.split.calibration),
    )


def baseline_training(seconds: float, parity: float, threads: int) -> Training:
    """A baseline is fitted, not trained: no epochs, and its parity is the graph's against numpy's arithmetic."""
    return Training(
        seconds=round(seconds, 3),
        epochs=0,
        best_epoch=0,
        stopped_early=False,
        device="cpu",
        threads=threads,
        history=[],
        onnx_parity_max_relative=parity,
        total_seconds=round(seconds, 3),
    )


def baseline_info(fit: BaselineFit) -> BaselineInfo:
    return BaselineInfo(estimator=fit.estimator, decay=LAMBDA, train_pinball=fit.train_pinball)
