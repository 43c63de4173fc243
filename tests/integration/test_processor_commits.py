"""When the processor commits: in the background at its interval, and at once when it hands
its partitions over or stops, so the next owner starts where it stopped."""

from __future__ import annotations

from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from telex.config import Config
from telex.kafka import Clients, ensure_topics, required_topics
from telex.processor.service import Processor
from tests.conftest import Broker, sample

from .test_pipeline import produce_in_order, wait_for
from .test_processor_service import raw


async def committed(config: Config, bootstrap: str) -> dict[int, int | None]:
    """The processor group's committed offset of each raw partition."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=config.processor.group_id, enable_auto_commit=False
    )
    await consumer.start()
    try:
        return {
            p: await consumer.committed(TopicPartition(config.topics.raw, p))
            for p in range(config.topics.partitions)
        }
    finally:
        await consumer.stop()


async def ends(config: Config, bootstrap: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(config.topics.raw, p) for p in range(config.topics.partitions)]
        return {tp.partition: o for tp, o in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


async def produce(config: Config, bootstrap: str, first: int, count: int) -> None:
    """Updates ``first`` .. ``first + count - 1`` of seven sources, spread over the partitions."""
    records = [
        (f"s{n % 7}".encode(), raw(f"s{n % 7}", f"e{n}", f"update {n} of the day"))
        for n in range(first, first + count)
    ]
    await produce_in_order(bootstrap, config.topics.raw, records)


def produced() -> float:
    """Events acknowledged on the wire (counted when their batch is finished)."""
    return sample("telex_processor_events_produced_total", type="telex.update.created")


async def test_commits_wait_for_the_interval_but_not_at_a_hand_over_or_a_stop(
    broker: Broker, config_factory: Callable[..., Config]
) -> None:
    # An interval far longer than the test: every commit seen comes from a hand-over or a stop.
    config = config_factory(broker.bootstrap, TELEX_KAFKA_COMMIT_INTERVAL_MS="60000")
    clients = Clients(config, broker.bootstrap)
    await ensure_topics(clients, required_topics(config.topics))
    first = Processor(config, Clients(config, broker.bootstrap))
    await first.start()
    second: Processor | None = None
    stopped: list[Processor] = []
    before = produced()
    try:
        await wait_for(lambda: first.ready, 60)
        await produce(config, broker.bootstrap, 0, 40)
        target = await ends(config, broker.bootstrap)
        assert sum(target.values()) == 40
        await wait_for(lambda: produced() >= before + 40, 60)
        # Every batch is finished: nothing is committed before the interval.
        assert all(v is None for v in (await committed(config, broker.bootstrap)).values())

        # A second member joins: the first hands its partitions over and commits first.
        second = Processor(config, Clients(config, broker.bootstrap))
        await second.start()
        await wait_for(lambda: first.ready and second.ready, 60)
        assert await committed(config, broker.bootstrap) == target

        # More records; a stop commits what the stopping member finished.
        await produce(config, broker.bootstrap, 40, 40)
        target = await ends(config, broker.bootstrap)
        await wait_for(lambda: produced() >= before + 80, 60)
        for member in (first, second):
            stopped.append(member)
            await member.stop()
        assert await committed(config, broker.bootstrap) == target
    finally:
        for member in (first, second):
            if member is not None and member not in stopped:
                await member.stop()
