"""The walk-forward backtest replays `makeusrich train`: each fold is the trainer's own model on the candles
before its cutoff, forecasting only what came after, and the pool is exactly its folds together."""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from makeusrich.errors import StoreError
from makeusrich.market import Source, clean_candles, read_sample, sample_path
from makeusrich.onnxrt import onnx_session
from makeusrich.pair import CurrencyPairSpec
from makeusrich.scoring.folds import COLUMNS, DECISION_COLUMNS, interval_ratio_line
from makeusrich.store import BacktestResult, pair_store, read_backtest, write_backtest
from makeusrich.trainer.backtest import cutoffs, run_fold, walk_forward
from makeusrich.trainer.export import run_onnx
from makeusrich.trainer.pipeline import run_training
from tests.fixtures.models import small_pair, train_into
from tests.fixtures.shell import makeusrich

STEP = timedelta(days=5)


def spec() -> CurrencyPairSpec:
    return small_pair(lookbackDays=40).spec


def sample_frame(days: int = 60) -> pd.DataFrame:
    frame, _ = clean_candles(read_sample("BTCUSDT", "1h"), "1h")
    return frame.iloc[-days * 24 :].reset_index(drop=True)


def test_cutoffs_tile_the_end_of_the_history() -> None:
    end = pd.Timestamp("2022-06-15T01:00Z")
    assert cutoffs(end, 3, STEP) == [end - 3 * STEP, end - 2 * STEP, end - STEP]


def test_a_fold_is_the_trainers_model_on_the_candles_before_its_cutoff(tmp_path: Path) -> None:
    """Fold = `makeusrich train` run on a CSV that ends at the cutoff: the same forecasts, to float32 rounding."""
    frame = sample_frame()
    cutoff = pd.Timestamp(frame["open_time"].iloc[-1]) + pd.Timedelta(hours=1) - 2 * STEP
    part, facts = run_fold(spec(), frame, cutoff, STEP, threads=1, progress=None)
    assert len(part.actual) == 5 * 24  # every hour of the step, the last target closing at its end
    # the same candles as a file the trainer reads, ending with the candle that closes at the cutoff
    with gzip.open(sample_path(), "rt") as raw:
        lines = raw.read().splitlines()
    cutoff_ms = int(cutoff.timestamp() * 1000)
    kept = [lines[0]] + [line for line in lines[1:] if int(line.split(",")[0]) + 3_600_000 <= cutoff_ms]
    (tmp_path / "upto.csv").write_text("\n".join(kept) + "\n")
    pair = small_pair(lookbackDays=40)
    outcome = run_training(
        pair, Source.parse(f"file:{tmp_path / 'upto.csv'}"), f"file://{tmp_path / 'store'}", progress=None
    )
    assert outcome.metadata.data.to == cutoff.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert outcome.metadata.data.from_ == facts["trained_from"].strftime("%Y-%m-%dT%H:%M:%SZ")
    store = pair_store(f"file://{tmp_path / 'store'}", pair.namespace, pair.name)
    session = onnx_session(store.read_model(outcome.version))
    start = int(np.searchsorted(frame["open_time"], cutoff - pd.Timedelta(hours=24)))  # window 24, ends at cutoff
    windows = np.stack(
        [frame[["open", "high", "low", "close", "volume"]].to_numpy()[start + i : start + i + 24] for i in range(3)]
    )
    forecast, _ = run_onnx(session, windows.astype(np.float32))
    assert forecast[:, 0] == pytest.approx(part.forecast[:3, 0], rel=1e-6)


def test_candles_after_a_folds_period_never_change_it() -> None:
    frame = sample_frame()
    cutoff = pd.Timestamp(frame["open_time"].iloc[-1]) + pd.Timedelta(hours=1) - 3 * STEP
    first, _ = run_fold(spec(), frame, cutoff, STEP, threads=1, progress=None)
    later = frame.copy()
    after = later["open_time"] >= cutoff + STEP
    later.loc[after, ["open", "high", "low", "close"]] *= 3.0  # a wild future the fold must not see
    again, _ = run_fold(spec(), later, cutoff, STEP, threads=1, progress=None)
    assert np.array_equal(first.forecast, again.forecast) and np.array_equal(first.quantiles, again.quantiles)


def test_the_pool_is_its_folds_and_each_row_says_what_was_measured() -> None:
    result = walk_forward("btc-usdt", spec(), sample_frame(), folds=3, step=STEP)
    assert [f.fold for f in result.folds] == [1, 2, 3]
    assert result.pooled_point.n == sum(f.point.n for f in result.folds) == 3 * 5 * 24
    # MAE pools by points: the pooled MAE is the points-weighted mean of the folds' MAEs
    weighted = sum((f.point.mae or 0) * f.point.n for f in result.folds) / result.pooled_point.n
    assert result.pooled_point.mae == pytest.approx(weighted)
    hits = sum(f.ranges.model.ranges[0].hits for f in result.folds)
    assert result.pooled_ranges.model.ranges[0].hits == hits
    for earlier, later in zip(result.folds, result.folds[1:], strict=False):
        assert earlier.forecast_to <= later.cutoff  # forecast periods never overlap
    assert result.folds[-1].forecast_to == "2022-06-15T01:00:00Z"
    # every ratio of interval scores comes with the interval of its bootstrap, around it
    for scored in [f.ranges for f in result.folds] + [result.pooled_ranges]:
        found = scored.interval_ratios or {}
        assert set(found) == {"climatology", "ewma", "ewma_range", "har"}
        for name, ratio in found.items():
            naive = getattr(scored, name).ranges[0].interval_score
            assert ratio.ratio == pytest.approx(scored.model.ranges[0].interval_score / naive)
            assert ratio.low < ratio.ratio < ratio.high
    pooled = result.pooled_ranges.interval_ratios or {}
    fold = result.folds[0].ranges.interval_ratios or {}
    assert pooled["ewma"].high - pooled["ewma"].low < fold["ewma"].high - fold["ewma"].low  # more hours, narrower
    line = interval_ratio_line(result.pooled_ranges)  # as the pair page says it
    assert f"Climatology {pooled['climatology'].ratio:.3f} [{pooled['climatology'].low:.3f}, " in line
    assert line.startswith("The 90% range's interval score") and "HAR of candle ranges" in line
    assert interval_ratio_line(result.pooled_ranges.model_copy(update={"interval_ratios": None})) == ""  # older


def test_the_command_writes_json_csv_and_a_plot(tmp_path: Path) -> None:
    pair_file = tmp_path / "pair.yaml"
    pair_file.write_text(json.dumps(small_pair(lookbackDays=30).model_dump(by_alias=True, exclude_none=True)))
    out = tmp_path / "out"
    done = makeusrich(
        "backtest", "-f", str(pair_file), "--source", "sample", "--folds", "2", "--step", "3d", "--out", str(out)
    )
    assert done.returncode == 0, done.stderr
    assert "2 folds of 3d from sample" in done.stdout and "| pooled |" in done.stdout
    assert "interval score over each naive range's, with 95% bootstrap intervals" in done.stdout
    assert "| fold | / Climatology | / EWMA volatility (RiskMetrics) |" in done.stdout
    rows = list(csv.DictReader(io.StringIO((out / "folds.csv").read_text())))
    assert [r["fold"] for r in rows] == ["1", "2", "pooled"] and tuple(rows[0]) == COLUMNS
    saved = json.loads((out / "backtest.json").read_text())
    assert saved["pooledPoint"]["n"] == int(rows[-1]["n"]) == 2 * 3 * 24
    assert (out / "skill.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "equity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    traded = list(csv.DictReader(io.StringIO((out / "decision.csv").read_text())))
    assert [r["fold"] for r in traded] == ["1", "2", "pooled"] and tuple(traded[0]) == DECISION_COLUMNS
    assert "Would following it have made money? After fees of 10 bps a trade:" in done.stdout
    assert (
        "| pooled |" in done.stdout.split("Would following")[1]
        and "After fees, 2 folds pooled (144 candles): holding " in done.stdout
    )
    pooled = saved["pooledDecision"]["rules"]
    assert float(traded[-1]["holding"]) == pytest.approx(math.expm1(pooled["buy-and-hold"]["totalLogReturn"]), abs=1e-4)


def test_publish_stores_the_backtest_beside_the_served_version_of_the_same_settings(tmp_path: Path) -> None:
    trained = train_into(tmp_path / "store", small_pair())
    pair_file = tmp_path / "pair.yaml"
    pair_file.write_text(json.dumps(small_pair().model_dump(by_alias=True, exclude_none=True)))
    common = ["backtest", "-f", str(pair_file), "--source", "sample", "--folds", "1", "--step", "2d"]
    done = makeusrich(*common, "--out", str(tmp_path / "out"), "--publish", "--store", trained.url)
    assert done.returncode == 0, done.stderr
    assert f"stored beside version {trained.version}" in done.stdout
    stored = read_backtest(trained.store(), trained.version)
    assert stored is not None and stored.pooled_point.n == 2 * 24 and stored.model == trained.outcome.metadata.spec
    assert stored == BacktestResult.model_validate_json((tmp_path / "out" / "backtest.json").read_text())
    other = small_pair(model={"hiddenSize": 16})  # not the served version's settings: refused before training
    pair_file.write_text(json.dumps(other.model_dump(by_alias=True, exclude_none=True)))
    refused = makeusrich(*common, "--out", str(tmp_path / "out2"), "--publish", "--store", trained.url)
    assert refused.returncode == 1 and "was trained with other settings" in refused.stderr
    assert not (tmp_path / "out2").exists()
    with pytest.raises(StoreError, match="does not exist"):
        write_backtest(trained.store(), "20200101T000000Z", stored)
    key = trained.store().version_prefix(trained.version) + "backtest.json"
    trained.store().objects.put(key, b'{"pair": 1}')
    with pytest.raises(StoreError, match="backtest.json is malformed"):
        read_backtest(trained.store(), trained.version)


@pytest.mark.parametrize(
    ("flag", "said"), [("--step=30x", "whole number of hours, days or weeks"), ("--folds=0", "--folds")]
)
def test_bad_settings_are_one_sentence(tmp_path: Path, flag: str, said: str) -> None:
    pair_file = tmp_path / "pair.yaml"
    pair_file.write_text(json.dumps(small_pair().model_dump(by_alias=True, exclude_none=True)))
    done = makeusrich("backtest", "-f", str(pair_file), "--source", "sample", flag)
    assert done.returncode == 1 and said in done.stderr and "Traceback" not in done.stderr
