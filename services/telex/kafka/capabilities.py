"""What the broker can do, found out by asking it rather than assumed from how it was started.

The embedded broker (Tansu) and Apache Kafka differ in ways telex depends on: Tansu refuses
aiokafka's InitProducerId (no idempotent producer), answers every ``offsets_for_times`` with
offset 0 (no time index), and in its default storage keeps everything in memory (a restart
loses every topic). A ``telex broker`` in one terminal and the stages in others is an external
cluster to the stages, yet it is Tansu: so each process probes.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from telex.config import KafkaConfig
from telex.kafka.settings import admin_kwargs, producer_kwargs
from telex.log import get_logger

log = get_logger(__name__)

# The cluster id Tansu reports with its default, in-memory, storage.
MEMORY_CLUSTER_IDS = frozenset({"tansu_cluster"})


@dataclass(frozen=True)
class Capabilities:
    """What the connected cluster was found to support."""

    idempotence: bool = False
    offsets_for_times: bool = False
    brokers: int = 1
    # Loses its topics on a restart: only then do services need to be told to start over.
    memory_only: bool = False


class _Quiet(logging.Filter):
    """Drops aiokafka's own error line for a probe that is expected to fail."""

    def filter(self, record: logging.LogRecord) -> bool:
        return False


@contextlib.contextmanager
def _aiokafka_quiet() -> Iterator[None]:
    loggers = [logging.getLogger(n) for n in ("aiokafka.producer.sender", "aiokafka.producer")]
    quiet = _Quiet()
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)


async def probe_idempotence(kafka: KafkaConfig, bootstrap: str, tls: ssl.SSLContext | None) -> bool:
    """Whether producers are idempotent: ``on``/``off`` as set; ``auto`` by starting one.

    With ``auto`` a broker that refuses InitProducerId gets plain acks=all producers and one
    warning (duplicates from producer retries are made harmless downstream by the processor's
    dedup and the notifier's attempts log).
    """
    if kafka.idempotence != "auto":
        return kafka.idempotence == "on"
    producer = AIOKafkaProducer(**producer_kwargs(kafka, bootstrap, tls, idempotence=True))
    try:
        with _aiokafka_quiet():
            await producer.start()
    except KafkaError as exc:
        log.warning(
            "kafka.idempotence.unavailable",
            error=type(exc).__name__,
            note="the broker refused an idempotent producer (InitProducerId); producing with "
            "acks=all and no idempotence. Set [kafka] idempotence = off to skip this check.",
        )
        return False
    finally:
        with contextlib.suppress(KafkaError, OSError):
            await producer.stop()
    return True


async def describe_cluster(
    kafka: KafkaConfig, bootstrap: str, tls: ssl.SSLContext | None
) -> tuple[int, bool]:
    """The number of brokers and whether the cluster keeps its data in memory only."""
    admin = AIOKafkaAdminClient(**admin_kwargs(kafka, bootstrap, tls, 10_000))
    await admin.start()
    try:
        described = await admin.describe_cluster()
    finally:
        await admin.close()
    brokers = len(described.get("brokers") or []) or 1
    return brokers, described.get("cluster_id") in MEMORY_CLUSTER_IDS


async def probe_offsets_for_times(consumer: AIOKafkaConsumer, topic: str) -> bool:
    """Whether the broker can look offsets up by time (``consumer`` must be started).

    Asks for the first record at or after tomorrow: a broker with a time index has none and
    says so (``None``); one without answers an offset anyway.
    """
    tomorrow = int(time.time() * 1000) + 86_400_000
    try:
        found = await consumer.offsets_for_times({TopicPartition(topic, 0): tomorrow})
    except (KafkaError, OSError) as exc:
        log.info("kafka.offsets_for_times.unavailable", error=repr(exc))
        return False
    return all(answer is None for answer in found.values())
