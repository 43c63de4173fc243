"""Sources as data: the compacted ``telex.sources`` topic, key = source id.

A record's value is the source definition as JSON; a tombstone (null value) deletes it. The
embedded broker never compacts, and real Kafka compacts late, so every reader
keeps the last value per key and honours tombstones itself.

:class:`SourceCatalog` reads the whole topic (no consumer group) for the API and writes
changes; the pollers read it through a consumer group instead (see ``service.py``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from pydantic import ValidationError

from telex.config import Checks, SourceConfig
from telex.kafka import Clients, Producer, TopicFollower, stop_quietly
from telex.log import get_logger
from telex.poller.selectors import compile_selector

log = get_logger(__name__)

_CHECKS = Checks(selector=compile_selector)


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
        return SourceConfig.model_validate(data, context=_CHECKS)
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


async def publish(producer: Producer, topic: str, sources: list[SourceConfig]) -> None:
    """Write source definitions to the sources topic and wait for the acks."""
    futures = [await producer.send(topic, encode_source(s), key=s.id.encode()) for s in sources]
    for future in futures:
        await future


class SourceCatalog:
    """Every source of the topic, kept current, plus the writes of the API.

    Follows the whole topic with no consumer group: each API process sees the whole
    catalogue, whichever poller polls what.
    """

    def __init__(self, clients: Clients) -> None:
        self.clients = clients
        self.topic = clients.config.topics.sources
        self.sources: dict[str, SourceConfig] = {}
        self._producer: Producer | None = None
        self._follower = TopicFollower(
            clients, self.topic, lambda r: self._apply(r.key, r.value), "sources-catalog"
        )

    @property
    def caught_up(self) -> asyncio.Event:
        """Set once the catalogue has read the topic to its end."""
        return self._follower.caught_up

    @property
    def ready(self) -> bool:
        """True once the catalogue has read the topic to its end."""
        return self.caught_up.is_set()

    async def start(self) -> None:
        """Connect, read the topic to its end and follow it."""
        producer = self.clients.producer_for("poller")
        await producer.start()
        self._producer = producer
        await self._follower.start()
        log.info("sources.catalog.loaded", sources=len(self.sources))

    async def stop(self) -> None:
        """Stop following and close the clients."""
        await self._follower.stop()
        await stop_quietly(self._producer)
        self._producer = None

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
