"""Loading a version for serving, without a server: what is accepted, and every way a version is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

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
    nan_above,
    point_latest_at,
    publish_model,
    real_windows,
    reference,
    scaled_model,
)


def source(trained: TrainedStore) -> StoreSource:
    return StoreSource(trained.store())


def load_latest(trained: TrainedStore) -> loader.Served:
    src = source(trained)
    candidate = src.current()
    assert candidate is not None
    return load_artifact(src.fetch(candidate))


def test_contract_names_match_the_trainer() -> None:
    assert (loader.INPUT_NAME, loader.OUTPUT_NAME) == (export.INPUT_NAME, export.OUTPUT_NAME)


def test_the_promoted_version_loads_and_answers_like_onnxruntime(trained_store: TrainedStore) -> None:
    served = load_latest(trained_store)
    assert served.version == trained_store.version and served.interval == "1h"
    assert served.signature.window == 24 and served.signature.horizon == 1
    assert served.where == trained_store.store().storage_uri(trained_store.version)
    windows = real_windows(24, 16)
    model = trained_store.store().read_model(trained_store.version)
    assert np.array_equal(served.run(windows), reference(model, windows))
    smoke = trained_store.store().metadata(trained_store.version)["smokeTest"]
    assert served.info["smoke_forecast"] == pytest.approx(smoke["forecast"][0], rel=1e-6)  # the recorded window
    assert 10_000 < smoke["candles"][-1][3] < 100_000  # real BTC prices, not a flat 100


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
    assert np.array_equal(served.run(windows), reference((mount / "btc-usdt/1/model.onnx").read_bytes(), windows))


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
