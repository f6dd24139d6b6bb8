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
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pandas as pd
import torch

from makeusrich import __version__
from makeusrich.contract import INPUT_NAME, QUANTILES_NAME, input_spec, iso_z, output_spec, quantiles_spec
from makeusrich.errors import MakeUsRichError, StoreError
from makeusrich.market import binance
from makeusrich.market.candles import close_moments, interval_ms
from makeusrich.market.source import CandleSet, Source, load_candles
from makeusrich.onnxrt import onnx_session
from makeusrich.pair import CurrencyPair
from makeusrich.scoring import evaluate, ranges
from makeusrich.store import (
    Calibration,
    ChampionCheck,
    DataSpan,
    Epoch,
    Metrics,
    ModelMetadata,
    PairStore,
    Promotion,
    RangeMetrics,
    SmokeTest,
    SplitMetrics,
    Training,
    pair_store,
    parse_metadata,
)
from makeusrich.trainer.export import check_parity, export_onnx, run_onnx, triton_config
from makeusrich.trainer.features import Prepared, prepare
from makeusrich.trainer.model import Forecaster, LSTMCore
from makeusrich.trainer.train import (
    Progress,
    TrainingResult,
    configure_threads,
    log_progress,
    predict_standardised,
    train,
)

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


def log_returns(prices: np.ndarray, last_close: np.ndarray) -> np.ndarray:
    """Prices [n, h] or quantiles [n, h, L] as log returns from each origin's last close."""
    return np.asarray(np.log(prices / last_close.reshape((-1,) + (1,) * (prices.ndim - 1))))


def baseline_ranges(
    data: Prepared, origins: np.ndarray, levels: list[float], sigma: np.ndarray, offset: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Climatology's and EWMA volatility's quantiles [n, h, L] at origins, fitted on the training split only.
    `sigma` is indexed like `origins`; `offset` is where `data`'s candles start in it."""
    train = data.split.train
    train_returns = log_returns(data.actual_prices(train), data.last_close(train))
    return ranges.baseline_quantiles(train_returns, sigma[train + offset], sigma[origins], levels)


def score_split(
    data: Prepared,
    origins: np.ndarray,
    session: onnxruntime.InferenceSession,
    ar_coefs: np.ndarray,
    levels: list[float],
    sigma: np.ndarray,
) -> SplitMetrics:
    """The exported model, run by onnxruntime as it will be served, and every baseline on one split."""
    history = evaluate.past_closes(data.ohlcv[:, 3], origins, min(AR_ORDER, data.window - 1) + 1)
    actual, last_close = data.actual_prices(origins), data.last_close(origins)
    forecast, quantiles = run_onnx(session, data.raw_windows(origins))
    point = evaluate.evaluate_split(
        actual=actual,
        forecast=forecast,
        last_close=last_close,
        closes_history=history,
        train_mean_log_return=float(data.target_scaler.mean[0]),
        ar_coefs=ar_coefs,
    )
    climatology, ewma = baseline_ranges(data, origins, levels, sigma)
    scored = ranges.range_metrics(
        log_returns(actual, last_close), log_returns(quantiles, last_close), climatology, ewma, levels
    )
    return point.model_copy(update={"ranges": scored})


def smoke_test(session: onnxruntime.InferenceSession, data: Prepared) -> SmokeTest:
    """The last test window and the exported model's forecast for it: the server runs it before serving a
    version, so a model that fails on real prices, or a file that is not the measured model, is refused."""
    candles = np.ascontiguousarray(data.raw_windows(data.split.test[-1:]), dtype=np.float32)
    forecast, quantiles = run_onnx(session, candles)
    return SmokeTest(candles=candles[0].tolist(), forecast=forecast[0].tolist(), quantiles=quantiles[0].tolist())


def promotion_decision(
    validation: SplitMetrics, max_relative_mae: float, coverage_tolerance: float
) -> tuple[bool, str]:
    """Promote when validation MAE / persistence MAE <= the pair's bar and the widest range covers the
    validation points as its level says, within the pair's tolerance; the reason says either way."""
    ratio = validation.model.rel_mae
    if ratio is None:
        return False, "validation prices never moved, so skill against persistence is undefined"
    if ratio > max_relative_mae:
        return False, f"validation MAE is {ratio:.4f} of persistence's, above the bar of {max_relative_mae:g}"
    point = f"validation MAE is {ratio:.4f} of persistence's, within the bar of {max_relative_mae:g}"
    if validation.ranges is None:
        return True, point
    widest = validation.ranges.model.ranges[0]
    off = abs(widest.rate - widest.nominal)
    said = f"its {widest.nominal:.0%} range covers {widest.rate:.1%} of validation closes"
    if off > coverage_tolerance + 1e-12:
        return False, f"{point}, but {said}, further than {coverage_tolerance:g} from {widest.nominal:.0%}"
    return True, f"{point}, and {said}"


CHAMPION_MIN_POINTS = 100
"""Validation hours the served version never trained on that a comparison needs: fewer say too little."""
CHAMPION_P = 0.05


def champion_points(data: Prepared, champion: ModelMetadata) -> np.ndarray:
    """Validation origins whose inputs and targets the champion never trained on (from its validation split on;
    it early-stopped and calibrated there, which favours the champion: the comparison errs towards keeping it)
    and with enough history for its window."""
    boundary = pd.Timestamp(champion.data.validation_from or champion.data.test_from)
    closes = close_moments(data.open_time, champion.interval)
    validation = data.split.validation
    keep = (closes.iloc[validation].to_numpy() >= boundary) & (validation - champion.window + 1 >= 0)
    return validation[keep]


def compare_with_champion(
    store: PairStore, data: Prepared, session: onnxruntime.InferenceSession, levels: list[float]
) -> ChampionCheck | None:
    """Score the served version's own ONNX file and this run's on the same newest validation hours; None when
    nothing is served yet."""
    latest = store.latest()
    if latest is None:
        return None
    version = latest.version
    try:
        champion = store.model_metadata(version)
        champion_session = onnx_session(store.read_model(version))
    except StoreError as exc:
        return ChampionCheck(version=version, n=0, compared=False, note=f"the served version is unreadable: {exc}")
    if champion.horizon != data.horizon:
        note = f"the served version forecasts {champion.horizon} candles ahead, this run {data.horizon}"
        return ChampionCheck(version=version, n=0, compared=False, note=note)
    points = champion_points(data, champion)
    if len(points) < CHAMPION_MIN_POINTS:
        note = (
            f"only {len(points)} validation hours lie after the served version's training data "
            f"(at least {CHAMPION_MIN_POINTS} are needed to compare)"
        )
        return ChampionCheck(version=version, n=len(points), compared=False, note=note)
    actual, last = data.actual_prices(points), data.last_close(points)
    forecast, quantiles = run_onnx(session, data.raw_windows(points))
    windows = np.lib.stride_tricks.sliding_window_view(data.ohlcv, champion.window, axis=0)
    champion_windows = np.ascontiguousarray(windows[points - champion.window + 1].transpose(0, 2, 1), np.float32)
    names = [output.name for output in champion_session.get_outputs()]
    answers = champion_session.run(names, {INPUT_NAME: champion_windows})
    mae, champion_mae = (float(np.mean(np.abs(f - actual))) for f in (forecast, answers[0]))
    found: dict[str, Any] = {
        "mae": mae,
        "champion_mae": champion_mae,
        "mae_dm_pvalue": evaluate.diebold_mariano(forecast - actual, answers[0] - actual, data.horizon, "absolute"),
    }
    if QUANTILES_NAME in names and champion.quantiles == levels:
        y = log_returns(actual, last)
        ours = ranges.pinball_by_origin(y, log_returns(quantiles, last), levels)
        theirs = ranges.pinball_by_origin(y, log_returns(answers[names.index(QUANTILES_NAME)], last), levels)
        found.update(
            pinball=float(ours.mean()),
            champion_pinball=float(theirs.mean()),
            pinball_dm_pvalue=evaluate.diebold_mariano_losses(ours, theirs, data.horizon),
        )

    def significantly_worse(key: str) -> bool:
        p = found.get(f"{key}_dm_pvalue")
        return key in found and found[key] > found[f"champion_{key}"] and p is not None and p < CHAMPION_P

    worse = [label for key, label in (("mae", "MAE"), ("pinball", "pinball loss")) if significantly_worse(key)]
    note = (
        f"significantly worse than the served version {version} on {len(points)} validation hours neither "
        f"trained on ({' and '.join(worse)}, DM p < {CHAMPION_P:g})"
        if worse
        else f"not significantly worse than the served version {version} on {len(points)} validation hours "
        "neither trained on"
    )
    return ChampionCheck(version=version, n=len(points), compared=True, note=note, worse=bool(worse), **found)


def calibrate(core: LSTMCore, data: Prepared, levels: list[float]) -> np.ndarray:
    """Conformal margins [h, L] in standardised units, from the validation split (never the test split)."""
    validation = data.split.validation
    predicted = predict_standardised(core, data, validation, torch.device("cpu"))
    return ranges.conformal_margins(data.targets[validation], predicted, levels)


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
    version = store.next_version(now)
    candles = load_candles(spec, live_only(store, source), store, now=now, api_url=api_url, max_retries=max_retries)
    log.info(
        "candles ready", extra={"pair": pair.name, "summary": candles.report.summary(), "requests": candles.requests}
    )
    data = prepare(candles.frame, spec.model.window, spec.model.horizon, interval_ms(spec.interval))
    result = train(data, spec.model, progress)
    levels = spec.model.quantiles
    margins = calibrate(result.core.cpu(), data, levels)
    forecaster = Forecaster(result.core, data.feature_scaler, data.target_scaler, margins)
    model_bytes = export_onnx(forecaster, data.window)
    parity = check_parity(forecaster, model_bytes, data.raw_windows(data.split.test[-PARITY_WINDOWS:]))
    session = onnx_session(model_bytes, threads)
    ar_coefs = evaluate.fit_ar(training_log_returns(data), min(AR_ORDER, data.window - 1))
    sigma = ranges.ewma_sigma(data.ohlcv[:, 3])
    metrics = Metrics(
        validation=score_split(data, data.split.validation, session, ar_coefs, levels, sigma),
        test=score_split(data, data.split.test, session, ar_coefs, levels, sigma),
    )
    bars = spec.promotion
    decision = promotion_decision(metrics.validation, bars.max_relative_mae, bars.coverage_tolerance)
    champion = compare_with_champion(store, data, session, levels)
    if champion is not None and decision[0]:
        decision = (not champion.worse, f"{decision[1]}; {champion.note}")
    smoke, took = smoke_test(session, data), round(time.perf_counter() - started, 3)
    document = build_metadata(
        pair, version, candles, data, result, metrics, decision, champion, margins, parity, threads, smoke, took
    )
    metadata = document.to_json()
    files = {
        store.model_path(): model_bytes,
        store.config_path(): triton_config(pair.name, data.window, data.horizon, len(levels)).encode(),
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


def range_line(scored: RangeMetrics) -> str:
    """The widest range's coverage, and interval score and pinball loss as ratios to both naive ranges."""
    widest = scored.model.ranges[0]
    clim, ewma = scored.climatology, scored.ewma
    return (
        f"{widest.nominal:.0%} range covers {widest.rate:.1%} [{widest.wilson_low:.1%}, {widest.wilson_high:.1%}]; "
        f"interval score {widest.interval_score / clim.ranges[0].interval_score:.3f} of climatology's, "
        f"{widest.interval_score / ewma.ranges[0].interval_score:.3f} of EWMA's; pinball "
        f"{scored.model.pinball / clim.pinball:.3f} and {scored.model.pinball / ewma.pinball:.3f}"
    )


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
        if split.ranges is not None:
            lines.append(f"  {'':<10} {range_line(split.ranges)}")
    lines.append(f"  stored at {meta.storage_uri}")
    return "\n".join(lines)
