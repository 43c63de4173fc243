"""The reset signal on the real (memory-only) embedded broker: topics that vanish are created
again, and every process hears about it, also the ones that find them already recreated by
another."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from telex.config import Config
from telex.kafka import Clients, TopicSpec, ensure_topics
from tests.conftest import Broker

# What the embedded broker itself does: it keeps running on Tansu.
pytestmark = pytest.mark.embedded_broker


async def test_every_guard_starts_over_when_the_topics_vanish(
    broker: Broker, config_factory: Callable[..., Config]
) -> None:
    config = config_factory(broker.bootstrap)
    topics = config.topics
    specs = [TopicSpec(topics.raw, 3), TopicSpec(topics.wire, 3)]
    calls: list[str] = []
    guards = []
    for name in ("a", "b"):
        clients = await Clients.connect(config, broker.bootstrap)
        assert clients.capabilities.memory_only, "the embedded broker was not found memory-only"
        await ensure_topics(clients, specs)
        guard = clients.reset

        async def noted(name: str = name) -> None:
            calls.append(name)

        guard.on_reset(noted)
        await guard.start(specs, f"{topics.wire}.guard", interval=0.3)
        assert guard.armed
        guards.append(guard)
    try:
        await asyncio.sleep(1.5)
        assert calls == [], "topics intact, yet a guard started over"

        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            # What a restarted in-memory broker looks like: every topic gone, marker included.
            await admin.delete_topics([s.name for s in specs] + [f"{topics.wire}.guard"])
            async with asyncio.timeout(20):
                while sorted(calls) != ["a", "b"]:
                    await asyncio.sleep(0.1)
            described = await admin.describe_topics([s.name for s in specs])
        finally:
            await admin.close()
        assert {d["topic"]: len(d["partitions"]) for d in described} == {
            topics.raw: 3,
            topics.wire: 3,
        }
        assert all(g.intact.is_set() for g in guards)
        await asyncio.sleep(1.5)
        assert sorted(calls) == ["a", "b"], "a guard started over twice for one loss"
    finally:
        for guard in guards:
            await guard.stop()
