"""Reading partitions from a start up to their current end: how state is rebuilt from a topic.

The end is ``highwater()`` after a fetch, not ``end_offsets()``: the embedded broker's
``end_offsets()`` is wrong when a batch holds several records (it answers the last batch's base
offset + 1).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

Batch = dict[TopicPartition, list[Any]]


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """Every partition of ``topic`` (metadata refreshed first: it may have just been created)."""
    await consumer.topics()
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]


async def seek_to_log_start(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition]
) -> dict[int, int]:
    """Assign ``tps`` and move to the first offset each still holds; returns it per partition.

    The first offset retained, not 0: retention and compaction remove a log's head.
    """
    consumer.assign(tps)
    starts = await consumer.beginning_offsets(tps)
    first = {tp.partition: int(starts.get(tp, 0)) for tp in tps}
    for tp in tps:
        consumer.seek(tp, first[tp.partition])
    return first


async def offsets_since(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], since_ms: int
) -> dict[TopicPartition, int]:
    """Per partition, the first offset of a record at or after ``since_ms``.

    Only for brokers with a time index (see :mod:`telex.kafka.capabilities`). A partition with
    no record that recent starts at its end.
    """
    found = await consumer.offsets_for_times(dict.fromkeys(tps, since_ms))
    ends = await consumer.end_offsets([tp for tp, at in found.items() if at is None])
    return {tp: (at.offset if at is not None else int(ends[tp])) for tp, at in found.items()}


async def read_to_end(
    consumer: AIOKafkaConsumer,
    tps: list[TopicPartition],
    apply: Callable[[Batch], Awaitable[None]],
    start: Mapping[TopicPartition, int] | None = None,
    max_records: int = 5000,
) -> int:
    """Assign ``tps`` and apply their records, from ``start`` (else the beginning) up to the
    end they have now; returns the number of records read. ``consumer`` belongs to no group."""
    if not tps:
        return 0
    consumer.assign(tps)
    if start is None:
        await consumer.seek_to_beginning(*tps)
    else:
        for tp in tps:
            consumer.seek(tp, start[tp])
    remaining = set(tps)
    records = 0
    while remaining:
        batch = await consumer.getmany(*remaining, timeout_ms=200, max_records=max_records)
        if batch:
            await apply(batch)
            records += sum(len(items) for items in batch.values())
        for tp in list(remaining):
            high = consumer.highwater(tp)
            if high is not None and await consumer.position(tp) >= high:
                remaining.discard(tp)
    return records


async def at_end(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> bool:
    """Whether ``consumer`` has read ``tps`` up to the end known from its last fetch."""
    for tp in tps:
        high = consumer.highwater(tp)
        if high is None or await consumer.position(tp) < high:
            return False
    return True
