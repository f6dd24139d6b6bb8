"""Recalibration (issue 31, part 3): the served LSTM's margins refitted on the newest held-out hours and published
through the gates, with nothing trained; refused, with nothing published, when it cannot be honest."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from makeusrich.market import Source, clean_candles, close_moments, read_sample, sample_path
from makeusrich.onnxrt import onnx_session
from makeusrich.pair import CurrencyPair
from makeusrich.store import PairStore, pair_store
from makeusrich.trainer.export import run_onnx
from makeusrich.trainer.features import prepare
from makeusrich.trainer.pipeline import recalibrate_or_train, run_recalibration, run_training
from makeusrich.trainer.recalibrate import TEST, RecalibrationError, recalibration_split
from makeusrich.trainer.warm import read_forecaster
from tests.fixtures.models import small_pair

LATER = 1500  # candles the recalibration sees after the training run's last one
DAYS = 300  # the pair's lookback: its validation hours end before the six weeks a recalibration fits and judges


def sample_candles() -> pd.DataFrame:
    """The bundled candles, cleaned as every run cleans them (their last ones are those of full.csv)."""
    frame, _ = clean_candles(read_sample("BTCUSDT", "1h"), "1h")
    return frame


@dataclass(frozen=True)
class Served:
    root: Path
    pair: CurrencyPair
    early: Path  # the candles the served LSTM was trained on
    full: Path  # the same and LATER more
    version: str

    @property
    def url(self) -> str:
        return f"file://{self.root}/store"

    def store(self) -> PairStore:
        return pair_store(self.url, self.pair.namespace, self.pair.name)


@pytest.fixture(scope="module")
def served_template(tmp_path_factory: pytest.TempPathFactory) -> Served:
    root = tmp_path_factory.mktemp("recalibrate")
    frame = pd.read_csv(sample_path()).tail(DAYS * 24 + LATER)
    early, full = root / "early.csv", root / "full.csv"
    frame.iloc[:-LATER].to_csv(early, index=False)
    frame.to_csv(full, index=False)
    pair = small_pair(lookbackDays=DAYS)
    outcome = run_training(pair, Source.parse(f"file:{early}"), f"file://{root}/store", progress=None)
    served = Served(root, pair, early, full, outcome.version)
    if not outcome.promoted:  # a tiny LSTM may lose to the baseline: serve it by hand, as an operator may
        served.store().promote(outcome.version)
    return served


@pytest.fixture
def served(served_template: Served, tmp_path: Path) -> Served:
    """A private copy of the module's store: a test may publish into it freely."""
    shutil.copytree(served_template.root, tmp_path / "copy")
    root = tmp_path / "copy"
    return Served(root, served_template.pair, root / "early.csv", root / "full.csv", served_template.version)


def test_a_recalibration_changes_only_the_margins_and_is_judged_on_the_newest_hours(served: Served) -> None:
    store = served.store()
    before = store.model_metadata(served.version)
    outcome = run_recalibration(served.pair, Source.parse(f"file:{served.full}"), served.url)
    meta = outcome.metadata
    assert store.versions()[-1] == outcome.version != served.version
    assert meta.kind == "lstm" and meta.training.epochs == 0 and meta.training.warm_from == served.version
    assert (meta.training.start or "").startswith(f"recalibrated: the weights of {served.version}")
    gates = {gate.name: gate for gate in meta.promotion.gates}
    assert gates["point"].passed is None and "served version's" in gates["point"].note
    assert gates["coverage"].passed is not None and gates["champion"].passed is not None
    # The weights' own tuning hours are recorded; the new margins' hours closed after them, the judged ones after those.
    roles, old = meta.data.roles, before.data.roles
    assert roles["train"] == old["train"] and roles["validation"] == old["validation"]
    assert old["validation"].to < roles["calibration"].from_ and roles["calibration"].to <= roles["test"].from_
    assert roles["test"].origins == TEST and meta.data.tuned_until == roles["calibration"].to
    # Same median, other ranges: the served file and the new one on the newest windows.
    data = prepare(sample_candles().iloc[-1000:].reset_index(drop=True), 24, 1, 3_600_000)
    windows = data.raw_windows(data.split.test)
    old_forecast, old_quantiles = run_onnx(onnx_session(store.read_model(served.version)), windows)
    new_forecast, new_quantiles = run_onnx(onnx_session(store.read_model(outcome.version)), windows)
    np.testing.assert_allclose(new_forecast, old_forecast, rtol=1e-6)
    assert not np.allclose(new_quantiles, old_quantiles, rtol=1e-6)
    # Its weights file rebuilds its graph: a later recalibration starts from it.
    rebuilt = read_forecaster(store.read_file(outcome.version, store.weights_path()), served.pair.spec)
    assert meta.calibration is not None and meta.calibration.points == 672
    with torch.no_grad():
        forecast, _ = rebuilt(torch.from_numpy(windows.astype(np.float32)))
    np.testing.assert_allclose(forecast.numpy(), new_forecast, rtol=1e-5)


def test_the_new_margins_fit_hours_after_the_weights_and_before_the_judged_ones() -> None:
    frame = sample_candles().iloc[-2000:].reset_index(drop=True)
    data = prepare(frame, 24, 1, 3_600_000)
    closes = close_moments(frame["open_time"], "1h")
    tuned = closes.iloc[1000]
    split = recalibration_split(data, tuned, "1h", calibration=300, test=100)
    assert len(split.test) == 100 and split.test[-1] == data.split.test[-1]  # the newest origins judge
    assert len(split.calibration) == 300 and split.calibration[-1] + data.horizon <= split.test[0]
    assert (closes.iloc[split.calibration + 1] > tuned).all()  # every label closed after the weights' last hour
    with pytest.raises(RecalibrationError, match="only .* hours closed after the served version's weights"):
        recalibration_split(data, closes.iloc[1800], "1h", calibration=300, test=100)


def test_nothing_is_recalibrated_when_the_baseline_is_served(served: Served) -> None:
    store = served.store()
    versions = store.versions()
    store.promote(versions[0])  # the baseline
    with pytest.raises(RecalibrationError, match="serves the baseline .* only a served LSTM's margins"):
        run_recalibration(served.pair, Source.parse(f"file:{served.full}"), served.url)
    assert store.versions() == versions  # nothing published


def test_a_pair_whose_ranges_turned_too_narrow_recalibrates_and_trains_only_when_that_is_not_enough(
    served: Served,
) -> None:
    """`makeusrich train --recalibrate-first` (the Degraded run of a pair whose ranges turned too narrow)."""
    store = served.store()
    before = store.versions()
    outcome = recalibrate_or_train(served.pair, Source.parse(f"file:{served.full}"), served.url, progress=None)
    made = [store.model_metadata(v) for v in store.versions() if v not in before]
    assert made[0].training.epochs == 0  # the recalibration comes first
    if outcome.promoted and outcome.version == made[0].version:
        assert len(made) == 1  # its new margins passed the gates: no training
    else:
        assert len(made) == 2 and made[1].training.epochs > 0 and outcome.version == made[1].version
    store.promote(before[0])  # the baseline is served: nothing to recalibrate, so it trains
    again = recalibrate_or_train(served.pair, Source.parse(f"file:{served.full}"), served.url, progress=None)
    assert again.metadata.training.epochs > 0 and store.versions()[-1] == again.version
