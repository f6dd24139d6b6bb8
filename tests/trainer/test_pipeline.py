"""End to end: `makeusrich train` on the real bundled candles into a store, short runs."""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
import torch

from makeusrich.errors import CandleError, MakeUsRichError, OfflineError
from makeusrich.market import Source, clean_candles, read_sample, sample_path
from makeusrich.pair import CurrencyPair
from makeusrich.store import ModelMetadata, pair_store
from makeusrich.trainer.export import onnx_session, run_onnx
from makeusrich.trainer.features import prepare
from makeusrich.trainer.pipeline import live_only, publish, run_training, served_now, summary
from makeusrich.trainer.train import train
from tests.fixtures.fake_binance import FakeBinance
from tests.fixtures.metadata import metadata_document
from tests.fixtures.models import small_pair

HOUR = 3_600_000


def short_pair(name: str = "btc-usdt", **spec: object) -> CurrencyPair:
    """The shared small pair (tests/fixtures/models.py) in a namespace of its own, promoted only when it beats
    persistence (the default bar) unless a test says otherwise."""
    return small_pair(name, namespace="crypto", **{"promotion": {"maxRelativeMAE": 1.0}, **spec})


def test_train_publishes_complete_versions_and_the_promoted_one_is_served(tmp_path: Path) -> None:
    """A first run publishes the baseline, promoted, then the LSTM, which the gates judge (this tiny one, two
    epochs on 60 days, loses to the baseline on the hours neither used, and says so)."""
    url = f"file://{tmp_path}/store"
    lenient = {"maxRelativeMAE": 10, "coverageTolerance": 0.5}
    outcome = run_training(short_pair(promotion=lenient), Source("sample"), url, progress=None)
    store = pair_store(url, "crypto", "btc-usdt")
    assert outcome.first is not None and outcome.first.promoted and store.latest() is not None
    assert store.latest().version == (outcome.version if outcome.promoted else outcome.first.version)  # type: ignore[union-attr]
    assert store.versions() == [outcome.first.version, outcome.version]
    first_change = store.latest().changes[0]  # type: ignore[union-attr]
    assert (first_change.version, first_change.by, first_change.action) == (
        outcome.first.version,
        "makeusrich train",
        "promoted",
    )
    assert first_change.reason == outcome.first.reason and first_change.evidence["gates"][0]["name"] == "first"
    base = tmp_path / "store" / "crypto" / "btc-usdt" / "versions" / outcome.version
    assert sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file()) == [
        "btc-usdt/1/model.onnx",
        "btc-usdt/config.pbtxt",
        "metadata.json",
        "weights.pt",
    ]
    meta = json.loads((base / "metadata.json").read_text())
    for key in (
        "pair",
        "interval",
        "data",
        "window",
        "horizon",
        "inputs",
        "outputs",
        "metrics",
        "promotion",
        "files",
        "software",
        "training",
        "createdAt",
        "storageUri",
    ):
        assert key in meta, key
    # The span runs from the first candle's open to the last one's close (the bundled data's last opens at 00:00).
    assert meta["data"]["rows"] == 60 * 24 and meta["data"]["to"] == "2022-06-15T01:00:00Z"
    assert meta["data"]["from"] == "2022-04-16T01:00:00Z"
    assert meta["inputs"][0] == {
        **meta["inputs"][0],
        "name": "candles",
        "datatype": "FP32",
        "shape": [-1, 24, 5],
    }
    assert meta["outputs"][0]["shape"] == [-1, 1]
    for split in ("validation", "test"):
        metrics = meta["metrics"][split]
        assert set(metrics["rules"]) == {"persistence", "alwaysUp", "againstLastMove", "ar"}
        assert metrics["rules"]["persistence"]["relMae"] == 1.0
        model = metrics["model"]
        assert 0.5 < model["relMae"] < 1.5 and 0 <= model["dmPvalue"] <= 1
        assert (
            model["directional"]["wilsonLow"] <= model["directional"]["accuracy"] <= model["directional"]["wilsonHigh"]
        )
    gates = {gate["name"]: gate for gate in meta["promotion"]["gates"]}
    assert gates["point"]["passed"] is True and "within the bar of 10" in gates["point"]["note"]
    assert meta["promotion"]["promoted"] is all(gate["passed"] is not False for gate in gates.values())
    assert meta["software"]["torch"] == torch.__version__
    model_bytes = (base / "btc-usdt" / "1" / "model.onnx").read_bytes()
    onnx.checker.check_model(onnx.load_from_string(model_bytes))
    served = store.latest()
    assert served is not None and (meta["files"]["btc-usdt/1/model.onnx"]["sha256"] == served.model_sha256) is (
        outcome.promoted
    )
    assert meta["training"]["onnxParityMaxRelative"] <= 1e-4
    assert "promoted" in summary(outcome) and outcome.version in summary(outcome)


def test_served_file_reproduces_the_recorded_test_metrics(tmp_path: Path) -> None:
    """The recorded test MAE is what onnxruntime gives on the test windows from raw candles: the metrics
    describe the file that is served, not some other in-memory model."""
    url = f"file://{tmp_path}"
    pair = short_pair()
    outcome = run_training(pair, Source("sample"), url, progress=None)
    store = pair_store(url, "crypto", "btc-usdt")
    session = onnx_session(store.read_model(outcome.version))
    frame, _ = clean_candles(read_sample("BTCUSDT", "1h"), "1h")
    data = prepare(frame.iloc[-60 * 24 :].reset_index(drop=True), 24, 1, HOUR)
    forecast, quantiles = run_onnx(session, data.raw_windows(data.split.test))
    actual, last = data.actual_prices(data.split.test)[:, 0], data.last_close(data.split.test)
    mae = float(np.mean(np.abs(forecast[:, 0] - actual)))
    test = outcome.metadata.metrics.test
    assert mae == pytest.approx(test.model.mae, rel=1e-9)
    persistence = float(np.mean(np.abs(last - actual)))
    assert persistence == pytest.approx(test.rules.persistence.mae, rel=1e-9)
    # the ranges too: the recorded coverage of the 90% range counts the served file's 0.05 and 0.95 quantiles
    assert test.ranges is not None and outcome.metadata.quantiles == [0.05, 0.25, 0.5, 0.75, 0.95]
    assert np.array_equal(quantiles[:, 0, 2], forecast[:, 0])  # the median is the point forecast
    assert np.all(np.diff(quantiles, axis=2) >= 0)  # never crossing
    inside = (actual >= quantiles[:, 0, 0]) & (actual <= quantiles[:, 0, 4])
    widest = test.ranges.model.ranges[0]
    assert (widest.nominal, widest.hits, widest.n) == (0.9, int(inside.sum()), len(actual))


def test_not_promoted_when_the_test_hours_miss_the_bar(tmp_path: Path) -> None:
    url = f"file://{tmp_path}"
    outcome = run_training(short_pair(promotion={"maxRelativeMAE": 0.5}), Source("sample"), url, progress=None)
    store = pair_store(url, "crypto", "btc-usdt")
    baseline = outcome.first
    assert not outcome.promoted and baseline is not None and store.latest().version == baseline.version  # type: ignore[union-attr]
    assert store.versions() == [baseline.version, outcome.version]  # the refused one kept for inspection
    assert "above the bar of 0.5" in outcome.metadata.promotion.reason
    assert "not promoted" in summary(outcome)


def test_test_targets_do_not_influence_training() -> None:
    """Leak guard: scrambling every candle after validation leaves the trained weights bit-identical."""
    frame, _ = clean_candles(read_sample("BTCUSDT", "1h"), "1h")
    frame = frame.iloc[-1500:].reset_index(drop=True)
    spec = short_pair().spec.model
    data = prepare(frame, 24, 1, HOUR)
    first_test_candle = int(data.split.test.min()) - 24 + 1
    scrambled = frame.copy()
    rng = np.random.default_rng(1)
    tail = scrambled.index[first_test_candle:]
    scrambled.loc[tail, ["open", "high", "low", "close", "volume"]] = scrambled.loc[
        tail, ["open", "high", "low", "close", "volume"]
    ].to_numpy()[rng.permutation(len(tail))]
    again = prepare(scrambled, 24, 1, HOUR)
    assert not np.array_equal(again.targets[data.split.test], data.targets[data.split.test])
    one = train(data, spec, progress=None)
    two = train(again, spec, progress=None)
    for (name, a), (_, b) in zip(one.core.state_dict().items(), two.core.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert [e.validation_loss for e in one.epochs] == [e.validation_loss for e in two.epochs]


def test_too_little_data_publishes_nothing(tmp_path: Path) -> None:
    url = f"file://{tmp_path}"
    with pytest.raises(CandleError, match="too little data"):
        run_training(short_pair(lookbackDays=3), Source("sample"), url, progress=None)
    assert pair_store(url, "crypto", "btc-usdt").versions() == []


def test_nan_candles_publish_nothing(tmp_path: Path) -> None:
    frame = pd.read_csv(sample_path()).tail(2000)
    frame.iloc[1500, frame.columns.get_loc("close")] = np.nan
    path = tmp_path / "nan.csv"
    frame.to_csv(path, index=False)
    url = f"file://{tmp_path}/store"
    with pytest.raises(CandleError, match="NaN prices"):
        run_training(short_pair(), Source.parse(f"file:{path}"), url, progress=None)
    assert pair_store(url, "crypto", "btc-usdt").latest() is None


def test_store_refusing_writes_keeps_the_promoted_model(tmp_path: Path) -> None:
    """A store path that is a file cannot take writes (works as root too): the run fails, nothing changes."""
    url = f"file://{tmp_path}"
    first = run_training(short_pair(promotion={"maxRelativeMAE": 10}), Source("sample"), url, progress=None)
    store = pair_store(url, "crypto", "btc-usdt")
    before = (tmp_path / "crypto" / "btc-usdt" / "latest.json").read_bytes()
    (tmp_path / "crypto" / "btc-usdt" / "versions").rename(tmp_path / "moved")
    (tmp_path / "crypto" / "btc-usdt" / "versions").write_text("not a folder")
    with pytest.raises(MakeUsRichError):
        run_training(short_pair(promotion={"maxRelativeMAE": 10}), Source("sample"), url, progress=None)
    assert (tmp_path / "crypto" / "btc-usdt" / "latest.json").read_bytes() == before
    (tmp_path / "crypto" / "btc-usdt" / "versions").unlink()
    (tmp_path / "moved").rename(tmp_path / "crypto" / "btc-usdt" / "versions")
    assert store.read_model(first.version)


def test_train_from_binance_into_s3(fake_binance: FakeBinance, s3_env: object) -> None:
    """The CronJob's path: candles from the (loopback) Binance API, the model into a real S3 server."""
    now = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)
    fake_binance.add_synthetic("ETHUSDT", "1h", 1600, now_ms=int(now.timestamp() * 1000))
    url = f"s3://models-{uuid.uuid4().hex[:12]}"
    pair = short_pair("eth-usdt", currency="eth", promotion={"maxRelativeMAE": 10, "coverageTolerance": 0.5})
    outcome = run_training(pair, Source("binance"), url, api_url=fake_binance.url, now=now, progress=None)
    store = pair_store(url, "crypto", "eth-usdt")
    latest = store.latest()
    assert outcome.first is not None and outcome.first.version == "20261120T123000Z"  # the baseline, first
    assert latest is not None and latest.version == outcome.version == "20261120T123001Z", outcome.reason
    assert latest.storage_uri == f"{url}/crypto/eth-usdt/versions/{outcome.version}/"
    assert onnx.load_from_string(store.read_model(outcome.version)).graph.input[0].name == "candles"
    config = store.read_file(outcome.version, "eth-usdt/config.pbtxt").decode()
    assert 'name: "eth-usdt"' in config and 'platform: "onnxruntime_onnx"' in config
    assert outcome.metadata.source == "binance" and outcome.metadata.data.rows == 60 * 24
    assert store.read_candles("1h") is not None  # the cache for the next, incremental run


def test_auto_never_replaces_a_model_trained_on_binance_with_one_of_the_sample(tmp_path: Path) -> None:
    """Offline with a Binance-trained model served: the run fails at once, and the served model stays."""
    store_url = str(tmp_path / "store")
    store = pair_store(store_url, "default", "btc-usdt")
    assert live_only(served_now(store), Source("auto")) == Source("auto")  # nothing served yet: the sample may stand in
    version = "20261201T000000Z"
    for source, expected in (("sample", Source("auto")), ("binance", Source("binance"))):
        path = tmp_path / source
        served = pair_store(str(path), "default", "btc-usdt")
        served.publish(version, {served.model_path(): b"onnx"}, metadata_document(version, source=source), True)
        assert live_only(served_now(served), Source("auto")) == expected
        assert live_only(served_now(served), Source("sample")) == Source("sample")  # what the user asked for, as asked
    with pytest.raises(OfflineError, match="cannot reach Binance at 127.0.0.1:9"):
        run_training(small_pair(), Source("auto"), str(tmp_path / "binance"), api_url="http://127.0.0.1:9/api")
    latest = pair_store(str(tmp_path / "binance"), "default", "btc-usdt").latest()
    assert latest is not None and latest.version == version


def test_a_promotion_judged_against_a_version_no_longer_served_is_withdrawn(tmp_path: Path) -> None:
    """A rollback (or a person) changed the served version while the run trained: its champion gate judged the
    version served then, so the new version is published but not promoted, and the run says why."""
    store = pair_store(str(tmp_path / "store"), "default", "btc-usdt")
    for old in ("20261201T000000Z", "20261202T000000Z"):
        store.publish(old, {store.model_path(): b"onnx"}, metadata_document(old), True)
    champion = {"version": "20261202T000000Z", "n": 200, "compared": True, "note": "not worse"}
    promotion = {**metadata_document()["promotion"], "champion": champion}
    document = ModelMetadata.model_validate(metadata_document("20261203T000000Z", promotion=promotion))
    store.promote("20261201T000000Z")  # served again while the run judged 20261202T000000Z
    meta = publish(store, document, b"onnx")
    latest = store.latest()
    assert latest is not None and latest.version == "20261201T000000Z" and len(latest.changes) == 3
    assert not meta.promotion.promoted
    assert meta.promotion.reason == (
        "not promoted: the served version changed from 20261202T000000Z to 20261201T000000Z while this run judged "
        "it; the next run judges against 20261201T000000Z"
    )
    judged = ModelMetadata.model_validate(
        metadata_document(
            "20261204T000000Z", promotion={**promotion, "champion": {**champion, "version": "20261201T000000Z"}}
        )
    )
    assert publish(store, judged, b"onnx").promotion.promoted
    assert store.latest().version == "20261204T000000Z"  # type: ignore[union-attr]


def test_the_decision_rules_on_the_test_split_can_be_recomputed_by_hand(tmp_path: Path) -> None:
    """Issue 28's promise: the rules' returns recorded in metadata.json are what anyone gets from the stored ONNX
    file, the candles and the fee, with nothing of the project's but its inputs: positions by the formulas of the
    README, one candle each, the fee on every fraction traded. A threshold of 0 makes this tiny model trade."""
    url = f"file://{tmp_path}"
    outcome = run_training(short_pair(decision={"threshold": 0.0}), Source("sample"), url, progress=None)
    meta = outcome.metadata
    recorded = meta.metrics.test.decision
    assert recorded is not None and meta.metrics.validation.decision is None  # the test split's only
    frame, _ = clean_candles(read_sample("BTCUSDT", "1h"), "1h")
    frame = frame.iloc[-60 * 24 :].reset_index(drop=True)
    closes = frame["close"].to_numpy(dtype=np.float32).astype(np.float64)  # as clients send them (contract 2)
    close_times = list(frame["open_time"] + pd.Timedelta(hours=1))

    # RiskMetrics volatility at each candle from the returns before it, by its recursion.
    returns = np.diff(np.log(closes))
    variance, ewma = returns[0] ** 2, [math.nan]
    for r in returns:
        ewma.append(math.sqrt(0.94 * variance + 0.06 * r**2))
        variance = 0.94 * variance + 0.06 * r**2

    # From the training origins metadata.json names, and nothing later: the drift, the risk target (the returns'
    # 90% range over 2 z, z the normal's 95% quantile) and EWMA's range in units of its volatility.
    z = 1.6448536269514715
    train = meta.data.roles["train"]
    first_train = close_times.index(pd.Timestamp(train.from_))
    at = np.arange(first_train, first_train + train.origins)
    assert close_times[at[-1] + 1] == pd.Timestamp(train.to)
    train_returns = np.log(closes[at + 1] / closes[at])
    low_q, high_q = np.quantile(train_returns, [0.05, 0.95])
    drift, sigma_target = float(np.mean(train_returns)), (high_q - low_q) / (2 * z)
    bounds = np.quantile(train_returns / np.array(ewma)[at], [0.05, 0.95])
    assert recorded.train_drift == pytest.approx(drift) and recorded.sigma_target == pytest.approx(sigma_target)

    # The stored model on every test window: forecasts made at the closes from data.testFrom on.
    origins = np.arange(close_times.index(pd.Timestamp(meta.data.test_from)), len(frame) - 1)
    assert len(origins) == meta.metrics.test.n
    session = onnx_session(pair_store(url, "crypto", "btc-usdt").read_model(outcome.version))
    windows = np.stack([frame[["open", "high", "low", "close", "volume"]].to_numpy()[t - 23 : t + 1] for t in origins])
    forecast, quantiles = run_onnx(session, windows.astype(np.float32))

    fee = 0.001  # 10 bps

    def after_fees(positions: list[float]) -> float:
        total, held = 0.0, 0.0
        for t, p in zip(origins, positions, strict=True):
            total += math.log(1 + p * (closes[t + 1] / closes[t] - 1) - fee * abs(p - held))
            held = p
        return total

    def risk_target(low: float, high: float) -> float:
        return min(1.0, sigma_target / (math.log(high / low) / (2 * z)))

    signal = [float(math.log(f / closes[t]) > 0.0) for f, t in zip(forecast[:, 0], origins, strict=True)]
    risk = [risk_target(float(q[0, 0]), float(q[0, -1])) for q in quantiles]
    risk_ewma = [risk_target(math.exp(ewma[t] * bounds[0]), math.exp(ewma[t] * bounds[1])) for t in origins]
    by_hand = {
        "signal": after_fees(signal),
        "signal-drift": after_fees([float(drift > 0.0)] * len(origins)),
        "risk-target": after_fees(risk),
        "risk-target-ewma": after_fees(risk_ewma),
        "buy-and-hold": after_fees([1.0] * len(origins)),
        "cash": 0.0,
    }
    for rule, total in by_hand.items():
        assert recorded.rules[rule].total_log_return == pytest.approx(total, rel=1e-6, abs=1e-12), rule
    assert recorded.rules["signal"].invested == pytest.approx(np.mean(signal)) and 0 < np.mean(signal) < 1  # traded
    assert recorded.rules["risk-target"].turnover == pytest.approx(sum(abs(np.diff([0.0, *risk]))), rel=1e-6)
    assert 0 < np.mean(risk) < 1 and 0 < np.mean(risk_ewma) < 1  # both sized by their ranges, not at the cap
    assert (recorded.fee_bps, recorded.threshold, recorded.level) == (10.0, 0.0, 0.9)
    for against in (recorded.against_holding, recorded.against_twin):
        for difference in against.values():
            assert difference.mean_low <= difference.mean <= difference.mean_high and 0 < difference.mean_p <= 1
            assert difference.resamples == 2000 and difference.mean_block == 24.0
