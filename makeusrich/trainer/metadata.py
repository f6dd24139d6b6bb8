"""metadata.json (contract 3) of a training run, assembled from what the run measured and decided."""

from __future__ import annotations

import platform
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import onnx
import onnxruntime
import torch

from makeusrich import __version__
from makeusrich.contract import input_spec, iso_z, output_spec, quantiles_spec
from makeusrich.market import CandleSet, close_moments
from makeusrich.pair import CurrencyPair
from makeusrich.store import (
    Calibration,
    ChampionCheck,
    DataSpan,
    Epoch,
    Metrics,
    ModelMetadata,
    Promotion,
    SmokeTest,
    Training,
)
from makeusrich.trainer.features import Prepared
from makeusrich.trainer.train import TrainingResult

INPUT_DESCRIPTION = "raw open, high, low, close, volume; oldest first; last row = last closed candle"


def build_metadata(
    pair: CurrencyPair,
    version: str,
    candles: CandleSet,
    data: Prepared,
    result: TrainingResult,
    metrics: Metrics,
    decision: tuple[bool, str],
    champion: ChampionCheck | None,
    margins: np.ndarray,
    parity: float,
    threads: int,
    smoke: SmokeTest,
    total_seconds: float,
) -> ModelMetadata:
    spec = pair.spec
    levels = spec.model.quantiles
    closes = close_moments(data.open_time, spec.interval)  # metadata names candles by their close
    return ModelMetadata(
        pair=pair.name,
        namespace=pair.namespace,
        symbol=spec.symbol,
        interval=spec.interval,
        version=version,
        created_at=iso_z(datetime.now(UTC)),
        source=candles.source,
        data=DataSpan(
            from_=iso_z(data.open_time.iloc[0]),  # the span runs from the first candle's open...
            to=iso_z(closes.iloc[-1]),  # ...to the last one's close
            rows=len(closes),
            gaps=len(candles.report.gaps),
            missing_candles=candles.report.missing_candles,
            broken_dropped=len(candles.report.broken_dropped),
            windows={
                "train": len(data.split.train),
                "validation": len(data.split.validation),
                "test": len(data.split.test),
            },
            test_from=iso_z(closes.iloc[int(data.split.test.min())]),  # when the first test forecast is made
            validation_from=iso_z(closes.iloc[int(data.split.validation.min())]),
        ),
        window=data.window,
        horizon=data.horizon,
        inputs=[replace(input_spec(data.window), description=INPUT_DESCRIPTION)],
        outputs=[
            replace(output_spec(data.horizon), description="predicted close prices of the next candles (the median)"),
            replace(
                quantiles_spec(data.horizon, len(levels)),
                description="calibrated quantiles of those closes, one per level in `quantiles`, ascending",
            ),
        ],
        quantiles=levels,
        calibration=Calibration(
            levels=levels,
            margins=(margins * data.target_scaler.std[:, None]).round(8).tolist(),
            points=len(data.split.validation),
        ),
        spec=spec.model.model_dump(by_alias=True),
        metrics=metrics,
        promotion=Promotion(
            promoted=decision[0],
            reason=decision[1],
            max_relative_mae=spec.promotion.max_relative_mae,
            validation_relative_mae=metrics.validation.model.rel_mae,
            coverage_tolerance=spec.promotion.coverage_tolerance,
            validation_coverage=metrics.validation.ranges.model.ranges[0].rate if metrics.validation.ranges else None,
            champion=champion,
        ),
        training=Training(
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
        ),
        software={
            "makeusrich": __version__,
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "python": platform.python_version(),
        },
        smoke_test=smoke,
    )
