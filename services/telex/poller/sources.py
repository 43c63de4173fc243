"""Sources as data: the compacted ``telex.sources`` topic, key = source id.

A record's value is the source definition as JSON; a tombstone (null value) deletes it. The
embedded broker never compacts (kafka-notes.md), and real Kafka compacts late, so every reader
keeps the last value per key and honours tombstones itself.

:class:`SourceCatalog` reads the whole topic (no consumer group) for the API and writes
changes; the pollers read it through a consumer group instead (see ``service.py``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from telex.bus import Bus, partitions_of, stop_quietly
from telex.config import SourceConfig
from telex.log import get_logger
from telex.tasks import cancel_and_wait

log = get_logger(__name__)


class SourceError(ValueError):
    """A source definition that does not validate; ``errors`` name each bad field."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors


def validate_source(data: Any) -> SourceConfig:
    """A :class:`SourceConfig` from untrusted data, or :class:`SourceError` naming the fields."""
    if not isinstance(data, dict):
        raise SourceError([{"field": "(body)", "message": "must be a JSON object"}])
    try:
        return SourceConfig.model_validate(data)
    except ValidationError as exc:
        errors = [
            {
                "field": ".".join(str(p) for p in err["loc"]) or "(body)",
                "message": err["msg"],
            }
            for err in exc.errors()
        ]
        raise SourceError(errors) from None


def encode_source(source: SourceConfig) -> bytes:
    """The record value of a source definition."""
    return orjson.dumps(source.model_dump(mode="json", exclude_none=True))


def decode_source(value: bytes | None) -> SourceConfig | None:
    """The source a record defines; ``None`` for a tombstone. Raises ``SourceError``."""
    if value is None:
        return None
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise SourceError([{"field": "(record)", "message": f"not JSON: {exc}"}]) from None
    return validate_source(data)


async def publish(producer: AIOKafkaProducer, topic: str, sources: list[SourceConfig]) -> None:
    """Write source definitions to the sources topic and wait for the acks."""
    futures = [await producer.send(topic, encode_source(s), key=s.id.encode()) for s in sources]
    for future in futures:
        await future


class SourceCatalog:
    """Every source of the topic, kept current, plus the writes of the API.

    Reads all partitions from the beginning with a group-less consumer: each API process sees
    the whole catalogue, whichever poller polls what.
    """

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.topic = bus.config.topics.sources
        self.sources: dict[str, SourceConfig] = {}
        self.caught_up = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        """True once the catalogue has read the topic to its end."""
        return self.caught_up.is_set()

    async def start(self) -> None:
        """Connect, and read the topic in the background."""
        producer = self.bus.producer()
        await producer.start()
        self._producer = producer
        consumer = self.bus.consumer(group_id=None)
        await consumer.start()
        self._consumer = consumer
        partitions = await partitions_of(consumer, self.topic)
        if not partitions:
            raise RuntimeError(f"sources topic {self.topic} does not exist")
        tps = [TopicPartition(self.topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._read(tps), name="sources:catalog")

    async def stop(self) -> None:
        """Stop reading and close the clients."""
        await cancel_and_wait(self._task)
        self._task = None
        await stop_quietly(self._consumer)
        await stop_quietly(self._producer)
        self._consumer = self._producer = None

    async def _read(self, tps: list[TopicPartition]) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        while True:
            try:
                batch = await consumer.getmany(timeout_ms=500, max_records=1000)
            except KafkaError as exc:
                log.warning("sources.catalog.read_failed", error=repr(exc))
                await asyncio.sleep(1)
                continue
            for records in batch.values():
                for record in records:
                    self._apply(record.key, record.value)
            if not self.caught_up.is_set():
                # highwater() rather than end_offsets(): the embedded broker's end offsets are
                # wrong for multi-record batches (kafka-notes.md).
                done = True
                for tp in tps:
                    high = consumer.highwater(tp)
                    if high is None or await consumer.position(tp) < high:
                        done = False
                if done:
                    self.caught_up.set()
                    log.info("sources.catalog.loaded", sources=len(self.sources))

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        source_id = key.decode("utf-8", "replace")
        try:
            source = decode_source(value)
        except SourceError as exc:
            log.warning("sources.record.invalid", source=source_id, error=str(exc))
            return
        if source is None:
            self.sources.pop(source_id, None)
        else:
            self.sources[source_id] = source

    async def put(self, source: SourceConfig) -> None:
        """Create or replace a source; visible here as soon as the broker acknowledged it."""
        assert self._producer is not None
        await publish(self._producer, self.topic, [source])
        self.sources[source.id] = source

    async def delete(self, source_id: str) -> bool:
        """Delete a source (a tombstone); ``False`` when there was no such source."""
        assert self._producer is not None
        if source_id not in self.sources:
            return False
        future = await self._producer.send(self.topic, None, key=source_id.encode())
        await future
        self.sources.pop(source_id, None)
        return True
