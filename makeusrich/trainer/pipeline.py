"""One training run for one pair: candles -> features -> (the baseline, when nothing is served) -> LSTM -> honest
evaluation -> ONNX -> gates -> store.

A pair that serves nothing gets the baseline first (makeusrich.trainer.baseline, well under a second), so it has a
forecast and a range before any LSTM trains, and keeps one whatever happens to the LSTM after. Every version is
scored as it will be served: the exported ONNX file run by onnxruntime on raw candle windows, and judged on hours
that did not tune it (makeusrich.trainer.promotion).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime

import pandas as pd

from makeusrich.errors import MakeUsRichError, StoreError
from makeusrich.market import DEFAULT_RETRIES, CandleSet, Source, close_moments, interval_ms, load_candles
from makeusrich.onnxrt import onnx_session
from makeusrich.pair import CurrencyPair
from makeusrich.scoring import decision
from makeusrich.store import MODEL_KINDS, ModelMetadata, PairStore, RangeMetrics, Why, pair_store, parse_metadata
from makeusrich.trainer import promotion
from makeusrich.trainer.baseline import baseline_onnx, baseline_outputs, fit_baseline
from makeusrich.trainer.evaluation import calibrate, measure, smoke_test
from makeusrich.trainer.export import check_parity, export_onnx, parity, run_onnx, triton_config
from makeusrich.trainer.features import Prepared, prepare
from makeusrich.trainer.metadata import (
    baseline_info,
    baseline_training,
    build_metadata,
    lstm_calibration,
    lstm_training,
    recalibration_training,
    role_spans,
    with_weight_roles,
)
from makeusrich.trainer.model import Forecaster
from makeusrich.trainer.recalibrate import (
    RecalibrationError,
    recalibration_split,
    refit_margins,
    with_margins,
)
from makeusrich.trainer.train import Progress, configure_threads, log_progress, train
from makeusrich.trainer.warm import choose_start, read_forecaster, tuned_through, weights_file

log = logging.getLogger(__name__)

PARITY_WINDOWS = 256


@dataclass
class Outcome:
    version: str
    promoted: bool
    reason: str
    metadata: ModelMetadata
    first: Outcome | None = None  # the baseline this run published first, when the pair served nothing


def served_now(store: PairStore) -> ModelMetadata | None:
    """The served version's metadata, read once at a run's start; None when nothing is served or what latest.json
    names is unusable (said: serving refuses it too, and the run replaces it with a baseline)."""
    try:
        latest = store.latest()
        return store.model_metadata(latest.version) if latest else None
    except StoreError as exc:
        log.warning(f"the served version is unusable ({exc}); a baseline replaces it", extra={"pair": store.pair})
        return None


def live_only(served: ModelMetadata | None, source: Source) -> Source:
    """`auto` is Binance alone once the served model was trained on Binance's candles: a network blip must not
    replace it with a model of the 2022 sample (the run fails offline instead, and the served model stays)."""
    if source.kind == "auto" and served is not None and served.source.startswith("binance"):
        return Source("binance")
    return source


def still_judged(store: PairStore, document: ModelMetadata) -> ModelMetadata:
    """The run's promotion, withdrawn when the served version changed while it ran (a rollback, a person, another
    run): the champion gate judged the version that was served then, and says nothing about the one served now."""
    decided = document.promotion
    if not decided.promoted:
        return document
    judged = decided.champion.version if decided.champion else None
    try:
        latest = store.latest()
    except StoreError:  # a damaged latest.json: what the run judged against is gone either way
        latest = None
    now = latest.version if latest else None
    if now == judged:
        return document
    reason = (
        f"not promoted: the served version changed from {judged or 'nothing'} to {now or 'nothing'} while this run "
        f"judged it; the next run judges against {now or 'nothing'}"
    )
    return document.model_copy(update={"promotion": decided.model_copy(update={"promoted": False, "reason": reason})})


def publish(
    store: PairStore,
    document: ModelMetadata,
    model: bytes,
    extra: dict[str, bytes] | None = None,
    by: str = "makeusrich train",
) -> ModelMetadata:
    """Upload a version (its model, config.pbtxt, `extra` files such as an LSTM's weights, and metadata.json)
    and promote it when its run decided so and the served version is still the one it was judged against; then
    remove what crashed runs left. Nothing is published when a metric is not finite."""
    document = still_judged(store, document)
    metadata = document.to_json()
    files = {
        store.model_path(): model,
        store.config_path(): triton_config(
            document.pair, document.window, document.horizon, len(document.quantiles or ())
        ).encode(),
        **(extra or {}),
    }
    try:
        json.dumps(metadata, allow_nan=False)
    except ValueError as exc:
        raise MakeUsRichError(f"training produced non-finite metrics ({exc}); nothing was published") from None
    decided = document.promotion
    why = Why(by, decided.reason, {"gates": [gate.to_json() for gate in decided.gates]})
    stored = store.publish(document.version, files, metadata, promote=decided.promoted, why=why)
    try:
        removed = store.clean_abandoned(document.version)
    except StoreError as exc:  # the new version is safe; what a crashed run left can wait for the next run
        log.warning("could not remove what crashed runs left: %s", exc)
    else:
        if removed:
            log.info("removed what crashed runs left", extra={"pair": document.pair, "removed": removed})
    return parse_metadata(stored)


def outcome_of(meta: ModelMetadata, first: Outcome | None = None) -> Outcome:
    return Outcome(meta.version, meta.promotion.promoted, meta.promotion.reason, meta, first)


def run_baseline(
    pair: CurrencyPair, store: PairStore, candles: CandleSet, data: Prepared, threads: int, now: datetime | None
) -> Outcome:
    """Fit, export, measure and publish the baseline, promoted: the pair serves a forecast and a range from here."""
    started = time.perf_counter()
    levels = pair.spec.model.quantiles
    fit = fit_baseline(data, levels)
    model = baseline_onnx(fit)
    session = onnx_session(model, threads)
    windows = data.raw_windows(data.split.test[-PARITY_WINDOWS:])
    worst = parity(run_onnx(session, windows), baseline_outputs(fit, windows), "its numpy arithmetic")
    metrics = measure(data, session, pair.spec)
    document = build_metadata(
        pair,
        store.next_version(now),
        "baseline",
        candles,
        data,
        metrics,
        promotion.first_promotion(metrics, pair.spec.promotion, "baseline"),
        baseline_training(time.perf_counter() - started, worst, threads),
        smoke_test(session, data),
        baseline=baseline_info(fit),
    )
    meta = publish(store, document, model)
    log.info(
        "baseline served",
        extra={
            "pair": pair.name,
            "version": meta.version,
            "estimator": fit.estimator,
            "seconds": meta.training.seconds,
        },
    )
    return outcome_of(meta)


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
    """One run: the baseline first when the pair serves nothing, then the LSTM, trained, evaluated, exported and
    published, and promoted only when every gate passes."""
    started = time.perf_counter()
    threads = configure_threads()
    store = pair_store(store_url, pair.namespace, pair.name)
    spec = pair.spec
    served = served_now(store)
    candles = load_candles(spec, live_only(served, source), store, now=now, api_url=api_url, max_retries=max_retries)
    log.info(
        "candles ready", extra={"pair": pair.name, "summary": candles.report.summary(), "requests": candles.requests}
    )
    data = prepare(candles.frame, spec.model.window, spec.model.horizon, interval_ms(spec.interval))
    first = run_baseline(pair, store, candles, data, threads, now) if served is None else None
    validation = role_spans(data, close_moments(data.open_time, spec.interval))["validation"]
    start = choose_start(spec, store, served, validation)
    log.info("training starts", extra={"pair": pair.name, "start": start.note, "warm_from": start.version})
    result = train(data, spec.model, progress, start.state)
    levels = spec.model.quantiles
    margins = calibrate(result.core.cpu(), data, levels)
    forecaster = Forecaster(result.core, data.feature_scaler, data.target_scaler, data.volatility, margins)
    model = export_onnx(forecaster, data.window)
    worst = check_parity(forecaster, model, data.raw_windows(data.split.test[-PARITY_WINDOWS:]))
    session = onnx_session(model, threads)
    metrics = measure(data, session, spec)
    decided = promotion.decide(store, data, session, metrics, spec.promotion, levels)
    training = lstm_training(result, worst, threads, round(time.perf_counter() - started, 3), start)
    document = build_metadata(
        pair,
        store.next_version(now),
        "lstm",
        candles,
        data,
        metrics,
        decided,
        training,
        smoke_test(session, data),
        calibration=lstm_calibration(margins, data, levels),
    )
    weights = {store.weights_path(): weights_file(forecaster, spec)}
    return outcome_of(publish(store, document, model, weights), first)


def run_recalibration(
    pair: CurrencyPair,
    source: Source,
    store_url: str,
    *,
    api_url: str | None = None,
    max_retries: int = DEFAULT_RETRIES,
    now: datetime | None = None,
) -> Outcome:
    """New margins for the served LSTM on the newest held-out hours (makeusrich.trainer.recalibrate), published
    as a new version and promoted only when the coverage and champion rules pass; nothing is trained."""
    started = time.perf_counter()
    threads = configure_threads()
    store = pair_store(store_url, pair.namespace, pair.name)
    spec = pair.spec
    served = served_now(store)
    if served is None or served.kind != "lstm":
        what = "nothing" if served is None else f"the {MODEL_KINDS[served.kind]} {served.version}"
        raise RecalibrationError(
            f"{pair.name} serves {what}: only a served LSTM's margins can be recalibrated; run makeusrich train "
            "until an LSTM passes the gates"
        )
    tuned = tuned_through(served)
    try:
        if tuned is None:
            raise ValueError("its metadata records no data roles")
        forecaster = read_forecaster(store.read_file(served.version, store.weights_path()), spec)
    except (StoreError, ValueError) as exc:
        raise RecalibrationError(f"the served version {served.version} cannot be recalibrated: {exc}") from None
    candles = load_candles(spec, live_only(served, source), store, now=now, api_url=api_url, max_retries=max_retries)
    data = prepare(candles.frame, spec.model.window, spec.model.horizon, interval_ms(spec.interval))
    data = replace(data, split=recalibration_split(data, pd.Timestamp(tuned), spec.interval))
    levels = spec.model.quantiles
    margins, typical = refit_margins(forecaster, data, data.split.calibration, levels)
    recalibrated = with_margins(forecaster, margins)
    model = export_onnx(recalibrated, data.window)
    worst = check_parity(recalibrated, model, data.raw_windows(data.split.test[-PARITY_WINDOWS:]))
    session = onnx_session(model, threads)
    metrics = measure(data, session, spec)
    decided = promotion.decide(store, data, session, metrics, spec.promotion, levels, recalibrated=True)
    points = len(data.split.calibration)
    document = build_metadata(
        pair,
        store.next_version(now),
        "lstm",
        candles,
        data,
        metrics,
        decided,
        recalibration_training(time.perf_counter() - started, worst, threads, served.version, points),
        smoke_test(session, data),
        calibration=lstm_calibration(margins, data, levels, typical),
    )
    document = with_weight_roles(document, served)
    weights = {store.weights_path(): weights_file(recalibrated, spec)}
    return outcome_of(publish(store, document, model, weights, by="makeusrich recalibrate"))


def recalibrate_or_train(
    pair: CurrencyPair,
    source: Source,
    store_url: str,
    *,
    api_url: str | None = None,
    max_retries: int = DEFAULT_RETRIES,
    now: datetime | None = None,
    progress: Progress | None = log_progress,
) -> Outcome:
    """A recalibration first (new margins for the served LSTM, minutes cheaper than training); a training run when
    it is refused or not promoted: what a pair whose ranges turned too narrow on live hours runs."""
    try:
        outcome = run_recalibration(pair, source, store_url, api_url=api_url, max_retries=max_retries, now=now)
    except RecalibrationError as exc:
        log.info("recalibration refused; training instead", extra={"pair": pair.name, "why": str(exc)})
    else:
        if outcome.promoted:
            return outcome
        log.info("recalibration not promoted; training instead", extra={"pair": pair.name, "why": outcome.reason})
    return run_training(pair, source, store_url, api_url=api_url, max_retries=max_retries, now=now, progress=progress)


def range_line(scored: RangeMetrics) -> str:
    """The widest range's coverage, and interval score and pinball loss as ratios to the naive ranges (HAR's
    when measured)."""
    widest = scored.model.ranges[0]
    clim, ewma, har = scored.climatology, scored.ewma, scored.har
    versus_har = "" if har is None else f", {widest.interval_score / har.ranges[0].interval_score:.3f} of HAR's"
    return (
        f"{widest.nominal:.0%} range covers {widest.rate:.1%} [{widest.wilson_low:.1%}, {widest.wilson_high:.1%}]; "
        f"interval score {widest.interval_score / clim.ranges[0].interval_score:.3f} of climatology's, "
        f"{widest.interval_score / ewma.ranges[0].interval_score:.3f} of EWMA's{versus_har}; pinball "
        f"{scored.model.pinball / clim.pinball:.3f} and {scored.model.pinball / ewma.pinball:.3f}"
    )


def summary(outcome: Outcome) -> str:
    """A few lines a person reads after a run."""
    meta = outcome.metadata
    lines = [] if outcome.first is None else [*summary(outcome.first).splitlines(), ""]
    lines += [
        f"{meta.namespace}/{meta.pair} version {outcome.version}, {MODEL_KINDS[meta.kind]}: "
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
        if split.decision is not None:
            lines.append(f"  {'':<10} {decision.headline(split.decision, 'test split')}")
    if meta.training.start is not None:
        trained = meta.training
        kept = ": the starting weights kept" if trained.warm_from and not trained.best_epoch else ""
        lines.append(
            f"  trained {trained.epochs} epoch(s) in {trained.seconds:.1f} s {trained.start} "
            f"(best epoch {trained.best_epoch}{kept})"
        )
    lines.append(f"  stored at {meta.storage_uri}")
    return "\n".join(lines)
