"""The Kafka clients of a process, built with the settings telex's guarantees depend on.

Producers wait for every in-sync replica (acks=all) and are idempotent where the broker can do
it; consumers never commit by themselves. :meth:`Clients.connect` reaches the cluster, finds
out what it can do (:mod:`telex.kafka.capabilities`) and arms the reset signal when the broker
may lose its data (:mod:`telex.kafka.reset`).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import replace
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from telex.config import Config
from telex.kafka import capabilities as caps
from telex.kafka.connect import stop_quietly, wait_for_broker
from telex.kafka.reset import ResetSignal
from telex.kafka.sends import Producer, SendWatch
from telex.kafka.settings import (
    admin_kwargs,
    commit_interval_ms,
    consumer_kwargs,
    producer_kwargs,
    reader_fetch_max_wait_ms,
    ssl_context,
)
from telex.log import get_logger

log = get_logger(__name__)

__all__ = ["Clients", "stop_quietly"]


class Clients:
    """Factories of producers, consumers and admin clients for one cluster."""

    def __init__(
        self,
        config: Config,
        bootstrap: str,
        capabilities: caps.Capabilities | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.config = config
        self.bootstrap = bootstrap
        kafka = config.kafka
        self.capabilities = capabilities or caps.Capabilities(idempotence=kafka.idempotence == "on")
        self._tls = tls if tls is not None else ssl_context(kafka)
        # Tells the services to start over when a memory-only broker lost its topics.
        self.reset = ResetSignal(self)
        self._watches: dict[str, SendWatch] = {}

    @classmethod
    async def connect(cls, config: Config, bootstrap: str) -> Clients:
        """Wait for the cluster and find out what it can do (raises ``BrokerError``)."""
        kafka = config.kafka
        tls = await asyncio.to_thread(ssl_context, kafka)
        await wait_for_broker(
            bootstrap, timeout=kafka.embedded_start_timeout_s, kafka=kafka, tls=tls
        )
        brokers, memory_only = await caps.describe_cluster(kafka, bootstrap, tls)
        idempotence = await caps.probe_idempotence(kafka, bootstrap, tls)
        found = caps.Capabilities(idempotence=idempotence, brokers=brokers, memory_only=memory_only)
        log.info(
            "kafka.connected",
            bootstrap=bootstrap,
            brokers=brokers,
            idempotence=idempotence,
            memory_only=memory_only,
            security_protocol=kafka.security_protocol,
        )
        return cls(config, bootstrap, found, tls)

    async def probe_time_index(self, topic: str) -> bool:
        """Find out (on ``topic``, which must exist) whether offsets can be looked up by time."""
        consumer = self.reader()
        await consumer.start()
        try:
            supported = await caps.probe_offsets_for_times(consumer, topic)
        finally:
            await stop_quietly(consumer)
        self.capabilities = replace(self.capabilities, offsets_for_times=supported)
        return supported

    def producer(self, **overrides: Any) -> AIOKafkaProducer:
        """A producer that waits for every in-sync replica (acks=all)."""
        settings = producer_kwargs(
            self.config.kafka, self.bootstrap, self._tls, self.capabilities.idempotence
        )
        return AIOKafkaProducer(**{**settings, **overrides})

    def watch(self, component: str) -> SendWatch:
        """The watch over ``component``'s sends (one per component, shared by its producers)."""
        watch = self._watches.get(component)
        if watch is None:
            watch = self._watches[component] = SendWatch(
                component, self.config.kafka.send_blocked_after_s
            )
        return watch

    def producer_for(self, component: str, **overrides: Any) -> Producer:
        """A producer (acks=all) whose sends count in ``component``'s :meth:`watch`: a stage
        whose sends fail or wait is reported blocked (metrics, ``/readyz``)."""
        return Producer(self.producer(**overrides), self.watch(component))

    def consumer(self, *topics: str, group_id: str | None, **overrides: Any) -> AIOKafkaConsumer:
        """A consumer that never commits by itself: callers commit explicit offsets.

        With ``group_id=None`` the consumer belongs to no group and callers assign partitions.
        """
        settings = consumer_kwargs(
            self.config.kafka,
            self.bootstrap,
            self._tls,
            group_id,
            memory_only=self.capabilities.memory_only,
        )
        return AIOKafkaConsumer(*topics, **{**settings, **overrides})

    def reader(self, **overrides: Any) -> AIOKafkaConsumer:
        """A group-less consumer for reading partitions up to an end (a table, a restore, a
        range of history): its fetch wait is short, so what it asks the broker next (offsets,
        metadata) does not queue behind a fetch the broker holds for a follower's long wait."""
        wait = reader_fetch_max_wait_ms(self.config.kafka, self.capabilities.memory_only)
        return self.consumer(group_id=None, **{"fetch_max_wait_ms": wait, **overrides})

    def commit_interval_s(self) -> float:
        """How often this cluster's group members commit (``[kafka] commit_interval_ms``, or
        the broker's default)."""
        return commit_interval_ms(self.config.kafka, self.capabilities.memory_only) / 1000

    def admin(self, request_timeout_ms: int = 10_000) -> AIOKafkaAdminClient:
        """An admin client (topics, cluster description); the caller starts and closes it."""
        return AIOKafkaAdminClient(
            **admin_kwargs(self.config.kafka, self.bootstrap, self._tls, request_timeout_ms)
        )
