"""Shared pytest fixtures. Real servers, trained models and the Kubernetes API emulator live in tests/fixtures/, one
module each; so do the helpers every test shares: `eventually` (fixtures/waiting.py) and the `makeusrich()` command
runner (fixtures/shell.py)."""

import logging
from collections.abc import Iterator

import pytest

pytest_plugins = [
    "tests.fixtures.s3server",
    "tests.fixtures.fake_binance",
    "tests.fixtures.models",
    "tests.fixtures.model_server",
    "tests.fixtures.kube_emulator",
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
