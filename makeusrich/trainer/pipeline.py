"""One training run for one pair: candles -> features -> LSTM -> honest evaluation -> ONNX -> store.

The published model is scored as it will be served: predictions come from the exported ONNX file run by
onnxruntime on raw candle windows, on points that neither training nor early stopping saw.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np
import onnx
import onnxruntime
import torch

from makeusrich import __version__
from makeusrich.contract import input_spec, iso_z, output_spec
from makeusrich.errors import MakeUsRichError, StoreError
from makeusrich.market import binance
from makeusrich.market.candles import close_moments, interval_ms
from makeusrich.market.source import CandleSet, Source, load_candles
from makeusrich.metadata import (
    DataSpan,
    Epoch,
    Metrics,
    ModelMetadata,
    Promotion,
    SmokeTest,
    SplitMetrics,
    Training,
    parse_metadata,
)
from makeusrich.onnxrt import onnx_session
from makeusrich.pair import CurrencyPair
from makeusrich.scoring import evaluate
from makeusrich.store import pair_store
from makeusrich.store.base import PairStore, new_version
from makeusrich.trainer.export import check_parity, export_onnx, run_onnx, triton_config
from makeusrich.trainer.features import Prepared, prepare
from makeusrich.trainer.model import Forecaster
from makeusrich.trainer.train import Progress, TrainingResult, configure_threads, log_progress, train

log = logging.getLogger(__name__)

AR_ORDER = 24
INPUT_DESCRIPTION = "raw open, high, low, close, volume; oldest first; last row = last closed candle"
PARITY_WINDOWS = 256


@dataclass
class Outcome:
    version: str
    promoted: bool
    reason: str
    metadata: ModelMetadata


def training_log_returns(data: Prepared) -> np.ndarray:
    """Log returns of the candles the training split reads (nothing later): the AR baseline's data."""
    last = int(data.split.train.max()) + data.horizon
    return np.diff(np.log(data.ohlcv[: last + 1, 3]))


def score_split(
    data: Prepared, origins: np.ndarray, session: onnxruntime.InferenceSession, ar_coefs: np.ndarray
) -> SplitMetrics:
    """The exported model, run by onnxruntime as it will be served, and every baseline on one split."""
    history = evaluate.past_closes(data.ohlcv[:, 3], origins, min(AR_ORDER, data.window - 1) + 1)
    return evaluate.evaluate_split(
        actual=data.actual_prices(origins),
        forecast=run_onnx(session, data.raw_windows(origins)),
        last_close=data.last_close(origins),
        closes_history=history,
        train_mean_log_return=float(data.target_scaler.mean[0]),
        ar_coefs=ar_coefs,
    )


def smoke_test(session: onnxruntime.InferenceSession, data: Prepared) -> SmokeTest:
    """The last test window and the exported model's forecast for it: the server runs it before serving a
    version, so a model that fails on real prices, or a file that is not the measured model, is refused."""
    candles = np.ascontiguousarray(data.raw_windows(data.split.test[-1:]), dtype=np.float32)
    forecast = run_onnx(session, candles)
    return SmokeTest(candles=candles[0].tolist(), forecast=forecast[0].tolist())


def promotion_decision(validation: SplitMetrics, max_relative_mae: float) -> tuple[bool, str]:
    """Promote when validation MAE / persistence MAE <= the pair's bar; the reason says either way."""
    ratio = validation.model.rel_mae
    if ratio is None:
        return False, "validation prices never moved, so skill against persistence is undefined"
    if ratio <= max_relative_mae:
        return True, f"validation MAE is {ratio:.4f} of persistence's, within the bar of {max_relative_mae:g}"
    return False, f"validation MAE is {ratio:.4f} of persistence's, above the bar of {max_relative_mae:g}"


def build_metadata(
    pair: CurrencyPair,
    version: str,
    candles: CandleSet,
    data: Prepared,
    result: TrainingResult,
    metrics: Metrics,
    decision: tuple[bool, str],
    parity: float,
    threads: int,
    smoke: SmokeTest,
    total_seconds: float,
) -> ModelMetadata:
    spec = pair.spec
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
        ),
        window=data.window,
        horizon=data.horizon,
        inputs=[replace(input_spec(data.window), description=INPUT_DESCRIPTION)],
        outputs=[replace(output_spec(data.horizon), description="predicted close prices of the next candles")],
        spec=spec.model.model_dump(by_alias=True),
        metrics=metrics,
        promotion=Promotion(
            promoted=decision[0],
            reason=decision[1],
            max_relative_mae=spec.promotion.max_relative_mae,
            validation_relative_mae=metrics.validation.model.rel_mae,
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


def live_only(store: PairStore, source: Source) -> Source:
    """`auto` is Binance alone once the served model was trained on Binance's candles: a network blip must not
    replace it with a model of the 2022 sample (the run fails offline instead, and the served model stays)."""
    if source.kind != "auto":
        return source
    try:
        latest = store.latest()
        served = store.model_metadata(latest.version).source if latest else None
    except StoreError:
        served = None  # an unreadable promoted version: serving refuses it anyway, any model is better
    return Source("binance") if served is not None and served.startswith("binance") else source


def run_training(
    pair: CurrencyPair,
    source: Source,
    store_url: str,
    *,
    api_url: str | None = None,
    max_retries: int = binance.DEFAULT_RETRIES,
    now: datetime | None = None,
    progress: Progress | None = log_progress,
) -> Outcome:
    """Train, evaluate, export and publish one version; promote it if it clears the pair's bar."""
    started = time.perf_counter()
    threads = configure_threads()
    store = pair_store(store_url, pair.namespace, pair.name)
    spec = pair.spec
    version = new_version(now)
    candles = load_candles(spec, live_only(store, source), store, now=now, api_url=api_url, max_retries=max_retries)
    log.info(
        "candles ready", extra={"pair": pair.name, "summary": candles.report.summary(), "requests": candles.requests}
    )
    data = prepare(candles.frame, spec.model.window, spec.model.horizon, interval_ms(spec.interval))
    result = train(data, spec.model, progress)
    forecaster = Forecaster(result.core.cpu(), data.feature_scaler, data.target_scaler)
    model_bytes = export_onnx(forecaster, data.window)
    parity = check_parity(forecaster, model_bytes, data.raw_windows(data.split.test[-PARITY_WINDOWS:]))
    session = onnx_session(model_bytes, threads)
    ar_coefs = evaluate.fit_ar(training_log_returns(data), min(AR_ORDER, data.window - 1))
    metrics = Metrics(
        validation=score_split(data, data.split.validation, session, ar_coefs),
        test=score_split(data, data.split.test, session, ar_coefs),
    )
    decision = promotion_decision(metrics.validation, spec.promotion.max_relative_mae)
    smoke, took = smoke_test(session, data), round(time.perf_counter() - started, 3)
    document = build_metadata(pair, version, candles, data, result, metrics, decision, parity, threads, smoke, took)
    metadata = document.to_json()
    files = {
        store.model_path(): model_bytes,
        store.config_path(): triton_config(pair.name, data.window, data.horizon).encode(),
    }
    try:
        json.dumps(metadata, allow_nan=False)
    except ValueError as exc:
        raise MakeUsRichError(f"training produced non-finite metrics ({exc}); nothing was published") from None
    stored = store.publish(version, files, metadata, promote=decision[0])
    try:
        removed = store.clean_abandoned(version)
    except StoreError as exc:  # the new version is safe; what a crashed run left can wait for the next run
        log.warning("could not remove what crashed runs left: %s", exc)
    else:
        if removed:
            log.info("removed what crashed runs left", extra={"pair": pair.name, "removed": removed})
    return Outcome(version=version, promoted=decision[0], reason=decision[1], metadata=parse_metadata(stored))


def summary(outcome: Outcome) -> str:
    """A few lines a person reads after a run."""
    meta = outcome.metadata
    lines = [
        f"{meta.namespace}/{meta.pair} version {outcome.version}: "
        + ("promoted" if outcome.promoted else "published, not promoted"),
        f"  {outcome.reason}",
    ]
    for name, split in (("validation", meta.metrics.validation), ("test", meta.metrics.test)):
        model, persistence, direction = split.model, split.rules.persistence, split.model.directional
        shown = (
            f"direction {direction.accuracy:.1%} [{direction.wilson_low:.1%}, {direction.wilson_high:.1%}]"
            if direction
            else "direction n/a"
        )
        dm = "n/a" if model.dm_pvalue is None else f"{model.dm_pvalue:.3f}"
        ratio = "n/a" if model.rel_mae is None else f"{model.rel_mae:.4f}"
        lines.append(
            f"  {name:<10} MAE {model.mae or 0:,.2f} vs persistence {persistence.mae or 0:,.2f} "
            f"(ratio {ratio}, DM p={dm}), {shown}, n={model.n}"
        )
    lines.append(f"  stored at {meta.storage_uri}")
    return "\n".join(lines)
