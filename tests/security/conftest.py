"""Security tests run against real servers on 127.0.0.1 and the session broker of the
integration tests."""

from tests.integration.conftest import broker

__all__ = ["broker"]
