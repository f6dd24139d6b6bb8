"""Shared pytest fixtures. Real servers and trained models live in tests/fixtures/, one module each."""

import logging
from collections.abc import Iterator

import pytest

pytest_plugins = [
    "tests.fixtures.s3server",
    "tests.fixtures.fake_binance",
    "tests.fixtures.models",
    "tests.fixtures.model_server",
]


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """A command run in-process (makeusrich.cli.main) points the root logger at this test's captured stderr, which
    pytest closes afterwards: later tests' log lines (kopf's, say) would then fail to write and print tracebacks."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
