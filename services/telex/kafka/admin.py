"""Topic admin: the topics telex needs, created with their partitions, replication and cleanup
policy when missing.

Replication follows the cluster unless set: 3 replicas (or as many as there are brokers, on a
smaller cluster) and ``min.insync.replicas`` 2 once there are 3, so an acknowledged record
survives the loss of a broker and producers stop rather than write to a single copy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from telex.config import TopicsConfig
from telex.log import get_logger

if TYPE_CHECKING:
    from telex.kafka.clients import Clients

log = get_logger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    """A topic telex needs, with the settings it needs."""

    name: str
    partitions: int
    compact: bool = False


def required_topics(topics: TopicsConfig) -> list[TopicSpec]:
    """Every topic the pipeline itself uses (the notifier adds its own)."""
    return [
        TopicSpec(topics.raw, topics.partitions),
        TopicSpec(topics.wire, topics.partitions),
        TopicSpec(topics.dlq, 1),
        TopicSpec(topics.sources, topics.sources_partitions, compact=True),
    ]


def replication(topics: TopicsConfig, brokers: int) -> tuple[int, int]:
    """``(replication factor, min.insync.replicas)`` for new topics on a cluster of ``brokers``."""
    factor = topics.replication_factor or min(3, max(1, brokers))
    in_sync = topics.min_insync_replicas or (2 if factor >= 3 else 1)
    return factor, min(in_sync, factor)


def topic_configs(spec: TopicSpec, in_sync: int) -> dict[str, str]:
    """The per-topic settings telex sets at creation."""
    configs = {"cleanup.policy": "compact"} if spec.compact else {}
    if in_sync > 1:
        configs["min.insync.replicas"] = str(in_sync)
    return configs


async def ensure_topics(clients: Clients, specs: Iterable[TopicSpec]) -> list[str]:
    """Create the topics that do not exist yet; return the names created.

    Idempotent: existing topics are left as they are (their partition counts are checked, not
    changed, since Kafka cannot shrink a topic and the embedded broker cannot grow one).
    """
    specs = list(specs)
    factor, in_sync = replication(clients.config.topics, clients.capabilities.brokers)
    admin = clients.admin()
    await admin.start()
    created: list[str] = []
    try:
        existing = set(await admin.list_topics())
        for spec in (s for s in specs if s.name not in existing):
            topic = NewTopic(
                spec.name, spec.partitions, factor, topic_configs=topic_configs(spec, in_sync)
            )
            try:
                response = await admin.create_topics([topic])
            except TopicAlreadyExistsError:
                continue  # another process won the race; fine.
            if created_by(response, spec.name):
                created.append(spec.name)
        if created:
            log.info(
                "topics.created",
                topics=",".join(created),
                replication_factor=factor,
                min_insync_replicas=in_sync,
            )
        present = [s for s in specs if s.name in existing]
        if present:
            described = await admin.describe_topics([s.name for s in present])
            counts = {d["topic"]: len(d["partitions"]) for d in described}
            for spec in present:
                if counts.get(spec.name, spec.partitions) != spec.partitions:
                    log.warning(
                        "topic.partitions.mismatch",
                        topic=spec.name,
                        configured=spec.partitions,
                        actual=counts.get(spec.name),
                    )
    finally:
        await admin.close()
    return created


def created_by(response: Any, topic: str) -> bool:
    """Whether a CreateTopics ``response`` says ``topic`` was created by this request.

    The broker answers per topic with an error code rather than failing the request. A topic
    that already exists is not an error: another process (or a broker whose metadata was a
    moment behind when the topics were listed) got there first. Any other code is raised.
    """
    for name, code, *detail in response.topic_errors:
        if name != topic:
            continue
        if code == 0:
            return True
        error = for_code(code)
        if error is TopicAlreadyExistsError:
            return False
        message = detail[0] if detail and detail[0] else error.description
        raise error(f"creating topic {topic}: {message}")
    return False


async def recreate_misshapen(clients: Clients, specs: Iterable[TopicSpec]) -> None:
    """Delete and create again the topics whose partition count is not the configured one.

    Only for a broker that lost its data: a record a client had in flight when it went away is
    written as soon as it is back, and the embedded broker creates a missing topic for it with
    its own default (4 partitions; measured). After a reset such a topic holds only those
    records, which the services send again anyway.
    """
    specs = list(specs)
    admin = clients.admin()
    await admin.start()
    try:
        described = await admin.describe_topics([s.name for s in specs])
        counts = {d["topic"]: len(d["partitions"]) for d in described}
        wrong = [s for s in specs if counts.get(s.name, s.partitions) != s.partitions]
        if not wrong:
            return
        log.warning(
            "kafka.topics.wrong_partitions",
            topics=",".join(f"{s.name}:{counts[s.name]}!={s.partitions}" for s in wrong),
            note="created by the broker for a late record: deleting and creating again",
        )
        await admin.delete_topics([s.name for s in wrong])
    finally:
        await admin.close()
    await asyncio.sleep(0.2)  # let the deletion settle before the names are reused.
    await ensure_topics(clients, wrong)
