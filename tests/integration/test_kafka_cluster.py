"""The test suite's Apache Kafka cluster itself: three replicas with min.insync.replicas 2, a
killed leader replaced with nothing acknowledged lost, a restarted node keeping its data, and
the SCRAM and TLS listeners checking what they should."""

from __future__ import annotations

import ssl
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from tests import kafka_cluster
from tests.kafka_cluster import KafkaCluster, cluster_id


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # The storage tool reads an id starting with "-" as an option: such an id is drawn again.
    dashed = uuid.UUID(bytes=b"\xfb" + bytes(15))  # base64 "-w..."
    plain = uuid.UUID(bytes=bytes(16))
    draws = iter([dashed, dashed, plain])
    monkeypatch.setattr(kafka_cluster.uuid, "uuid4", lambda: next(draws))
    made = cluster_id()
    assert made == "AAAAAAAAAAAAAAAAAAAAAA"
    assert next(draws, None) is None


async def make_topic(cluster: KafkaCluster, partitions: int = 1) -> str:
    name = f"smoke-{uuid.uuid4().hex[:8]}"
    async with cluster.admin() as admin:
        await admin.create_topics([NewTopic(name, partitions, 3)])
    await cluster.wait_in_sync(name)
    return name


async def read_all(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        values: list[bytes] = []
        while len(values) < count:
            batch = await consumer.getmany(tp, timeout_ms=1000)
            values += [r.value for r in batch.get(tp, []) if r.value is not None]
        return values
    finally:
        await consumer.stop()


async def test_topics_get_three_replicas_and_min_isr_two(kafka_cluster: KafkaCluster) -> None:
    topic = await make_topic(kafka_cluster, partitions=3)
    parts = await kafka_cluster.partitions(topic)
    assert [len(p["replicas"]) for p in parts] == [3, 3, 3]
    async with kafka_cluster.admin() as admin:
        described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    entries = {c[0]: c[1] for c in described[0].resources[0][4]}
    assert entries["min.insync.replicas"] == "2"


async def test_killed_leader_is_replaced_and_its_data_survives(
    kafka_cluster: KafkaCluster,
) -> None:
    topic = await make_topic(kafka_cluster)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_cluster.bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        for n in range(50):
            await producer.send_and_wait(topic, f"before-{n}".encode())
        leader = await kafka_cluster.leader_of(topic)
        kafka_cluster.kill_node(leader)
        try:
            # Still two replicas in sync: writes go on once the new leader is known.
            for n in range(50):
                await producer.send_and_wait(topic, f"during-{n}".encode())
            assert await kafka_cluster.leader_of(topic) not in (leader, -1)
        finally:
            await kafka_cluster.restart_node(leader)
        await kafka_cluster.wait_in_sync(topic)
    finally:
        await producer.stop()
    # Read from the restarted node alone: it caught up and kept what it had on disk.
    only = f"127.0.0.1:{kafka_cluster.node(leader).plaintext}"
    values = await read_all(only, topic, 100)
    expected = [f"before-{n}".encode() for n in range(50)] + [
        f"during-{n}".encode() for n in range(50)
    ]
    assert values == expected


async def test_scram_listener_takes_each_mechanism_and_refuses_a_wrong_password(
    kafka_cluster: KafkaCluster,
) -> None:
    topic = await make_topic(kafka_cluster)
    for user, (mechanism, password) in kafka_cluster.scram_users.items():
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka_cluster.scram_bootstrap,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism=mechanism,
            sasl_plain_username=user,
            sasl_plain_password=password,
        )
        await producer.start()
        try:
            await producer.send_and_wait(topic, user.encode())
        finally:
            await producer.stop()
    assert await read_all(kafka_cluster.bootstrap, topic, 2) == [b"telex-256", b"telex-512"]

    wrong = AIOKafkaProducer(
        bootstrap_servers=kafka_cluster.scram_bootstrap,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_plain_username="telex-256",
        sasl_plain_password="not-the-password",
    )
    with pytest.raises(KafkaError):
        await wrong.start()
    await wrong.stop()


async def test_tls_listener_is_verified_against_the_test_ca(kafka_cluster: KafkaCluster) -> None:
    topic = await make_topic(kafka_cluster)
    context = ssl.create_default_context(cafile=str(kafka_cluster.tls.ca_file))
    context.load_cert_chain(kafka_cluster.client_pem)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_cluster.ssl_bootstrap, security_protocol="SSL", ssl_context=context
    )
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"over tls")
    finally:
        await producer.stop()
    assert await read_all(kafka_cluster.bootstrap, topic, 1) == [b"over tls"]

    # A client that trusts only the system's CAs does not accept the test broker.
    untrusting = AIOKafkaProducer(
        bootstrap_servers=kafka_cluster.ssl_bootstrap,
        security_protocol="SSL",
        ssl_context=ssl.create_default_context(),
        request_timeout_ms=5000,
    )
    with pytest.raises(KafkaError):
        await untrusting.start()
    await untrusting.stop()
