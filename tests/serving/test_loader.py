"""Loading a version for serving, without a server: what is accepted, and every way a version is refused."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from makeusrich.errors import MakeUsRichError
from makeusrich.serving import loader
from makeusrich.serving.loader import (
    FolderSource,
    LoadRefused,
    StoreSource,
    discover_store_pairs,
    flat_windows,
    folder_sources,
    load_artifact,
    sha256,
)
from makeusrich.store import open_store, pair_store
from makeusrich.trainer import export
from tests.fixtures.models import TrainedStore
from tests.serving.helpers import (
    edit_metadata,
    nan_above,
    point_latest_at,
    publish_model,
    publish_single_output,
    quantiles_repeated,
    quantiles_scaled,
    real_windows,
    reference,
    reference_outputs,
    scaled_model,
    single_output_model,
)

LEVELS = (0.05, 0.25, 0.5, 0.75, 0.95)


def source(trained: TrainedStore) -> StoreSource:
    return StoreSource(trained.store())


def load_latest(trained: TrainedStore) -> loader.Served:
    src = source(trained)
    candidate = src.current()
    assert candidate is not None
    return load_artifact(src.fetch(candidate))


def test_contract_names_match_the_trainer() -> None:
    names = (loader.INPUT_NAME, loader.OUTPUT_NAME, loader.QUANTILES_NAME)
    assert names == (export.INPUT_NAME, export.OUTPUT_NAME, export.QUANTILES_NAME)


def test_the_promoted_version_loads_and_answers_like_onnxruntime(trained_store: TrainedStore) -> None:
    served = load_latest(trained_store)
    assert served.version == trained_store.version and served.interval == "1h"
    assert served.signature.window == 24 and served.signature.horizon == 1
    assert served.signature.levels == LEVELS and served.signature.quantiles is not None
    assert served.signature.quantiles.shape == (-1, 1, 5)
    assert served.where == trained_store.store().storage_uri(trained_store.version)
    windows = real_windows(24, 16)
    model = trained_store.store().read_model(trained_store.version)
    answer, expected = served.run(windows), reference_outputs(model, windows)
    assert list(answer) == ["forecast", "quantiles"]
    assert np.array_equal(answer["forecast"], expected["forecast"])
    assert np.array_equal(answer["quantiles"], expected["quantiles"])
    assert list(served.run(windows, ["quantiles"])) == ["quantiles"]  # only what is asked for
    meta = trained_store.store().metadata(trained_store.version)
    smoke = meta["smokeTest"]
    assert served.info["smoke_forecast"] == pytest.approx(smoke["forecast"][0], rel=1e-6)  # the recorded window
    assert 10_000 < smoke["candles"][-1][3] < 100_000  # real BTC prices, not a flat 100
    assert served.created_at == datetime.strptime(meta["createdAt"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def test_a_version_from_before_ranges_loads_and_answers_as_before(trained_store: TrainedStore) -> None:
    """`forecast` alone in the graph, config.pbtxt and metadata.json, as the trainer published it until then."""
    store = trained_store.store()
    version = publish_single_output(store, trained_store.version)
    assert (
        "quantiles" not in store.metadata(version)
        and "quantiles" not in store.read_file(version, "btc-usdt/config.pbtxt").decode()
    )
    served = load_latest(trained_store)
    assert served.version == version and served.signature.quantiles is None and served.signature.levels == ()
    windows = real_windows(24, 8)
    answer = served.run(windows)
    assert list(answer) == ["forecast"]
    assert np.array_equal(answer["forecast"], reference(store.read_model(version), windows))


def refusal(trained: TrainedStore, model: bytes, change: Any = None) -> str:
    """Why the loader refuses `model` published as a new version (its metadata changed by `change`, if given)."""
    store = trained.store()
    version = publish_model(store, model, trained.version, promote=change is None)
    if change is not None:
        edit_metadata(store, version, change)
        store.promote(version)
    with pytest.raises(LoadRefused) as caught:
        load_latest(trained)
    return str(caught.value)


def test_quantile_levels_must_fit_the_graph(trained_store: TrainedStore) -> None:
    model = trained_store.store().read_model(trained_store.version)
    three = refusal(trained_store, model, lambda meta: {**meta, "quantiles": [0.25, 0.5, 0.75]})
    assert three.endswith("metadata.json names 3 quantile levels but the graph's quantiles have 5")
    none = refusal(trained_store, model, lambda meta: {k: v for k, v in meta.items() if k != "quantiles"})
    assert none == "the graph has a 'quantiles' output but no metadata.json names its levels (`quantiles`)"
    unpaired = refusal(trained_store, model, lambda meta: {**meta, "quantiles": [0.05, 0.25, 0.5, 0.75, 0.9]})
    assert unpaired.startswith("metadata.json's quantile levels must come in pairs around 0.5")
    single = refusal(trained_store, single_output_model(model), lambda meta: meta)  # levels, but no output
    assert single == "metadata.json names quantile levels but the graph has no 'quantiles' output"


def test_quantiles_over_another_horizon_are_refused(trained_store: TrainedStore) -> None:
    model = quantiles_repeated(trained_store.store().read_model(trained_store.version))
    message = refusal(trained_store, model)  # the levels dimension is -1 while the trainer leaves it symbolic
    assert re.fullmatch(
        r"the graph's 'quantiles' shape is \[-1, 2, (-1|5)\], not \[batch, 1, levels\] like its forecast", message
    )


def test_crossing_quantiles_are_refused(trained_store: TrainedStore) -> None:
    """The 0.95 quantile pulled below the 0.75 one: no range a person could read."""
    model = quantiles_scaled(trained_store.store().read_model(trained_store.version), [1, 1, 1, 1, 0.9])
    windows = real_windows(24, 4)
    quantiles = reference_outputs(model, windows)["quantiles"]
    assert (quantiles[..., 4] < quantiles[..., 3]).all()  # the graph really crosses them
    message = refusal(trained_store, model)
    assert "answered its recorded smoke-test window with crossing quantiles [" in message
    assert message.endswith("for levels [0.05, 0.25, 0.5, 0.75, 0.95]; they must not decrease along levels")


def test_a_median_that_is_not_the_forecast_is_refused(trained_store: TrainedStore) -> None:
    model = scaled_model(trained_store.store().read_model(trained_store.version), 1.0001, outputs=["forecast"])
    message = refusal(trained_store, model)
    assert "answered its recorded smoke-test window with a median quantile [" in message
    assert "not its forecast [" in message


def test_quantiles_must_be_the_recorded_ones(trained_store: TrainedStore) -> None:
    """Wider ranges around the same median: a different model, though a sound one."""
    store = trained_store.store()
    model = quantiles_scaled(store.read_model(trained_store.version), [0.99, 1, 1, 1, 1.01])
    recorded = store.metadata(trained_store.version)["smokeTest"]["quantiles"]
    message = refusal(
        trained_store, model, lambda meta: {**meta, "smokeTest": {**meta["smokeTest"], "quantiles": recorded}}
    )
    assert message.endswith("recorded at training: the file is not the model that was measured")
    assert "answered its recorded smoke-test window with quantiles [" in message


def test_no_latest_means_nothing_to_serve(tmp_path: Path) -> None:
    assert StoreSource(pair_store(f"file://{tmp_path}", "default", "btc-usdt")).current() is None


def test_candidate_key_changes_with_each_promotion(trained_store: TrainedStore) -> None:
    store = trained_store.store()
    first = source(trained_store).current()
    version = publish_model(store, store.read_model(trained_store.version), trained_store.version)
    second = source(trained_store).current()
    assert first is not None and second is not None and second.version == version and first.key != second.key


def test_garbage_model_is_refused(trained_store: TrainedStore) -> None:
    store = trained_store.store()
    publish_model(store, b"not an onnx file" * 10, trained_store.version)
    with pytest.raises(LoadRefused, match="is not a loadable ONNX model"):
        load_latest(trained_store)


def test_model_damaged_after_promotion_is_refused(trained_store: TrainedStore) -> None:
    store = trained_store.store()
    good = store.read_model(trained_store.version)
    version = publish_model(store, scaled_model(good, 1.1), trained_store.version, promote=False)
    path = trained_store.root / store.version_prefix(version) / store.model_path()
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")  # bit rot: same size, other bytes
    point_latest_at(store, version, store.metadata(version)["files"][store.model_path()]["sha256"])
    with pytest.raises(LoadRefused, match="does not match its recorded sha256"):
        load_latest(trained_store)


def test_latest_naming_another_checksum_is_refused(trained_store: TrainedStore) -> None:
    store = trained_store.store()
    point_latest_at(store, trained_store.version, "0" * 64)
    with pytest.raises(LoadRefused, match="disagree on the model's sha256"):
        load_latest(trained_store)


def test_a_model_answering_nonsense_fails_the_smoke_test(trained_store: TrainedStore) -> None:
    store = trained_store.store()
    publish_model(store, scaled_model(store.read_model(trained_store.version), -1.0), trained_store.version)
    refusal = r"answered its recorded smoke-test window with \[-\d.*expected 1 finite positive"
    with pytest.raises(LoadRefused, match=refusal):
        load_latest(trained_store)


def test_a_model_that_fails_only_at_real_prices_is_refused(trained_store: TrainedStore) -> None:
    """A flat window at 100 would pass it; the recorded window of real candles does not."""
    store = trained_store.store()
    publish_model(store, nan_above(store.read_model(trained_store.version), 1000.0), trained_store.version)
    assert np.isfinite(reference(store.read_model(store.versions()[-1]), flat_windows(24, (100.0,)))).all()
    with pytest.raises(LoadRefused, match=r"answered its recorded smoke-test window with \[nan\]"):
        load_latest(trained_store)
    meta_key = store.version_prefix(store.versions()[-1]) + "metadata.json"
    without = {k: v for k, v in json.loads(store.objects.get(meta_key)).items() if k != "smokeTest"}
    store.objects.put(meta_key, json.dumps(without).encode())  # another trainer's version: no recorded window
    with pytest.raises(LoadRefused, match=r"answered flat windows at prices 1, 100, 10000, 100000 with"):
        load_latest(trained_store)


def test_a_file_that_is_not_the_measured_model_is_refused(trained_store: TrainedStore) -> None:
    store = trained_store.store()
    version = publish_model(store, scaled_model(store.read_model(trained_store.version), 1.01), trained_store.version)
    key = store.version_prefix(version) + "metadata.json"
    meta = json.loads(store.objects.get(key))
    meta["smokeTest"] = store.metadata(trained_store.version)["smokeTest"]  # the other model's answer
    store.objects.put(key, json.dumps(meta).encode())
    with pytest.raises(LoadRefused, match="not the model that was measured"):
        load_latest(trained_store)


def test_graph_with_other_names_is_refused(trained_store: TrainedStore) -> None:
    store = trained_store.store()
    proto = onnx.load_from_string(store.read_model(trained_store.version))
    proto.graph.input[0].name = "x"
    for node in proto.graph.node:
        node.input[:] = ["x" if name == "candles" else name for name in node.input]
    publish_model(store, proto.SerializeToString(), trained_store.version)
    with pytest.raises(LoadRefused, match=r"inputs \['x'\]"):
        load_latest(trained_store)


def test_metadata_disagreeing_with_the_graph_is_refused(trained_store: TrainedStore) -> None:
    store = trained_store.store()
    version = publish_model(store, store.read_model(trained_store.version), trained_store.version, promote=False)
    key = store.version_prefix(version) + "metadata.json"
    meta = json.loads(store.objects.get(key))
    store.objects.put(key, json.dumps({**meta, "window": 48}).encode())
    store.promote(version)
    with pytest.raises(LoadRefused, match="metadata.json says window 48 but the graph's window is 24"):
        load_latest(trained_store)


def test_flat_windows_span_the_price_scales() -> None:
    windows = flat_windows(3, (1.0, 100.0))
    assert windows.shape == (2, 3, 5) and windows.dtype == np.float32
    assert (windows[0, :, :4] == 1).all() and (windows[1, :, :4] == 100).all() and (windows[..., 4] == 10).all()


def test_pairs_are_discovered_by_their_latest_json(trained_store: TrainedStore) -> None:
    objects = open_store(trained_store.url)
    objects.put("default/eth-usdt/versions/20260101T000000Z/metadata.json", b"{}")  # never promoted
    objects.put("default/sol-usdt/latest.json", b"{}")
    objects.put("other/xrp-usdt/latest.json", b"{}")
    assert discover_store_pairs(objects, "default") == ["btc-usdt", "sol-usdt"]
    assert discover_store_pairs(objects, "other") == ["xrp-usdt"]


def kserve_mount(trained: TrainedStore, target: Path) -> Path:
    """A version folder copied as KServe's storage initializer mounts a storageUri at /mnt/models."""
    shutil.copytree(trained.root / trained.store().version_prefix(trained.version), target)
    return target


def test_folder_source_serves_a_mounted_version(trained_store: TrainedStore, tmp_path: Path) -> None:
    mount = kserve_mount(trained_store, tmp_path / "models")
    (found,) = folder_sources(mount)
    assert found.name == "btc-usdt"
    candidate = found.current()
    assert candidate is not None and candidate.version == trained_store.version  # from metadata.json
    served = load_artifact(found.fetch(candidate))
    windows = real_windows(24, 4)
    model = (mount / "btc-usdt/1/model.onnx").read_bytes()
    assert np.array_equal(served.run(windows)["forecast"], reference(model, windows))


def test_folder_source_checks_the_recorded_checksum(trained_store: TrainedStore, tmp_path: Path) -> None:
    mount = kserve_mount(trained_store, tmp_path / "models")
    model = mount / "btc-usdt/1/model.onnx"
    model.write_bytes(scaled_model(model.read_bytes(), 2.0))
    found = FolderSource(mount, "btc-usdt")
    with pytest.raises(LoadRefused, match="does not match the sha256 recorded"):
        found.fetch(found.current())  # type: ignore[arg-type]
    (mount / "metadata.json").unlink()  # a plain Triton repository: no checksum to check, version "1"
    candidate = found.current()
    assert candidate is not None and candidate.version == "1"
    assert sha256(found.fetch(candidate).model) == sha256(model.read_bytes())


def test_folder_config_disagreeing_with_the_graph_is_refused(trained_store: TrainedStore, tmp_path: Path) -> None:
    mount = kserve_mount(trained_store, tmp_path / "models")
    config = mount / "btc-usdt/config.pbtxt"
    config.write_text(config.read_text().replace("[ -1, 24, 5 ]", "[ -1, 48, 5 ]"))
    found = FolderSource(mount, "btc-usdt")
    with pytest.raises(LoadRefused, match="config.pbtxt of version .* does not match the model"):
        load_artifact(found.fetch(found.current()))  # type: ignore[arg-type]


def test_folder_without_models_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MakeUsRichError, match="holds no Triton model folder"):
        folder_sources(tmp_path)
    with pytest.raises(MakeUsRichError, match="is not a folder"):
        folder_sources(tmp_path / "missing")
