"""Integration tests use the session's brokers of the root conftest (``broker``)."""
