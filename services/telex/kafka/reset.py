"""The reset signal: tells the services to start over when the broker has lost its data.

Only a memory-only broker does that (the embedded one: a restart empties it, and the clients
reconnect as if nothing happened). It does not create the topics again by itself (measured: a
produce to a topic it lost is even acknowledged and dropped), and offsets on the new topics
start again at 0, so each service must hear about it: the poller sends again what its sources
show, the processor forgets its dedup state, the gateway tells its clients to resync, the
notifier writes its subscriptions back. On a cluster that keeps its data (Apache Kafka) the
signal is never armed: a broker restart keeps the topics, and a leader election that hides a
topic for a moment must not make anyone start over.

Whichever process notices first creates the topics again, so "a topic is missing" is not
something every process sees. Each process therefore also keeps a record of its own, keyed by
a random id, on a small compacted ``marker`` topic: when its record is gone, the broker lost its
data, whoever recreated the topics. (A graceful stop deletes the record.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, KafkaError

from telex import metrics
from telex.kafka.admin import TopicSpec, ensure_topics, recreate_misshapen
from telex.kafka.connect import stop_quietly
from telex.kafka.table import read_table
from telex.log import get_logger
from telex.tasks import cancel_and_wait

if TYPE_CHECKING:
    from telex.kafka.clients import Clients

log = get_logger(__name__)

StartOver = Callable[[], Awaitable[None]]


class Resetting(KafkaConnectionError):  # type: ignore[misc]
    """Raised to a producer of new data while the topics are being checked or re-made."""


class ResetSignal:
    """Watches a memory-only broker for lost topics; re-creates them and has every registered
    service start over, in registration order.

    ``intact`` is cleared while the topics are not known to be intact (the broker is
    unreachable, or lost them and the services have not started over yet): producers of new
    data wait for it, so nothing goes to a broker that lost its topics before the services have
    heard so. ``generation`` counts the resets: work begun in an older generation went to
    topics that no longer exist.
    """

    def __init__(self, clients: Clients) -> None:
        self.clients = clients
        self.intact = asyncio.Event()
        self.intact.set()
        self.generation = 0
        self.specs: list[TopicSpec] = []
        self.marker: str | None = None
        self.interval = 0.0
        self._key = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}".encode()
        self._callbacks: list[StartOver] = []
        self._task: asyncio.Task[None] | None = None
        self._producer: AIOKafkaProducer | None = None
        self._reader: AIOKafkaConsumer | None = None

    @property
    def armed(self) -> bool:
        """Whether this process watches for a reset (a memory-only broker, checks enabled)."""
        return self._task is not None

    def on_reset(self, start_over: StartOver) -> None:
        """Call ``start_over`` after the broker lost its data and the topics were re-made."""
        self._callbacks.append(start_over)

    def check(self) -> None:
        """Raise :class:`Resetting` unless the topics are known to be intact."""
        if not self.intact.is_set():
            raise Resetting("waiting for the broker's topics to be checked")

    async def start(self, specs: Iterable[TopicSpec], marker: str | None, interval: float) -> None:
        """Leave this process's mark and start checking, if the broker is memory-only."""
        if interval <= 0 or not self.clients.capabilities.memory_only:
            return
        self.specs = list(specs)
        self.marker = marker
        self.interval = interval
        if marker is not None:
            self.specs.append(TopicSpec(marker, 1, compact=True))
            await ensure_topics(self.clients, self.specs)
            self._producer = self.clients.producer()
            await self._producer.start()
            self._reader = self.clients.reader(request_timeout_ms=5000)
            await self._reader.start()
            await self._mark()
        self._task = asyncio.create_task(self._watch(), name="kafka-reset-signal")

    async def stop(self) -> None:
        """Stop checking and remove this process's mark."""
        await cancel_and_wait(self._task)
        self._task = None
        if self._producer is not None and self.marker is not None:
            with contextlib.suppress(KafkaError, OSError, TimeoutError):
                await asyncio.wait_for(
                    self._producer.send_and_wait(self.marker, None, key=self._key), 5
                )
        await stop_quietly(self._reader)
        await stop_quietly(self._producer)
        self._reader = self._producer = None

    async def _mark(self) -> None:
        assert self._producer is not None and self.marker is not None
        await self._producer.send_and_wait(self.marker, b"{}", key=self._key)

    async def _marked(self) -> bool:
        """Whether this process's record is still on the marker topic."""
        if self._reader is None or self.marker is None:
            return True
        try:
            async with asyncio.timeout(10.0):
                rows = await read_table(self._reader, self.marker)
        except LookupError:
            return False  # the marker topic itself is gone.
        return self._key in rows

    async def _lost(self, admin: AIOKafkaAdminClient) -> tuple[list[str], bool]:
        missing = {s.name for s in self.specs} - set(await admin.list_topics())
        return sorted(missing), bool(missing) or not await self._marked()

    async def _watch(self) -> None:
        admin: AIOKafkaAdminClient | None = None
        try:
            while True:
                await asyncio.sleep(self.interval)
                try:
                    if admin is None:
                        admin = self.clients.admin(request_timeout_ms=5_000)
                        await admin.start()
                    missing, lost = await self._lost(admin)
                    if lost:
                        # Look again before starting over: a broker that is shutting down
                        # can answer with half its metadata.
                        await asyncio.sleep(min(self.interval, 0.5))
                        missing, lost = await self._lost(admin)
                except (KafkaError, OSError, TimeoutError) as exc:
                    # The broker is down or restarting: the clients say so loudly already.
                    log.debug("kafka.reset_signal.unreachable", error=repr(exc))
                    self.intact.clear()
                    if admin is not None:
                        with contextlib.suppress(Exception):
                            await admin.close()
                        admin = None
                    continue
                if lost:
                    await self._reset(missing)
                else:
                    self.intact.set()
        finally:
            if admin is not None:
                with contextlib.suppress(Exception):
                    await admin.close()

    async def _reset(self, missing: list[str]) -> None:
        log.warning(
            "kafka.topics.lost",
            missing=",".join(missing) or "(recreated by another process)",
            note="the broker lost its data (an in-memory broker restarted?): starting over",
        )
        try:
            await ensure_topics(self.clients, self.specs)
            await recreate_misshapen(self.clients, self.specs)
            if self.marker is not None:
                await self._mark()
        except (KafkaError, OSError) as exc:
            log.warning("kafka.topics.recreate_failed", error=repr(exc))
            return  # the next check tries again.
        self.intact.clear()
        self.generation += 1
        metrics.TOPICS_RECREATED.inc()
        for callback in self._callbacks:
            try:
                await callback()
            except Exception:
                # One service failing to start over must not keep the others from it.
                log.exception("kafka.start_over_failed")
        self.intact.set()
