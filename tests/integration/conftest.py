"""Integration fixtures: one real embedded broker (Tansu) for the whole session."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from telex.kafka.embedded import EmbeddedBroker


@pytest.fixture(scope="session")
async def broker() -> AsyncIterator[EmbeddedBroker]:
    kafka = EmbeddedBroker()
    await kafka.start()
    try:
        yield kafka
    finally:
        await kafka.stop()
