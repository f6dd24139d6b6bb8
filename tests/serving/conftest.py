"""Fixtures of the serving tests beyond the shared ones (tests/fixtures/): a model from before forecast ranges.

- `single_output_server` (session): a real `makeusrich serve` over a private store whose promoted version is the
  session's trained model as the trainer published it before ranges (a `forecast` output alone, no quantile
  levels; see helpers.publish_single_output). `single_output_server.store.version` is that version.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import replace

import pytest

from makeusrich.store import parse_metadata
from tests.fixtures.model_server import RunningServer, launch
from tests.fixtures.models import TrainedStore
from tests.serving.helpers import publish_single_output


@pytest.fixture(scope="session")
def single_output_server(
    trained_store_template: TrainedStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("single-output-server")
    shutil.copytree(trained_store_template.root, folder / "store")
    store = replace(trained_store_template, root=folder / "store")
    version = publish_single_output(store.store(), store.version)
    published = parse_metadata(store.store().metadata(version))
    store = replace(store, outcome=replace(store.outcome, version=version, metadata=published))
    server = launch(["--store", store.url, "--pairs", store.pair.name], folder / "serve.log", store=store)
    yield server
    server.stop()
