"""The Kafka layer's partition listing on the Apache Kafka cluster.

``refresh_metadata`` reaches into aiokafka's internal client: these tests fail if a new aiokafka
moves or changes it, or if a topic created after a consumer started stays invisible to it.
"""

from __future__ import annotations

from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from telex.config import Config
from telex.kafka import Clients, TopicSpec, ensure_topics
from telex.kafka.scan import partitions_of, refresh_metadata
from tests.conftest import Broker


async def test_refresh_metadata_shows_a_topic_created_after_the_consumer_started(
    broker: Broker, config_factory: Callable[..., Config]
) -> None:
    config = config_factory(broker.bootstrap)
    topic = config.topics.raw + ".late"
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        assert consumer.partitions_for_topic(topic) is None
        await ensure_topics(Clients(config, broker.bootstrap), [TopicSpec(topic, 3)])
        # The consumer's own view of the topic, not just a fresh answer from some broker.
        for _ in range(100):
            await refresh_metadata(consumer)
            if consumer.partitions_for_topic(topic):
                break
        assert consumer.partitions_for_topic(topic) == {0, 1, 2}
    finally:
        await consumer.stop()


async def test_partitions_of_a_topic_just_created_and_of_a_missing_one(
    broker: Broker, config_factory: Callable[..., Config]
) -> None:
    config = config_factory(broker.bootstrap)
    topic = config.topics.raw + ".fresh"
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await ensure_topics(Clients(config, broker.bootstrap), [TopicSpec(topic, 2)])
        assert await partitions_of(consumer, topic, timeout=30) == [
            TopicPartition(topic, 0),
            TopicPartition(topic, 1),
        ]
        assert await partitions_of(consumer, topic + ".missing", timeout=0.5) == []
    finally:
        await consumer.stop()
