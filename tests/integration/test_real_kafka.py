"""What Apache Kafka gives telex, used: producers that are idempotent on the cluster, and the
compacted ``sources`` and ``webhooks`` topics, where a deletion is a tombstone that the log
cleaner finally removes (read back from the start of the topic, nothing of it is left)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from telex.kafka.scan import partitions_of
from telex.runtime import started
from tests.conftest import make_config
from tests.kafka_cluster import KafkaCluster

FIELD = re.compile(r"(\w+): (-?\d+)")


@dataclass
class Managed:
    """A telex process with a management API for one compacted topic."""

    api: httpx.AsyncClient
    path: str
    topic: str


def notifier_settings() -> dict[str, str]:
    n = uuid.uuid4().hex[:8]
    return {
        "TELEX_NOTIFIER_TOPIC_WEBHOOKS": f"rk{n}.webhooks",
        "TELEX_NOTIFIER_ALLOW_NETWORKS": "127.0.0.1/32",
    }


@pytest.fixture(params=["sources", "webhooks"])
async def managed(
    request: pytest.FixtureRequest, kafka_cluster: KafkaCluster
) -> AsyncIterator[Managed]:
    """The poller with /v1/sources, or the notifier with /v1/webhooks, on the cluster."""
    role = "poller" if request.param == "sources" else "notifier"
    config = make_config(kafka_cluster.bootstrap, **notifier_settings())
    topic = config.topics.sources if role == "poller" else config.notifier.topic_webhooks
    async with started(config, roles=(role,), replay=False) as running:
        assert running.http_url is not None
        async with httpx.AsyncClient(base_url=running.http_url, timeout=30) as api:
            yield Managed(api, f"/v1/{request.param}", topic)


async def create_and_delete(managed: Managed) -> tuple[bytes, bytes]:
    """Two entries through the API, the first deleted again: (deleted key, kept key)."""
    made: list[str] = []
    for n in range(2):
        if managed.path == "/v1/sources":
            body: dict[str, Any] = {"id": f"gone-{n}", "url": f"http://127.0.0.1:9/{n}"}
        else:
            body = {"url": f"http://127.0.0.1:9/hook{n}", "filter": {}}
        created = await managed.api.post(managed.path, json=body)
        assert created.status_code == 201, created.text
        made.append(created.json()["id"])
    deleted = await managed.api.delete(f"{managed.path}/{made[0]}")
    assert deleted.status_code == 204, deleted.text
    return made[0].encode(), made[1].encode()


async def read_topic(bootstrap: str, topic: str) -> list[tuple[int, bytes | None, bytes | None]]:
    """Every record of ``topic`` from its start: (partition, key, value)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await partitions_of(consumer, topic, timeout=30)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[tuple[int, bytes | None, bytes | None]] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(*tps, timeout_ms=500)
            for tp, got in batch.items():
                records += [(tp.partition, r.key, r.value) for r in got]
        return records
    finally:
        await consumer.stop()


async def test_deleted_entry_is_a_tombstone_then_compacted_away(
    managed: Managed, kafka_cluster: KafkaCluster
) -> None:
    gone, kept = await create_and_delete(managed)
    before = await read_topic(kafka_cluster.bootstrap, managed.topic)
    history = [value for _, key, value in before if key == gone]
    assert len(history) == 2 and history[0] is not None and history[1] is None, history
    partition = next(p for p, key, _ in before if key == gone)

    # The cleaner leaves the active segment alone and keeps a tombstone a while after a first
    # clean: a steady trickle of other keys rolls segments until both cleans have happened.
    producer = AIOKafkaProducer(bootstrap_servers=kafka_cluster.bootstrap, acks="all")
    await producer.start()
    try:
        async with asyncio.timeout(120):
            while True:
                await producer.send_and_wait(
                    managed.topic,
                    None,
                    key=f"filler-{uuid.uuid4().hex}".encode(),
                    partition=partition,
                )
                after = await read_topic(kafka_cluster.bootstrap, managed.topic)
                if not any(key == gone for _, key, _ in after):
                    break
                await asyncio.sleep(0.5)
    finally:
        await producer.stop()
    assert [value for _, key, value in after if key == kept] != []
    assert all(value is not None for _, key, value in after if key == kept)
    # telex still knows the kept one and not the deleted one.
    listed = (await managed.api.get(managed.path)).json()
    ids = {entry["id"] for entry in listed[managed.path.removeprefix("/v1/")]}
    assert kept.decode() in ids and gone.decode() not in ids


async def test_telex_producers_are_idempotent_on_the_cluster(kafka_cluster: KafkaCluster) -> None:
    # Default settings (idempotence "auto"): the poller writes a source definition.
    config = make_config(kafka_cluster.bootstrap)
    assert config.kafka.idempotence == "auto"
    async with (
        started(config, roles=("poller",), replay=False) as running,
        httpx.AsyncClient(base_url=running.http_url or "", timeout=30) as api,
    ):
        for n in range(3):
            body = {"id": f"idem-{n}", "url": f"http://127.0.0.1:9/{n}"}
            assert (await api.post("/v1/sources", json=body)).status_code == 201
    records = await read_topic(kafka_cluster.bootstrap, config.topics.sources)
    partitions = sorted({p for p, key, _ in records if key and key.startswith(b"idem-")})
    assert partitions
    # On the broker's disk: every batch telex wrote carries a producer id and a sequence
    # number, which the broker uses to drop a retried batch it already has.
    seen = []
    for partition in partitions:
        for line in await asyncio.to_thread(
            kafka_cluster.record_batches, config.topics.sources, partition
        ):
            fields = {name: int(value) for name, value in FIELD.findall(line)}
            seen.append((fields["producerId"], fields["producerEpoch"], fields["baseSequence"]))
    assert seen and all(pid >= 0 and epoch >= 0 and seq >= 0 for pid, epoch, seq in seen), seen
