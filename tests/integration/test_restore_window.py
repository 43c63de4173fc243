"""The processor's restore reads a bounded window of the wire where the broker can look offsets
up by time, and whole partitions where it cannot: what it does is decided by a probe of the
broker it runs on, not by how the broker was started."""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson

from telex.config import Config
from telex.kafka import Clients, TopicSpec, ensure_topics
from telex.processor.state import PartitionState, restore
from tests.conftest import Broker

DAY_MS = 86_400_000


def wire_event(n: int) -> bytes:
    data = {"id": f"u{n}", "content_hash": f"h{n}", "timings": {"first_seen_ms": n}}
    return orjson.dumps({"type": "telex.update.created", "data": data})


async def test_restore_reads_the_window_where_the_broker_has_a_time_index(
    broker: Broker, config_factory: Callable[..., Config]
) -> None:
    config = config_factory(broker.bootstrap)
    clients = Clients(config, broker.bootstrap)
    wire = config.topics.wire
    await ensure_topics(clients, [TopicSpec(wire, 1)])
    now = int(time.time() * 1000)
    producer = clients.producer()
    await producer.start()
    try:
        # Three events written ten days ago, two written now (explicit record timestamps).
        for n in range(5):
            stamp = now - 10 * DAY_MS if n < 3 else now
            await producer.send_and_wait(wire, wire_event(n), partition=0, timestamp_ms=stamp)
    finally:
        await producer.stop()

    supported = await clients.probe_time_index(wire)
    assert clients.capabilities.offsets_for_times is supported
    seen: list[str] = []
    consumer = clients.consumer(group_id=None)
    await consumer.start()
    try:
        states = await restore(
            consumer,
            wire,
            [0],
            PartitionState,
            lambda _p, data: seen.append(data["id"]),
            since_ms=now - 7 * DAY_MS if supported else None,
        )
    finally:
        await consumer.stop()
    expected = ["u3", "u4"] if supported else ["u0", "u1", "u2", "u3", "u4"]
    assert seen == expected
    assert len(states[0]) == len(expected)
