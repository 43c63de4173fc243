"""A processor that re-reads raw records whose events are already on the wire emits nothing.

That happens whenever a partition changes hands before its owner's last commit lands (the group
rebalanced under the commit, or the owner died between the produce and the commit). The test
makes it happen on purpose: after one processor has done everything, the group's committed
offsets are moved back to the start, and a second processor takes over.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from telex.config import Config
from telex.events import content_hash
from telex.kafka import Clients, ensure_topics, required_topics
from telex.processor.service import Processor
from tests.conftest import Broker

from .test_pipeline import produce_in_order, read_topic
from .test_processor_service import raw as raw_update

TEXT = "The ministry said grain exports would resume through the port on Monday morning."


def raw(entry: str, text: str) -> bytes:
    return raw_update("rt", entry, text)


async def wire_entries(bootstrap: str, topic: str) -> list[tuple[str, str, str]]:
    return [
        (e["type"], e["data"]["entry_id"], e["data"]["content_hash"])
        for e in (orjson.loads(r.value) for r in await read_topic(bootstrap, topic))
    ]


async def rewind_group(bootstrap: str, config: Config) -> None:
    """Commit offset 0 on every raw partition for the processor's group (no member is alive)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=config.processor.group_id,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(config.topics.raw, p) for p in range(config.topics.partitions)]
        consumer.assign(tps)
        await consumer.commit(dict.fromkeys(tps, 0))
    finally:
        await consumer.stop()


async def run_until(config: Config, bootstrap: str, expected: int, then: list[bytes]) -> None:
    """One processor, in process: produce ``then``, wait until the wire holds ``expected``."""
    processor = Processor(config, Clients(config, bootstrap))
    await processor.start()
    try:
        # One key: one raw partition, processed in this order.
        await produce_in_order(bootstrap, config.topics.raw, [(b"rt", v) for v in then])
        wire: list[tuple[str, str, str]] = []

        async def grown() -> bool:
            wire[:] = await wire_entries(bootstrap, config.topics.wire)
            return len(wire) >= expected

        await wait_until(grown, 60)
    finally:
        await processor.stop()


async def wait_until(predicate: Callable[[], Awaitable[bool]], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.2)


async def test_replayed_records_emit_nothing_twice(
    broker: Broker, config_factory: Callable[..., Config]
) -> None:
    config = config_factory(broker.bootstrap)
    await ensure_topics(Clients(config, broker.bootstrap), required_topics(config.topics))
    edited = TEXT + " Officials later confirmed the first convoy had left."
    first_run = [raw("e1", TEXT), raw("e2", TEXT[::-1]), raw("e1", edited), raw("e2", TEXT[::-1])]
    await run_until(config, broker.bootstrap, 3, first_run)

    # The commits are lost: the next owner reads the partition again from its start. The
    # sentinel comes after everything replayed, on the same partition: once its event is on
    # the wire, every replayed record has been decided.
    await rewind_group(broker.bootstrap, config)
    await run_until(config, broker.bootstrap, 4, [raw("sentinel", TEXT.upper())])

    wire = Counter(await wire_entries(broker.bootstrap, config.topics.wire))
    assert wire == Counter(
        {
            ("telex.update.created", "e1", content_hash(None, TEXT)): 1,
            ("telex.update.created", "e2", content_hash(None, TEXT[::-1])): 1,
            ("telex.update.revised", "e1", content_hash(None, edited)): 1,
            ("telex.update.created", "sentinel", content_hash(None, TEXT.upper())): 1,
        }
    )
