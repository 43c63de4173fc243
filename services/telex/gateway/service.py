"""The gateway: reads the whole wire and serves it on ``/v1/stream``.

Every gateway reads every partition of the wire with no consumer group (gateways share
nothing), from the start of what the broker retains, so a new gateway knows recent history.
"""

from __future__ import annotations

import asyncio
import contextlib

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from telex import metrics
from telex.bus import Bus, stop_quietly
from telex.config import Config
from telex.events import now_ms
from telex.gateway.hub import CLOSE_SLOW, Frame, Hub, Subscriber, encode_cursor
from telex.log import get_logger

log = get_logger(__name__)


def event_frame(value: bytes, cursor: str) -> str:
    """The WebSocket frame of one wire event: built from the record bytes, never re-encoded."""
    return '{"type":"event","cursor":"' + cursor + '","event":' + value.decode() + "}"


class Gateway:
    """Wire reader plus the WebSocket endpoint."""

    def __init__(self, config: Config, bus: Bus) -> None:
        self.config = config
        self.bus = bus
        self.hub = Hub(config.gateway.history_size, config.gateway.send_queue_size)
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._positions: dict[int, int] = {}
        self._live_from: dict[int, int] = {}
        self._caught_up = False
        self.router = self._build_router()

    @property
    def ready(self) -> bool:
        """True once the reader has fetched from every wire partition."""
        return self._caught_up

    async def start(self) -> None:
        """Start reading the wire."""
        topic = self.config.topics.wire
        consumer = self.bus.consumer(group_id=None)
        await consumer.start()
        await consumer.topics()  # refreshes metadata: the topic may have just been created.
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await stop_quietly(consumer)
            raise RuntimeError(f"wire topic {topic} does not exist")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        self._positions = {tp.partition: 0 for tp in tps}
        self._consumer = consumer
        self._task = asyncio.create_task(self._read(), name="gateway-wire")
        log.info("gateway.started", partitions=len(tps))

    async def stop(self) -> None:
        """Stop reading; open connections are closed by the HTTP server's shutdown."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await stop_quietly(self._consumer)
        self._consumer = None

    async def _read(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while True:
            try:
                batch = await consumer.getmany(timeout_ms=200, max_records=2000)
            except KafkaError as exc:
                log.warning("gateway.fetch_failed", error=repr(exc))
                await asyncio.sleep(1.0)
                continue
            if not self._caught_up:
                for tp in consumer.assignment():
                    high = consumer.highwater(tp)
                    if high is not None:
                        self._live_from.setdefault(tp.partition, high)
                self._caught_up = len(self._live_from) == len(self._positions)
            frames = []
            now = now_ms()
            for tp, records in batch.items():
                for record in records:
                    self._positions[tp.partition] = record.offset + 1
                    if record.value is None:
                        continue
                    metrics.WIRE_CONSUMED.inc()
                    cursor = encode_cursor(self._positions)
                    frames.append(Frame(event_frame(record.value, cursor), cursor))
                    if record.offset >= self._live_from.get(tp.partition, 1 << 62):
                        self._observe_latency(record.value, now)
            if frames:
                self.hub.publish(frames)

    @staticmethod
    def _observe_latency(value: bytes, now: int) -> None:
        try:
            detected = orjson.loads(value)["data"]["timings"]["detected_ms"]
            metrics.END_TO_END.observe(max(0, now - int(detected)) / 1000)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            pass  # not a telex event: nothing to measure.

    def _build_router(self) -> APIRouter:
        router = APIRouter()

        @router.websocket("/v1/stream")
        async def stream(websocket: WebSocket) -> None:
            """The live wire: one JSON text frame per event, oldest first."""
            await websocket.accept()
            subscriber, backlog = self.hub.subscribe()
            metrics.CONNECTIONS.inc()
            sender = asyncio.create_task(self._send(websocket, subscriber, backlog))
            receiver = asyncio.create_task(self._receive(websocket))
            try:
                await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                self.hub.unsubscribe(subscriber)
                metrics.CONNECTIONS.dec()
                for task in (sender, receiver):
                    task.cancel()
                await asyncio.gather(sender, receiver, return_exceptions=True)
            if subscriber.slow:
                with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                    await websocket.close(CLOSE_SLOW, "too slow: reconnect with your cursor")

        return router

    @staticmethod
    async def _send(websocket: WebSocket, subscriber: Subscriber, backlog: list[Frame]) -> None:
        sent = metrics.DELIVERED.labels("websocket")
        for frame in backlog:
            await websocket.send_text(frame.text)
            sent.inc()
        while not subscriber.slow:
            frame = await subscriber.queue.get()
            if subscriber.slow:
                return
            await websocket.send_text(frame.text)
            sent.inc()

    @staticmethod
    async def _receive(websocket: WebSocket) -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            error = {"type": "error", "error": "this endpoint accepts no messages yet"}
            await websocket.send_text(orjson.dumps(error).decode())
