"""The table view of a topic: read it to its end, then keep applying records as they come.

How readers of compacted topics (sources, webhook subscriptions) and of logs (delivery
attempts) stay current. The embedded broker never compacts and Kafka compacts late, so a reader
keeps the last value per key and honours tombstones (``value is None``) itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer

from telex.kafka.connect import stop_quietly
from telex.kafka.consume import fetch_forever
from telex.kafka.scan import Batch, partitions_of, read_to_end, release
from telex.log import get_logger
from telex.tasks import cancel_and_wait

if TYPE_CHECKING:
    from telex.kafka.clients import Clients

log = get_logger(__name__)


def latest_per_key(records: list[Any], rows: dict[bytes, Any]) -> None:
    """Fold ``records`` into ``rows``: the last value per key, a tombstone removes the key."""
    for record in records:
        if record.key is None:
            continue
        if record.value is None:
            rows.pop(record.key, None)
        else:
            rows[record.key] = record.value


async def read_table(consumer: AIOKafkaConsumer, topic: str) -> dict[bytes, Any]:
    """The last value per key of ``topic`` as it is now (``consumer`` belongs to no group)."""
    tps = await partitions_of(consumer, topic)
    if not tps:
        raise LookupError(f"topic {topic} does not exist")
    rows: dict[bytes, Any] = {}

    async def fold(batch: Batch) -> None:
        for records in batch.values():
            latest_per_key(records, rows)

    await read_to_end(consumer, tps, fold)
    release(consumer)
    return rows


async def scan_topic(clients: Clients, topic: str, apply: Callable[[Any], None]) -> None:
    """Apply every record ``topic`` holds now, once, with a consumer of its own."""
    consumer = clients.reader()
    await consumer.start()
    try:
        tps = await partitions_of(consumer, topic)
        if not tps:
            raise LookupError(f"topic {topic} does not exist")

        async def each(batch: Batch) -> None:
            for records in batch.values():
                for record in records:
                    apply(record)

        await read_to_end(consumer, tps, each)
    finally:
        await stop_quietly(consumer)


class TopicFollower:
    """Reads a whole topic (every partition, no group) to its end, then follows it.

    ``apply`` gets every record in partition order, tombstones included.
    """

    def __init__(
        self, clients: Clients, topic: str, apply: Callable[[Any], None], name: str
    ) -> None:
        self.clients = clients
        self.topic = topic
        self.name = name
        self.caught_up = asyncio.Event()
        self._apply = apply
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Read the topic to its end, then follow it in the background."""
        consumer = self._consumer = self.clients.consumer(group_id=None)
        await consumer.start()
        tps = await partitions_of(consumer, self.topic)
        if not tps:
            raise RuntimeError(f"topic {self.topic} does not exist")
        await read_to_end(consumer, tps, self._apply_batch)
        self.caught_up.set()
        self._task = asyncio.create_task(
            fetch_forever(consumer, self._apply_batch, name=self.name), name=self.name
        )

    async def stop(self) -> None:
        """Stop following and close the consumer."""
        await cancel_and_wait(self._task)
        self._task = None
        await stop_quietly(self._consumer)
        self._consumer = None

    async def _apply_batch(self, batch: Batch) -> None:
        for records in batch.values():
            for record in records:
                self._apply(record)
