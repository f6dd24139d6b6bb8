"""Champion against challenger: a new version is compared with the served version's own ONNX file, run on the
hours that neither used in any role (the challenger's test hours after the last candle that tuned the served
one), and refused only when it is significantly worse."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import helper, numpy_helper

from makeusrich.contract import OUTPUT_NAME, QUANTILES_NAME
from makeusrich.market import Source, clean_candles, read_sample
from makeusrich.onnxrt import onnx_session
from makeusrich.trainer.features import Prepared, prepare
from makeusrich.trainer.pipeline import run_training
from makeusrich.trainer.promotion import CHAMPION_MIN_POINTS, champion_gate, champion_points, compare_with_champion
from tests.fixtures.models import TrainedStore, small_pair, train_into

HOUR = 3_600_000
LEVELS = [0.05, 0.25, 0.5, 0.75, 0.95]


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory) -> TrainedStore:
    return train_into(tmp_path_factory.mktemp("champion"), small_pair())


def read_candles_until(days: int = 60, cut_days: int = 0) -> pd.DataFrame:
    """The bundled sample's `days` days ending `cut_days` before its newest candle, as the trainer cleans them."""
    frame, _ = clean_candles(read_sample("BTCUSDT", "1h"), "1h")
    end = len(frame) - cut_days * 24
    return frame.iloc[end - days * 24 : end].reset_index(drop=True)


def same_candles(days: int = 60) -> Prepared:
    """The candles the small pair trains on: the bundled sample's last `days` days."""
    return prepare(read_candles_until(days), 24, 1, HOUR)


def scaled(model: bytes, factor: float) -> bytes:
    """The same graph with every output multiplied by `factor`: a model that is off by a known amount."""
    proto = onnx.load_from_string(model)
    graph = proto.graph
    graph.initializer.append(numpy_helper.from_array(np.array(factor, dtype=np.float32), "factor"))
    for name in (OUTPUT_NAME, QUANTILES_NAME):
        for node in graph.node:
            node.output[:] = [f"{name}_raw" if out == name else out for out in node.output]
            node.input[:] = [f"{name}_raw" if inp == name else inp for inp in node.input]
        graph.node.append(helper.make_node("Mul", [f"{name}_raw", "factor"], [name]))
    return proto.SerializeToString()


def test_the_served_file_against_itself_is_compared_and_not_worse(champion: TrainedStore) -> None:
    data = same_candles()
    meta = champion.outcome.metadata
    points = champion_points(data, meta)
    assert len(points) == len(data.split.test) >= CHAMPION_MIN_POINTS  # same data: all of test tuned neither
    check = compare_with_champion(
        champion.store(), data, onnx_session(champion.store().read_model(champion.version)), LEVELS
    )
    assert check is not None and check.compared and not check.worse
    assert check.version == champion.version and check.n == len(points)
    assert check.mae == pytest.approx(check.champion_mae) and check.mae_dm_pvalue == 1.0
    assert check.pinball == pytest.approx(check.champion_pinball)
    assert "not significantly worse" in check.note


def test_a_challenger_off_by_half_a_percent_is_significantly_worse(champion: TrainedStore) -> None:
    data = same_candles()
    worse = onnx_session(scaled(champion.store().read_model(champion.version), 1.005))
    check = compare_with_champion(champion.store(), data, worse, LEVELS)
    assert check is not None and check.compared and check.worse
    assert check.mae is not None and check.champion_mae is not None and check.mae > check.champion_mae
    assert check.mae_dm_pvalue is not None and check.mae_dm_pvalue < 0.05
    assert "significantly worse than the served LSTM" in check.note and "MAE" in check.note


def test_hours_that_tuned_the_champion_are_not_compared(champion: TrainedStore) -> None:
    """A challenger whose test hours the champion tuned on (here: the champion's own candles, with the newest
    weeks cut off) has too few hours left; the run says so instead of comparing on data that flatters the
    champion, and the served LSTM stays."""
    data = prepare(read_candles_until(days=60, cut_days=3), 24, 1, HOUR)
    points = champion_points(data, champion.outcome.metadata)
    assert len(points) < CHAMPION_MIN_POINTS
    session = onnx_session(champion.store().read_model(champion.version))
    check = compare_with_champion(champion.store(), data, session, LEVELS)
    assert check is not None and not check.compared and not check.worse
    assert f"only {len(points)} test hours" in check.note
    assert champion_gate(check).passed is False and "stays" in champion_gate(check).note


def test_the_pipeline_records_the_comparison_and_promotes_a_challenger_that_is_not_worse(tmp_path: Path) -> None:
    first = train_into(tmp_path, small_pair())
    champion = first.outcome.metadata.promotion.champion  # the baseline the run published first
    assert first.outcome.first is not None and champion is not None and champion.kind == "baseline"
    again = run_training(small_pair(), Source("sample"), first.url, progress=None)
    check = again.metadata.promotion.champion
    assert check is not None and check.version == first.version and check.compared
    assert again.promoted == (not check.worse)
    assert check.note in again.reason
    assert first.store().latest().version == (again.version if again.promoted else first.version)  # type: ignore[union-attr]
