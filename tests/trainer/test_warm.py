"""Warm-started retraining: a scheduled run starts from the stored LSTM's weights only when they fit the spec's
network and were tuned on hours before the run's own calibration and test hours; otherwise it trains from the
seed and says why."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch

from makeusrich.errors import MakeUsRichError
from makeusrich.market import Source
from makeusrich.store import RoleSpan, pair_store
from makeusrich.trainer.backtest import walk_forward
from makeusrich.trainer.evaluation import calibrate
from makeusrich.trainer.features import prepare
from makeusrich.trainer.model import Forecaster
from makeusrich.trainer.pipeline import run_training, summary
from makeusrich.trainer.train import predict_standardised, train
from makeusrich.trainer.warm import architecture, choose_start, read_forecaster, read_weights, refusal, weights_file
from tests.fixtures.models import small_pair
from tests.trainer.test_backtest import sample_frame


def with_model(**model: object) -> dict[str, object]:
    return {"model": {"window": 24, "hiddenSize": 8, "layers": 1, "maxEpochs": 2, "batchSize": 128, **model}}


def test_the_second_run_starts_from_the_first_ones_weights_and_says_so(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/store"
    first = run_training(small_pair(), Source("sample"), url, progress=None)
    assert first.metadata.training.warm_from is None
    assert first.metadata.training.start == "from the seed: the pair has no LSTM version to start from"
    store = pair_store(url, first.metadata.namespace, first.metadata.pair)
    assert store.weights_path() in first.metadata.files  # kept, checksummed, beside metadata.json
    second = run_training(small_pair(), Source("sample"), url, progress=None)
    training = second.metadata.training
    assert training.warm_from == first.version and first.version in (training.start or "")
    assert f"from the weights of {first.version}" in summary(second)
    assert training.epochs <= 1 + training.best_epoch  # one epoch without improvement stops a warm run
    # the data roles are the run's own: the same split, scalers refit, margins recalibrated on its hours
    assert second.metadata.data.roles == first.metadata.data.roles
    # a served LSTM from before versions kept weights does not keep every later run cold: the newest LSTM starts it
    weightless = first.metadata.model_copy(
        update={"files": {k: v for k, v in first.metadata.files.items() if k != store.weights_path()}}
    )
    start = choose_start(small_pair().spec, store, weightless, second.metadata.data.roles["validation"])
    assert start.version == second.version and "(the newest LSTM version)" in start.note


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (with_model(hiddenSize=12), "its hiddenSize 8 differs from the spec's 12"),
        (with_model(quantiles=[0.1, 0.5, 0.9]), "its quantiles [0.05, 0.25, 0.5, 0.75, 0.95] differs"),
        (with_model(warmStart=False), "from the seed: spec.model.warmStart is false"),
        ({"lookbackDays": 120}, "after this run's validation hours end"),
    ],
)
def test_a_run_trains_from_the_seed_when_the_weights_do_not_fit_or_could_leak(
    tmp_path: Path, change: dict[str, object], said: str
) -> None:
    """A longer lookback moves this run's validation hours earlier than those that early-stopped the stored
    weights: starting from them would let hours this run calibrates or judges on tune it, so it is refused."""
    url = f"file://{tmp_path}/store"
    first = run_training(small_pair(), Source("sample"), url, progress=None)
    second = run_training(small_pair(**change), Source("sample"), url, progress=None)  # type: ignore[arg-type]
    assert second.metadata.training.warm_from is None and first.metadata.training.warm_from is None
    assert said in (second.metadata.training.start or "")


def test_refusal_reads_kind_weights_and_hours(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/store"
    outcome = run_training(small_pair(), Source("sample"), url, progress=None)
    store = pair_store(url, outcome.metadata.namespace, outcome.metadata.pair)
    meta, baseline = outcome.metadata, outcome.first.metadata  # type: ignore[union-attr]
    validation = meta.data.roles["validation"]
    assert refusal(meta, store, validation) is None
    assert "is the baseline, which has no weights" in (refusal(baseline, store, validation) or "")
    older = meta.model_copy(update={"files": {k: v for k, v in meta.files.items() if k != store.weights_path()}})
    assert "before versions kept their weights" in (refusal(older, store, validation) or "")
    hour_earlier = RoleSpan(origins=validation.origins, from_=validation.from_, to="2022-05-01T00:00:00Z")
    assert "after this run's validation hours end (2022-05-01T00:00:00Z)" in (refusal(meta, store, hour_earlier) or "")


def test_a_weights_file_is_refused_when_damaged_or_foreign() -> None:
    pair = small_pair()
    data = prepare(sample_frame(), 24, 1, 3_600_000)
    core = train(data, pair.spec.model, progress=None).core
    forecaster = Forecaster(core, data.feature_scaler, data.target_scaler, data.volatility)
    state = read_weights(weights_file(forecaster, pair.spec), pair.spec)
    assert all(torch.equal(state[name], tensor) for name, tensor in core.state_dict().items())
    with pytest.raises(ValueError, match="unreadable"):
        read_weights(b"not a torch file", pair.spec)
    buffer = io.BytesIO()
    torch.save({"architecture": {}, "state": {}, "code": print}, buffer)  # weights_only refuses what is not data
    with pytest.raises(ValueError, match="unreadable"):
        read_weights(buffer.getvalue(), pair.spec)
    buffer = io.BytesIO()
    torch.save({"weights": torch.zeros(3)}, buffer)  # data, but not a weights file of this project
    with pytest.raises(ValueError, match="unreadable \\(not a makeusrich weights file\\)"):
        read_weights(buffer.getvalue(), pair.spec)
    other = small_pair(model={"window": 48}).spec
    with pytest.raises(ValueError, match="its window 24 differs from the spec's 48"):
        read_weights(weights_file(forecaster, pair.spec), other)


def test_the_served_graph_is_rebuilt_from_its_weights_file_alone() -> None:
    """A recalibration changes the margins of a version's graph and nothing else: the file must hold the rest."""
    pair = small_pair(model={"maxEpochs": 2})
    data = prepare(sample_frame(), 24, 1, 3_600_000)
    result = train(data, pair.spec.model, progress=None)
    margins = calibrate(result.core, data, pair.spec.model.quantiles)
    forecaster = Forecaster(result.core, data.feature_scaler, data.target_scaler, data.volatility, margins)
    rebuilt = read_forecaster(weights_file(forecaster, pair.spec), pair.spec)
    windows = torch.from_numpy(data.raw_windows(data.split.test).astype(np.float32))
    with torch.no_grad():
        for got, want in zip(rebuilt(windows), forecaster(windows), strict=True):
            assert torch.equal(got, want)
    buffer = io.BytesIO()
    state = {name: tensor for name, tensor in result.core.state_dict().items()}
    torch.save({"architecture": architecture(pair.spec), "state": state}, buffer)  # a file from before
    with pytest.raises(ValueError, match="before versions kept their graph's parameters"):
        read_forecaster(buffer.getvalue(), pair.spec)


def test_a_warm_run_never_ends_worse_on_validation_than_where_it_started() -> None:
    """The starting weights' validation loss is the one to beat: a warm run keeps them when no epoch improves."""
    pair = small_pair(model={"maxEpochs": 3})
    data = prepare(sample_frame(), 24, 1, 3_600_000)
    first = train(data, pair.spec.model, progress=None)
    start = {name: tensor.clone() for name, tensor in first.core.state_dict().items()}
    validation = data.split.validation
    levels = torch.tensor(pair.spec.model.quantiles)

    def loss(core: torch.nn.Module) -> float:
        predicted = torch.from_numpy(predict_standardised(core, data, validation, torch.device("cpu")))  # type: ignore[arg-type]
        actual = torch.from_numpy(data.targets[validation])
        diff = actual[:, :, None] - predicted
        return float(torch.mean(torch.maximum(levels * diff, (levels - 1.0) * diff)))

    before = loss(first.core)
    warm = train(data, pair.spec.model, progress=None, start=start)
    assert warm.warm and loss(warm.core) <= before + 1e-7
    if warm.best_epoch == 0:
        assert all(torch.equal(start[k], v) for k, v in warm.core.state_dict().items())


def test_walk_forward_folds_start_from_the_previous_fold_unless_cold() -> None:
    spec = small_pair(lookbackDays=40).spec
    step = timedelta(days=5)
    warm = walk_forward("btc-usdt", spec, sample_frame(), folds=3, step=step)
    assert [f.warm for f in warm.folds] == [False, True, True]
    cold_spec = spec.model_copy(update={"model": spec.model.model_copy(update={"warm_start": False})})
    cold = walk_forward("btc-usdt", cold_spec, sample_frame(), folds=3, step=step)
    assert [f.warm for f in cold.folds] == [False, False, False]
    assert cold.folds[0].point.mae == warm.folds[0].point.mae  # fold 1 is the same cold model in both
    assert not np.isclose(cold.folds[2].point.mae or 0, warm.folds[2].point.mae or 0, rtol=0, atol=0)
    with pytest.raises(MakeUsRichError, match="--jobs 2 trains folds at once"):
        walk_forward("btc-usdt", spec, sample_frame(), folds=3, step=step, jobs=2)
