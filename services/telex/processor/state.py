"""Dedup state of one raw partition, and its recovery from the wire.

The wire mirrors the raw topic partition for partition (the processor writes the events of raw
partition *p* to wire partition *p*), so the wire itself is the changelog of this state: reading
wire partition *p* tells exactly which content of which entry has reached the wire. Recovering
from it closes the window between an event being acknowledged and its input offset being
committed: a re-processed record whose event is already on the wire is recognised and dropped.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from telex.log import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class Known:
    """What the wire holds for one update id."""

    content_hash: str
    first_seen_ms: int


class PartitionState:
    """Latest known content per update id, bounded in size (oldest entries forgotten first)."""

    def __init__(self, max_entries: int = 200_000) -> None:
        self.max_entries = max_entries
        self._known: OrderedDict[str, Known] = OrderedDict()

    def __len__(self) -> int:
        return len(self._known)

    def get(self, update_id: str) -> Known | None:
        """The content the wire last carried for ``update_id``."""
        return self._known.get(update_id)

    def put(self, update_id: str, known: Known) -> None:
        """Record what the wire now carries for ``update_id``."""
        self._known[update_id] = known
        self._known.move_to_end(update_id)
        while len(self._known) > self.max_entries:
            self._known.popitem(last=False)

    def apply_wire_record(self, value: bytes | None) -> None:
        """Fold one wire event into the state (used during recovery)."""
        if value is None:
            return
        try:
            event = orjson.loads(value)
            data = event["data"]
            first = data.get("timings", {}).get("first_seen_ms") or 0
            self.put(data["id"], Known(data["content_hash"], int(first)))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            # Something else wrote to the wire; it is not ours to dedup against.
            log.warning("state.restore.skipped_record")


async def restore(
    consumer: AIOKafkaConsumer, wire_topic: str, partitions: list[int], max_entries: int
) -> dict[int, PartitionState]:
    """Read wire partitions from their start to their current end into fresh states.

    ``consumer`` must belong to no group. The end is the high watermark reported by fetches
    (``end_offsets`` is unreliable on the embedded broker, see kafka-notes.md).
    """
    states = {p: PartitionState(max_entries) for p in partitions}
    if not partitions:
        return states
    tps = [TopicPartition(wire_topic, p) for p in partitions]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    remaining = set(tps)
    records = 0
    while remaining:
        batch = await consumer.getmany(*remaining, timeout_ms=200, max_records=5000)
        for tp, items in batch.items():
            for record in items:
                states[tp.partition].apply_wire_record(record.value)
            records += len(items)
        for tp in list(remaining):
            high = consumer.highwater(tp)
            if high is not None and await consumer.position(tp) >= high:
                remaining.discard(tp)
    log.info("state.restored", partitions=",".join(map(str, partitions)), records=records)
    return states
