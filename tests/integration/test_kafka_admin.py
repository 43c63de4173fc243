"""Topic admin against the Apache Kafka cluster, and the embedded broker's start-up errors."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from telex.config import Config
from telex.kafka import BrokerError, Clients, TopicSpec, ensure_topics
from telex.kafka.embedded import EmbeddedBroker
from tests.conftest import Broker


async def test_topic_bootstrap_is_idempotent(
    broker: Broker, config_factory: Callable[..., Config]
) -> None:
    config = config_factory(broker.bootstrap)
    clients = Clients(config, broker.bootstrap)
    name = config.topics.raw + ".bootstrap"
    specs = [TopicSpec(name, 3), TopicSpec(name + ".compact", 1, compact=True)]
    assert await ensure_topics(clients, specs) == [name, name + ".compact"]
    assert await ensure_topics(clients, specs) == []
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        # A cluster's brokers learn of a new topic a moment apart: ask until the one answering
        # knows it (a topic made with another partition count never reaches 3).
        partitions: list[object] = []
        for _ in range(50):
            partitions = (await admin.describe_topics([name]))[0]["partitions"]
            if partitions:
                break
            await asyncio.sleep(0.1)
        assert len(partitions) == 3
    finally:
        await admin.close()


async def test_missing_broker_binary_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALF_TANSU_BIN", "/nonexistent/tansu")
    with pytest.raises(BrokerError, match="cannot find the embedded Kafka broker"):
        await EmbeddedBroker().start(timeout=5)


async def test_broker_that_dies_at_start_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "tansu"
    fake.write_text("#!/bin/sh\necho 'no such listener' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CALF_TANSU_BIN", str(fake))
    with pytest.raises(BrokerError, match=r"exited with status 3.*no such listener"):
        await EmbeddedBroker().start(timeout=5)
