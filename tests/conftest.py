"""Shared pytest fixtures. Real servers and trained models live in tests/fixtures/, one module each."""

pytest_plugins = [
    "tests.fixtures.s3server",
    "tests.fixtures.fake_binance",
    "tests.fixtures.models",
    "tests.fixtures.model_server",
]
