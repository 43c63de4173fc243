"""Dedup state of one raw partition, and its recovery from the wire.

The wire mirrors the raw topic partition for partition (the processor writes the events of raw
partition *p* to wire partition *p*), so the wire itself is the changelog of this state: reading
wire partition *p* tells exactly which content of which entry has reached the wire. Recovering
from it closes the window between an event being acknowledged and its input offset being
committed: a re-processed record whose event is already on the wire is recognised and dropped.
A separate changelog topic could not do that, since a crash between writing the event and
writing the changelog record would leave them disagreeing.

Each wire event also carries, in the ``telex-raw-offset`` header, the offset of the raw record
it came from. The state is "the latest content per update", which is only right for the records
*after* the last one that reached the wire: re-processing an older record against it would take
a superseded edit for a new revision (the group can hand a partition over before the previous
owner's commit lands). So the restored state also knows the highest raw offset already done, and
the processor passes over every record up to it.

The state is bounded twice: by size (least recently written entries go first) and by event time
(an entry older than ``ttl_ms`` behind the newest event seen is forgotten). Both depend only on
the sequence of events, never on the wall clock, so a state restored from the wire is the very
state the previous owner had.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from telex import metrics
from telex.kafka.scan import Batch, offsets_since, read_to_end, release
from telex.log import get_logger

log = get_logger(__name__)


RAW_OFFSET_HEADER = "telex-raw-offset"


@dataclass(frozen=True)
class Known:
    """What the wire holds for one update id."""

    content_hash: str
    first_seen_ms: int
    event_ms: int = 0
    story_id: str | None = None
    title: str | None = None
    # Kept for the readable diff of the next revision.
    text: str | None = None
    deleted: bool = False


def event_ms_of(data: dict[str, Any]) -> int:
    """An update's event time in unix ms: when it was published, else when it was first seen."""
    published = data.get("published")
    if isinstance(published, str):
        try:
            return int(datetime.fromisoformat(published).timestamp() * 1000)
        except ValueError:
            pass
    timings = data.get("timings") or {}
    return int(timings.get("first_seen_ms") or timings.get("detected_ms") or 0)


class PartitionState:
    """Latest known content per update id, bounded in size and in event time."""

    def __init__(self, max_entries: int = 200_000, ttl_ms: int | None = None) -> None:
        self.max_entries = max_entries
        self.ttl_ms = ttl_ms
        self._known: OrderedDict[str, Known] = OrderedDict()
        self._watermark = 0
        # The highest raw offset whose event is on the wire (-1: none known).
        self.done_offset = -1

    def __len__(self) -> int:
        return len(self._known)

    def get(self, update_id: str) -> Known | None:
        """The content the wire last carried for ``update_id``."""
        return self._known.get(update_id)

    def put(self, update_id: str, known: Known) -> None:
        """Record what the wire now carries for ``update_id``."""
        self._known[update_id] = known
        self._known.move_to_end(update_id)
        self._watermark = max(self._watermark, known.event_ms)
        self._evict()

    def _evict(self) -> None:
        horizon = self._watermark - self.ttl_ms if self.ttl_ms is not None else None
        # Oldest-written first: entries are written in roughly event-time order, and an entry
        # behind a younger one waits for it (the size bound still holds).
        while self._known:
            update_id, known = next(iter(self._known.items()))
            if len(self._known) > self.max_entries:
                reason = "size"
            elif horizon is not None and known.event_ms < horizon:
                reason = "ttl"
            else:
                break
            del self._known[update_id]
            metrics.STATE_EVICTIONS.labels("dedup", reason).inc()

    def apply_wire_record(
        self, value: bytes | None, headers: Sequence[tuple[str, bytes]] = ()
    ) -> dict[str, Any] | None:
        """Fold one wire event (and its headers) into the state, during recovery; returns its
        data."""
        raw_offset = source_offset(headers)
        if raw_offset is not None:
            self.done_offset = max(self.done_offset, raw_offset)
        if value is None:
            return None
        try:
            event = orjson.loads(value)
            data = event["data"]
            known = Known(
                content_hash=data["content_hash"],
                first_seen_ms=int(data.get("timings", {}).get("first_seen_ms") or 0),
                event_ms=event_ms_of(data),
                story_id=data.get("story_id"),
                title=data.get("title"),
                text=data.get("text"),
                deleted=event.get("type") == "telex.update.deleted",
            )
            self.put(data["id"], known)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            # Something else wrote to the wire; it is not ours to dedup against.
            log.warning("state.restore.skipped_record")
            return None
        result: dict[str, Any] = data
        return result


def source_headers(raw_offset: int) -> list[tuple[str, bytes]]:
    """The headers of a wire event made from the raw record at ``raw_offset``."""
    return [(RAW_OFFSET_HEADER, str(raw_offset).encode())]


def source_offset(headers: Sequence[tuple[str, bytes]]) -> int | None:
    """The raw offset a wire event came from, if its headers say (older events do not)."""
    for name, value in headers:
        if name == RAW_OFFSET_HEADER:
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def restore(
    consumer: AIOKafkaConsumer,
    wire_topic: str,
    partitions: list[int],
    new_state: Callable[[], PartitionState],
    on_event: Callable[[int, dict[str, Any]], None] | None = None,
    since_ms: int | None = None,
) -> dict[int, PartitionState]:
    """Read wire partitions up to their current end into fresh states.

    From the records written since ``since_ms`` where the broker can look offsets up by time,
    else from each partition's start. ``consumer`` must belong to no group. ``on_event`` sees
    every restored event's data (the story index is rebuilt from it).
    """
    states = {p: new_state() for p in partitions}
    if not partitions:
        return states
    tps = [TopicPartition(wire_topic, p) for p in partitions]
    start = None if since_ms is None else await offsets_since(consumer, tps, since_ms)

    async def fold(batch: Batch) -> None:
        # Decoding and re-indexing thousands of events is CPU work: off the event loop.
        await asyncio.to_thread(_apply, states, batch, on_event)

    records = await read_to_end(consumer, tps, fold, start=start)
    release(consumer)
    log.info(
        "state.restored",
        partitions=",".join(map(str, partitions)),
        records=records,
        window="whole" if since_ms is None else "since",
    )
    return states


def _apply(
    states: dict[int, PartitionState],
    batch: Batch,
    on_event: Callable[[int, dict[str, Any]], None] | None,
) -> None:
    for tp, items in batch.items():
        for record in items:
            data = states[tp.partition].apply_wire_record(record.value, record.headers)
            if data is not None and on_event is not None:
                on_event(tp.partition, data)
