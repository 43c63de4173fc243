"""The whole pipeline on the real broker: replay page -> poller -> raw -> processor -> wire ->
gateway -> a real WebSocket client."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import websockets
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from jsonschema import Draft202012Validator

from telex.config import Config
from telex.gateway.cursor import decode_cursor
from telex.kafka.scan import partitions_of
from telex.poller.service import Poller
from telex.replay.seed import SeedBlog
from telex.runtime import REPLAY_SOURCE_ID, started
from tests.conftest import Broker, sample

EXPECTED_TIMES = [
    "2024-01-18T08:29:00Z", "2024-01-18T08:46:00Z", "2024-01-18T08:48:00Z",
    "2024-01-18T08:57:00Z", "2024-01-18T09:18:00Z", "2024-01-18T09:24:00Z",
    "2024-01-18T09:43:00Z", "2024-01-18T10:11:00Z", "2024-01-18T10:43:00Z",
    "2024-01-18T10:46:00Z",
]  # fmt: skip


async def wait_for(predicate: Callable[[], bool], timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


async def produce_in_order(
    bootstrap: str, topic: str, records: Iterable[tuple[bytes, bytes | None]]
) -> None:
    """Produce ``records`` (key, value), each acknowledged before the next: every partition
    holds its records in this order."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def read_topic(bootstrap: str, topic: str) -> list[Any]:
    """Every record of ``topic`` now, read with a group-less consumer."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await partitions_of(consumer, topic)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        remaining = set(tps)
        while remaining:
            batch = await consumer.getmany(timeout_ms=300)
            for items in batch.values():
                records.extend(items)
            for tp in list(remaining):
                high = consumer.highwater(tp)
                if high is not None and await consumer.position(tp) >= high:
                    remaining.discard(tp)
        return records
    finally:
        await consumer.stop()


async def receive_events(ws: Any, count: int, timeout: float = 60) -> list[dict[str, Any]]:
    frames = []
    async with asyncio.timeout(timeout):
        while len(frames) < count:
            frames.append(orjson.loads(await ws.recv()))
    return frames


async def test_seed_blog_reaches_websocket_once(
    broker: Broker,
    config_factory: Callable[..., Config],
    seed: SeedBlog,
    raw_schema: Draft202012Validator,
    wire_schema: Draft202012Validator,
) -> None:
    config = config_factory(broker.bootstrap)
    async with started(config) as running:
        assert running.http_url is not None
        ws_url = running.http_url.replace("http", "ws", 1) + "/v1/stream"
        async with websockets.connect(ws_url) as ws:
            frames = await receive_events(ws, 10)

            # Exactly the ten entries, each once, each a valid CloudEvent, oldest first per source.
            assert all(f["type"] == "event" for f in frames)
            events = [f["event"] for f in frames]
            for event in events:
                wire_schema.validate(event)
            assert len({e["data"]["id"] for e in events}) == 10
            assert [e["data"]["published"] for e in events] == EXPECTED_TIMES
            assert {e["type"] for e in events} == {"telex.update.created"}
            texts = [e["data"]["text"] for e in events]
            assert texts == ["\n\n".join(entry.paragraphs) for entry in seed.entries]
            # Cursors are positions on the wire that only move forward.
            positions = [decode_cursor(f["cursor"]) for f in frames]
            assert sum(positions[-1].values()) == 10

            # Poll again as a restarted poller would (no ETag, nothing remembered): the processor
            # drops all ten re-sends as duplicates and the wire gets nothing new.
            poller = running.components["poller"]
            assert isinstance(poller, Poller)
            state = poller.states[REPLAY_SOURCE_ID]
            before_dupes = sample("telex_processor_duplicates_dropped_total")
            state.sent.clear()
            state.etag = state.last_modified = None
            assert await poller.poll_once(state) == 10
            await wait_for(
                lambda: sample("telex_processor_duplicates_dropped_total") >= before_dupes + 10
            )
            # A conditional re-poll of the unchanged page produces nothing at all.
            assert await poller.poll_once(state) == 0

            wire = await read_topic(running.bootstrap, config.topics.wire)
            assert len(wire) == 10
            for record in wire:
                wire_schema.validate(orjson.loads(record.value))
                assert record.key == REPLAY_SOURCE_ID.encode()
            raw = await read_topic(running.bootstrap, config.topics.raw)
            # At least the ten re-sends (the poller's own schedule may race the manual poll
            # after its memory was cleared, and re-send again: harmless, that is the point).
            assert len(raw) >= 20
            for record in raw:
                raw_schema.validate(orjson.loads(record.value))

            # And nothing more reached the subscriber.
            try:
                extra = await asyncio.wait_for(ws.recv(), timeout=1.0)
            except TimeoutError:
                extra = None
            assert extra is None, f"unexpected frame after re-poll: {extra!r}"


async def test_new_subscriber_gets_history_then_live(
    broker: Broker, config_factory: Callable[..., Config]
) -> None:
    config = config_factory(broker.bootstrap)
    async with started(config) as running:
        assert running.http_url is not None
        ws_url = running.http_url.replace("http", "ws", 1) + "/v1/stream"
        async with websockets.connect(ws_url) as first:
            await receive_events(first, 10)
        # A later subscriber sees the same ten, from the gateway's history.
        async with websockets.connect(ws_url) as second:
            frames = await receive_events(second, 10)
            assert len({f["event"]["id"] for f in frames}) == 10
            await second.send("hello")
            error = orjson.loads(await asyncio.wait_for(second.recv(), 5))
            assert error["type"] == "error"
