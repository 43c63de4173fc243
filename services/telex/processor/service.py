"""Consume raw updates, normalise and dedup them, produce CloudEvents to the wire.

Consume -> produce -> commit: a batch's input offsets are committed only after every output of
the batch was acknowledged. A crash re-processes; the dedup state (restored from the wire, see
:mod:`telex.processor.state`) makes re-processing emit nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from telex import metrics
from telex.bus import Bus, stop_quietly
from telex.config import Config
from telex.events import (
    EventType,
    PoisonRecord,
    RawUpdate,
    cloudevent,
    decode_raw,
    encode,
    now_ms,
)
from telex.log import get_logger
from telex.processor.state import Known, PartitionState, restore
from telex.timeparse import iso_from_ms, iso_utc, parse_date, resolve

log = get_logger(__name__)


def published_time(raw: RawUpdate) -> str | None:
    """The entry's publication time in UTC ISO 8601, from what the poller saw."""
    page_date = parse_date(raw["page_date"]) if raw["page_date"] else None
    for candidate in (raw["published"], raw["time_raw"]):
        moment = (
            resolve(candidate, page_date=page_date, page_tz=raw["page_tz"]) if candidate else None
        )
        if moment is not None:
            return iso_utc(moment)
    return None


def process(raw: RawUpdate, state: PartitionState, processed_ms: int) -> dict[str, Any] | None:
    """The wire event for a raw update, or ``None`` when the wire already carries it."""
    known = state.get(raw["id"])
    if known is not None and known.content_hash == raw["content_hash"]:
        return None
    type_: EventType = "telex.update.revised" if known is not None else "telex.update.created"
    first_seen = known.first_seen_ms if known is not None else raw["detected_ms"]
    published = published_time(raw)
    data: dict[str, Any] = {
        "id": raw["id"],
        "source_id": raw["source_id"],
        "source_url": raw["source_url"],
        "entry_id": raw["entry_id"],
        "url": raw["url"],
        "title": raw["title"],
        "text": raw["text"],
        "html": raw["html"],
        "time_raw": raw["time_raw"],
        "published": published,
        "content_hash": raw["content_hash"],
        "previous_hash": known.content_hash if known is not None else None,
        "timings": {
            "first_seen_ms": first_seen,
            "detected_ms": raw["detected_ms"],
            "produced_ms": raw.get("produced_ms", raw["detected_ms"]),
            "processed_ms": processed_ms,
        },
    }
    time_iso = published or iso_from_ms(raw["detected_ms"])
    state.put(raw["id"], Known(raw["content_hash"], first_seen))
    return cloudevent(type_, data, time_iso=time_iso, source_id=raw["source_id"])


class Processor(ConsumerRebalanceListener):  # type: ignore[misc]
    """The processor stage: one consumer-group member."""

    def __init__(self, config: Config, bus: Bus) -> None:
        self.config = config
        self.bus = bus
        self._consumer: AIOKafkaConsumer | None = None
        self._restorer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._states: dict[int, PartitionState] = {}
        # Held while a batch is processed and committed, and by the rebalance callbacks, so a
        # partition is never handed over in the middle of a batch.
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._assigned = False

    @property
    def ready(self) -> bool:
        """True once partitions are assigned and their state restored."""
        return self._assigned

    async def start(self) -> None:
        """Connect and start processing; joining the group continues in the background."""
        topics = self.config.topics
        self._producer = self.bus.producer()
        await self._producer.start()
        self._restorer = self.bus.consumer(group_id=None)
        await self._restorer.start()
        self._consumer = self.bus.consumer(group_id=self.config.processor.group_id)
        self._consumer.subscribe([topics.raw], listener=self)
        self._task = asyncio.create_task(self._run(), name="processor")
        log.info("processor.started", group=self.config.processor.group_id)

    async def stop(self) -> None:
        """Stop processing; the current batch is abandoned uncommitted (it will be re-done)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await stop_quietly(self._consumer)
        await stop_quietly(self._restorer)
        await stop_quietly(self._producer)
        self._consumer = self._restorer = self._producer = None

    # Rebalance listener ------------------------------------------------------------------

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        """Wait for the batch in progress to be committed, then forget the revoked state."""
        async with self._lock:
            for tp in revoked:
                self._states.pop(tp.partition, None)
            self._assigned = False

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        """Restore the state of newly assigned partitions before any of their records run."""
        assert self._restorer is not None
        async with self._lock:
            partitions = sorted(tp.partition for tp in assigned if tp.partition not in self._states)
            restored = await restore(
                self._restorer, self.config.topics.wire, partitions, max_entries=200_000
            )
            self._states.update(restored)
            self._assigned = True
            log.info(
                "processor.assigned", partitions=",".join(str(tp.partition) for tp in assigned)
            )

    # Processing --------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._consumer is not None
        # Joining a group takes seconds (a JoinGroup waits for other members); readiness
        # says when it is done, and the rest of the process need not wait for it.
        await self._consumer.start()
        while True:
            try:
                batch = await self._consumer.getmany(
                    timeout_ms=500, max_records=self.config.processor.max_batch
                )
                if batch:
                    async with self._lock:
                        await self._handle(batch)
            except KafkaError as exc:
                log.warning("processor.batch_failed", error=repr(exc))
                await self._rewind()
                await asyncio.sleep(1.0)

    async def _rewind(self) -> None:
        """After a failed batch: forget in-memory state and go back to the committed offsets.

        The failed batch may have updated the state for events that never reached the wire;
        re-reading the wire is the only truth.
        """
        assert self._consumer is not None and self._restorer is not None
        async with self._lock:
            try:
                assignment = sorted(self._consumer.assignment())
                self._states = await restore(
                    self._restorer,
                    self.config.topics.wire,
                    [tp.partition for tp in assignment],
                    max_entries=200_000,
                )
                for tp in assignment:
                    committed = await self._consumer.committed(tp)
                    if committed is None:
                        await self._consumer.seek_to_beginning(tp)
                    else:
                        self._consumer.seek(tp, committed)
            except KafkaError as exc:
                log.warning("processor.rewind_failed", error=repr(exc))

    async def _handle(self, batch: dict[TopicPartition, list[Any]]) -> None:
        assert self._producer is not None and self._consumer is not None
        topics = self.config.topics
        pending = []
        offsets: dict[TopicPartition, int] = {}
        processed_ms = now_ms()
        for tp, records in batch.items():
            state = self._states.get(tp.partition)
            if state is None:
                continue  # revoked while we waited for the lock; its new owner does it.
            for record in records:
                metrics.RAW_CONSUMED.inc()
                offsets[tp] = record.offset + 1
                try:
                    raw = decode_raw(record.value)
                except PoisonRecord as poison:
                    pending.append(await self._dead_letter(tp, record, poison.reason))
                    continue
                event = process(raw, state, processed_ms)
                if event is None:
                    metrics.DUPLICATES.inc()
                    continue
                pending.append(
                    await self._producer.send(
                        topics.wire, encode(event), key=record.key, partition=tp.partition
                    )
                )
                metrics.EVENTS_PRODUCED.labels(event["type"]).inc()
        if pending:
            await asyncio.gather(*pending)
        if offsets:
            try:
                await self._consumer.commit(offsets)
            except CommitFailedError as exc:
                # The group rebalanced under us: the new owner re-processes from the last
                # commit and the wire-restored state drops what we already produced.
                log.warning("processor.commit_failed", error=repr(exc))

    async def _dead_letter(self, tp: TopicPartition, record: Any, reason: str) -> Any:
        assert self._producer is not None
        metrics.DLQ.labels("processor").inc()
        log.warning(
            "processor.dead_letter",
            topic=tp.topic,
            partition=tp.partition,
            offset=record.offset,
            reason=reason,
        )
        headers = [
            ("telex.reason", reason.encode()),
            ("telex.stage", b"processor"),
            ("telex.topic", tp.topic.encode()),
            ("telex.partition", str(tp.partition).encode()),
            ("telex.offset", str(record.offset).encode()),
        ]
        return await self._producer.send(
            self.config.topics.dlq, record.value, key=record.key, headers=headers
        )
