"""The running-server fixtures (tests/fixtures/model_server.py), until the root conftest lists that module in
pytest_plugins."""

from tests.fixtures.model_server import model_server, start_model_server

__all__ = ["model_server", "start_model_server"]
