"""The live fuzz tests reuse the session broker of the integration tests."""

from tests.integration.conftest import broker

__all__ = ["broker"]
