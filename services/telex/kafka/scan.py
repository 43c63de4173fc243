"""Reading partitions from a start up to their current end: how state is rebuilt from a topic.

The end is ``highwater()`` after a fetch, not ``end_offsets()``: the embedded broker's
``end_offsets()`` is wrong when a batch holds several records (it answers the last batch's base
offset + 1).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

Batch = dict[TopicPartition, list[Any]]


async def refresh_metadata(consumer: AIOKafkaConsumer) -> None:
    """Fetch the cluster's metadata into ``consumer``'s own view of it, now.

    ``consumer.topics()`` fetches fresh metadata but does not store it where
    ``partitions_for_topic`` looks, and aiokafka has no public call that does: the client's
    internal ``_client`` is the only way. This is the one place that touches it, and
    ``tests/integration/test_kafka_scan.py`` fails if a new aiokafka moves it.
    """
    await consumer._client.force_metadata_update()


async def partitions_of(
    consumer: AIOKafkaConsumer, topic: str, timeout: float = 10.0
) -> list[TopicPartition]:
    """Every partition of ``topic``, waiting up to ``timeout`` seconds for a topic just created.

    On a cluster, a created topic reaches each broker's metadata a moment after the create call
    returns: an answer from another broker does not list it yet, and the client would keep that
    answer until its metadata max age (5 minutes by default). Empty when the topic still does not
    exist after ``timeout``.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        await refresh_metadata(consumer)
        partitions = consumer.partitions_for_topic(topic)
        if partitions or loop.time() >= deadline:
            return [TopicPartition(topic, p) for p in sorted(partitions or [])]
        await asyncio.sleep(0.1)


async def seek_to_log_start(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition]
) -> dict[int, int]:
    """Assign ``tps`` and move to the first offset each still holds; returns it per partition.

    The first offset retained, not 0: retention and compaction remove a log's head. Asked
    before assigning: an assigned partition's fetch would be answered first.
    """
    starts = await consumer.beginning_offsets(tps)
    consumer.assign(tps)
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
    end they have now; returns the number of records read. ``consumer`` belongs to no group.

    The partitions stay assigned (a follower goes on from there): a consumer that is done
    with them calls :func:`release`.
    """
    if not tps:
        return 0
    # An empty partition is done before any fetch: its highwater would come only with a fetch
    # response, which a broker holds for the whole fetch wait when there is nothing to send.
    # end_offsets() may undercount on the embedded broker, but never answers "empty" for a
    # partition that holds records. Asked before the partitions are assigned: assigning starts
    # a fetch, and the broker answers the next request on its connection only after it.
    begins = await consumer.beginning_offsets(tps)
    ends = await consumer.end_offsets(tps)
    consumer.assign(tps)
    if start is None:
        for tp in tps:
            consumer.seek(tp, begins[tp])
    else:
        for tp in tps:
            consumer.seek(tp, start[tp])
    remaining = {tp for tp in tps if ends[tp] > (begins[tp] if start is None else start[tp])}
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


def release(consumer: AIOKafkaConsumer) -> None:
    """Pause every assigned partition: an idle reader sends no fetch until its next read
    assigns partitions again. (Not ``unsubscribe()``: aiokafka's fetch routine can fail on a
    subscription removed while it waits for one.)"""
    consumer.pause(*consumer.assignment())


async def at_end(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> bool:
    """Whether ``consumer`` has read ``tps`` up to the end known from its last fetch."""
    for tp in tps:
        high = consumer.highwater(tp)
        if high is None or await consumer.position(tp) < high:
            return False
    return True
