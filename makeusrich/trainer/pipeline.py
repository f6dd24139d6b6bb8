"""One training run for one pair: candles -> features -> LSTM -> honest evaluation -> ONNX -> store.

The published model is scored as it will be served: predictions come from the exported ONNX file run by
onnxruntime on raw candle windows, on points that neither training nor early stopping saw.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime

from makeusrich.errors import MakeUsRichError, StoreError
from makeusrich.market import DEFAULT_RETRIES, Source, interval_ms, load_candles
from makeusrich.onnxrt import onnx_session
from makeusrich.pair import CurrencyPair
from makeusrich.store import ModelMetadata, PairStore, RangeMetrics, pair_store, parse_metadata
from makeusrich.trainer import promotion
from makeusrich.trainer.evaluation import calibrate, measure, smoke_test
from makeusrich.trainer.export import check_parity, export_onnx, triton_config
from makeusrich.trainer.features import prepare
from makeusrich.trainer.metadata import build_metadata
from makeusrich.trainer.model import Forecaster
from makeusrich.trainer.train import Progress, configure_threads, log_progress, train

log = logging.getLogger(__name__)

PARITY_WINDOWS = 256


@dataclass
class Outcome:
    version: str
    promoted: bool
    reason: str
    metadata: ModelMetadata


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
    max_retries: int = DEFAULT_RETRIES,
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
    metrics = measure(data, session, levels)
    decision, champion = promotion.decide(store, data, session, metrics, spec.promotion, levels)
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
