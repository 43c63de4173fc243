"""The gateway's wire reader: every partition of the wire, into the hub, in order.

Every gateway reads every partition of the wire with no consumer group (gateways share
nothing), from the start of what the broker retains, so a new gateway knows recent history and
any gateway can resume any client's cursor. Records read before the reader caught up with the
partitions' high-water marks are history: they fill the ring but count no latency.

When the wire is recreated (the broker lost its data), its offsets start again: the reader
reads the new wire from its start and tells every client so (see :meth:`WireReader.restart`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from telex import metrics
from telex.config import Config
from telex.events import now_ms
from telex.gateway.closes import CLOSE_RESTART
from telex.gateway.frames import control, sse_message, ws_frame
from telex.gateway.hub import Entry, Hub
from telex.kafka import Batch, Clients, fetch_forever, stop_quietly
from telex.kafka.scan import partitions_of, seek_to_log_start
from telex.log import get_logger
from telex.tasks import cancel_and_wait

log = get_logger(__name__)

PUBLISH_CHUNK = 64  # events per fan-out step: bounds one write per connection
_FAR = 1 << 62  # "live from" a partition whose high-water mark is not known yet


def decode_event(value: bytes | None, partition: int, offset: int) -> dict[str, Any] | None:
    """The event of a wire record, or None for a tombstone or a record that is not a JSON
    object (logged: the gateway skips it and keeps reading)."""
    if value is None:
        return None
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError:
        event = None
    if not isinstance(event, dict):
        log.warning("gateway.bad_record", partition=partition, offset=offset)
        return None
    return event


def observe_latency(event: dict[str, Any], produced: int, now: int) -> int:
    """Observe the wire hop (the record's timestamp is when the processor produced it);
    return when the poller saw the update, 0 when the event does not say."""
    if produced > 0:
        metrics.HOP_SECONDS.labels("wire_gateway").observe(max(0, now - produced) / 1000)
    try:
        return int(event["data"]["timings"]["detected_ms"])
    except (KeyError, TypeError, ValueError):
        return 0  # not a telex event: nothing to measure.


class WireReader:
    """Reads the wire into :class:`~telex.gateway.hub.Hub` and knows where it starts."""

    def __init__(self, config: Config, clients: Clients, hub: Hub) -> None:
        self.topic = config.topics.wire
        self.fetch_max_wait_ms = config.gateway.fetch_max_wait_ms
        self.clients = clients
        self.hub = hub
        # log_start[p]: the first offset the broker still holds on partition p.
        self.log_start: dict[int, int] = {}
        self.caught_up = False
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._live_from: dict[int, int] = {}
        self._recreated = False

    async def start(self) -> None:
        """Seek every partition of the wire to its start and read from there in a task."""
        wait = self.fetch_max_wait_ms
        consumer = self.clients.consumer(
            group_id=None, **({} if wait is None else {"fetch_max_wait_ms": wait})
        )
        await consumer.start()
        tps = await partitions_of(consumer, self.topic)
        if not tps:
            await stop_quietly(consumer)
            raise RuntimeError(f"wire topic {self.topic} does not exist")
        self.log_start = await seek_to_log_start(consumer, tps)
        self.hub.set_partitions(self.log_start)
        self._consumer = consumer
        self._task = asyncio.create_task(
            fetch_forever(
                consumer, self._on_wire, name="gateway-wire", timeout_ms=200, max_records=2000
            ),
            name="gateway-wire",
        )
        log.info("gateway.started", partitions=len(tps))

    async def stop(self) -> None:
        """Stop reading."""
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        await stop_quietly(self._consumer)
        self._consumer = None

    async def start_over(self) -> None:
        """The broker lost its data: the reader starts over on the new wire at its next round."""
        self._recreated = True

    async def _on_wire(self, batch: Batch) -> None:
        """Publish a batch of wire events to the hub (one round of the wire reader)."""
        hub = self.hub
        if self._recreated:
            # The batch may hold either wire's records: read the new one from its start.
            await self.restart()
            return
        if any(
            records and records[0].offset < hub.read_positions.get(tp.partition, 0)
            for tp, records in batch.items()
        ):
            # Offsets went back: the wire is a new topic (the client reset its position
            # after the old one vanished) even if the reset signal has not said so yet.
            self._recreated = True
            return
        if not self.caught_up:
            self._catch_up()
        entries = self._entries(batch)
        for i in range(0, len(entries), PUBLISH_CHUNK):
            hub.publish(entries[i : i + PUBLISH_CHUNK])
            await asyncio.sleep(0)  # let connections read and write between chunks
        hub.settle()

    def _catch_up(self) -> None:
        """Note each partition's high-water mark: records from there on are live."""
        consumer = self._consumer
        assert consumer is not None
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is not None:
                self._live_from.setdefault(tp.partition, high)
        self.caught_up = len(self._live_from) == len(self.hub.read_positions)

    def _entries(self, batch: Batch) -> list[Entry]:
        """The hub entries of a batch's events; records without one are skipped."""
        hub = self.hub
        entries: list[Entry] = []
        now = now_ms()
        for tp, records in batch.items():
            live_from = self._live_from.get(tp.partition, _FAR)
            for record in records:
                event = decode_event(record.value, tp.partition, record.offset)
                if event is None:
                    hub.skip(tp.partition, record.offset)
                    continue
                metrics.WIRE_CONSUMED.inc()
                live = record.offset >= live_from
                entry = hub.make_entry(
                    tp.partition,
                    record.offset,
                    event,
                    record.value,
                    record.timestamp if live else 0,
                )
                entries.append(entry)
                if live:
                    entry.received_ms = now
                    entry.detected_ms = observe_latency(event, record.timestamp, now)
        return entries

    async def restart(self) -> None:
        """Read the new wire from its start and tell every client so.

        The old wire's offsets mean nothing on the new one, so no cursor can be honoured
        across: live clients get a ``resync`` frame with the new wire's start as their cursor
        (what follows is the new wire, which the pollers fill again with what their sources
        show); clients that were catching up are closed to reconnect, and a cursor of the
        old wire gets a resync then (it is ahead of the new one).
        """
        consumer = self._consumer
        assert consumer is not None
        self._recreated = False
        tps = sorted(consumer.assignment())
        try:
            starts = await seek_to_log_start(consumer, tps)
        except KafkaError as exc:
            log.warning("gateway.wire_restart_failed", error=repr(exc))
            self._recreated = True
            await asyncio.sleep(1.0)
            return
        hub = self.hub
        self.log_start = dict(starts)
        self._live_from = dict(starts)
        hub.ring.entries.clear()
        hub.set_partitions(starts)
        cursor = hub.head_cursor()
        payload = control(
            "resync",
            reason="the wire was recreated (the broker lost its data): events continue from "
            "its new start",
            cursor=cursor,
        )
        live = [conn for conn in hub.conns if hub.is_live(conn)]
        metrics.RESYNCS.inc(len(live))
        hub.broadcast(ws_frame(payload), sse_message(payload, cursor, "resync"), live)
        for conn in list(hub.conns):
            if conn not in live and conn.session is not None and not conn.closing:
                conn.session.close(CLOSE_RESTART, "the wire was recreated: reconnect")
        log.warning("gateway.wire_recreated", resynced=len(live))
