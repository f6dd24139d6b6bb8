"""Shared pytest fixtures. Real servers live in tests/fixtures/, one module each."""

pytest_plugins = [
    "tests.fixtures.s3server",
    "tests.fixtures.fake_binance",
]
