"""Brokers of the three-node Apache Kafka cluster fail while updates flow through the whole
pipeline (pollers, processors, gateways and notifiers as processes, a WebSocket subscriber with
a cursor, a webhook receiver): nothing lost, nothing twice, at the subscriber and the receiver.

- the broker leading most wire partitions is SIGKILLed, then started again;
- a rolling restart: each broker stopped and started in turn, the next only once the wire is
  fully replicated again;
- two of three brokers down, below ``min.insync.replicas``: nothing more is acknowledged, so
  nothing reaches the subscriber, and the poller says it is blocked (``/readyz`` 503 with the
  reason, ``telex_kafka_produce_blocked``), until one broker is back; then everything flows.

Each test prints its figures (updates, seconds until updates flow again, duplicates, lost) for
docs/reliability.md (``pytest -rP`` shows them).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from telex.events import update_id
from tests.faults.conftest import Rig
from tests.faults.harness import (
    check_exactly_once_in_order,
    feed,
    metric,
    received_updates,
    wait_until_delivered,
    wait_until_settled,
)
from tests.kafka_cluster import KafkaCluster

SEED = os.environ.get("FAULTS_SEED", "0")
DELIVERY_BOUND = 120.0


@pytest.fixture
def rig_env() -> dict[str, str]:
    # A send to a leader that vanished fails after the request timeout and is retried on the
    # new leader: shorter than the default 40 s so the test sees it within its bounds.
    return {"TELEX_KAFKA_REQUEST_TIMEOUT_MS": "8000"}


@pytest.fixture
async def cluster(kafka_cluster: KafkaCluster) -> AsyncIterator[KafkaCluster]:
    """The session's cluster, whole again after the test whatever happened."""
    try:
        yield kafka_cluster
    finally:
        await kafka_cluster.heal()


async def wire_leader(cluster: KafkaCluster, rig: Rig) -> int:
    """The node leading most partitions of the wire."""
    parts = await cluster.partitions(rig.pipeline.config.topics.wire)
    return Counter(p["leader"] for p in parts).most_common(1)[0][0]


async def flowing_again(rig: Rig) -> float:
    """Seconds from now until the subscriber gets an update published from now on."""
    began = time.monotonic()
    first = len(rig.sources.published)
    while True:
        fresh = {update_id(s, e) for s, e in rig.sources.published[first:]}
        if fresh & set(rig.subscriber.update_ids()):
            return time.monotonic() - began
        await asyncio.sleep(0.1)


async def readiness(rig: Rig, role: str) -> tuple[int, dict[str, Any]]:
    """``role``'s /readyz: status code and body."""
    async with httpx.AsyncClient(timeout=5) as client:
        answer = await client.get(f"{rig.pipeline.api(role)}/readyz")
    return answer.status_code, answer.json()


async def wait_blocked(rig: Rig, role: str, blocked: bool) -> dict[str, Any]:
    """Until ``role`` reports its sends to Kafka blocked (or no longer): its /readyz body."""
    series = f'telex_kafka_produce_blocked{{component="{role}"}}'
    while True:
        status, body = await readiness(rig, role)
        flag = await metric(rig.pipeline, role, series)
        if blocked and status == 503 and role in body.get("reasons", {}) and flag == 1:
            return body
        if not blocked and status == 200 and flag == 0:
            return body
        await asyncio.sleep(0.5)


async def wait_delivered_so_far(rig: Rig) -> None:
    """Until what was published up to now reached the subscriber and the receiver."""
    await wait_until_delivered(rig.sources, rig.subscriber, rig.receiver, DELIVERY_BOUND)


def figures(rig: Rig, name: str, recovered: float) -> None:
    ids = rig.subscriber.update_ids()
    hooks = Counter(w for w, _ in received_updates(rig.receiver))
    expected = set(rig.sources.expected())
    print(
        f"figures {name}: updates={len(expected)} recovered_s={recovered:.1f} "
        f"duplicates_ws={len(ids) - len(set(ids))} "
        f"duplicates_webhook={sum(n - 1 for n in hooks.values())} "
        f"lost_ws={len(expected - set(ids))} "
        f"lost_webhook={len(expected - {u for _, u in received_updates(rig.receiver)})}"
    )


async def finish(rig: Rig, name: str, recovered: float) -> None:
    await wait_delivered_so_far(rig)
    await rig.pipeline.wait_ready(timeout=90)
    await wait_until_settled(rig.pipeline, rig.subscriber, rig.receiver, DELIVERY_BOUND)
    check_exactly_once_in_order(rig.sources, rig.subscriber, rig.receiver, rig.pipeline.kills)
    figures(rig, name, recovered)


async def test_sigkilled_wire_leader_then_back(rig: Rig, cluster: KafkaCluster) -> None:
    rng = random.Random(f"leader-{SEED}")
    done = asyncio.Event()
    feeder = asyncio.create_task(feed(rig.sources, rng, done, tail=30))
    try:
        await wait_delivered_so_far(rig)
        leader = await wire_leader(cluster, rig)
        await asyncio.sleep(rng.uniform(0.5, 2.0))
        cluster.kill_node(leader)
        recovered = await asyncio.wait_for(flowing_again(rig), DELIVERY_BOUND)
        assert await wire_leader(cluster, rig) != leader
        await asyncio.sleep(rng.uniform(2.0, 5.0))
        cluster.start_node(leader)
        await asyncio.to_thread(cluster.wait_started, leader)
        await cluster.wait_in_sync(rig.pipeline.config.topics.wire)
    finally:
        done.set()
        await feeder
    await finish(rig, "leader-killed", recovered)


async def test_rolling_restart_of_every_broker(rig: Rig, cluster: KafkaCluster) -> None:
    rng = random.Random(f"rolling-{SEED}")
    done = asyncio.Event()
    feeder = asyncio.create_task(feed(rig.sources, rng, done, tail=30))
    recovered = 0.0
    starts = [n.starts for n in cluster.nodes]
    try:
        await wait_delivered_so_far(rig)
        for node in cluster.nodes:
            await asyncio.sleep(rng.uniform(0.5, 2.0))
            await asyncio.to_thread(cluster.stop_node, node.node_id)
            recovered = max(recovered, await asyncio.wait_for(flowing_again(rig), DELIVERY_BOUND))
            cluster.start_node(node.node_id)
            await asyncio.to_thread(cluster.wait_started, node.node_id)
            await cluster.wait_in_sync(rig.pipeline.config.topics.wire)
    finally:
        done.set()
        await feeder
    assert [n.starts for n in cluster.nodes] == [s + 1 for s in starts]
    await finish(rig, "rolling-restart", recovered)


async def test_two_of_three_down_blocks_then_flows(rig: Rig, cluster: KafkaCluster) -> None:
    rng = random.Random(f"min-isr-{SEED}")
    done = asyncio.Event()
    feeder = asyncio.create_task(feed(rig.sources, rng, done, tail=30))
    try:
        await wait_delivered_so_far(rig)
        leader = await wire_leader(cluster, rig)
        down = [leader, rng.choice([n.node_id for n in cluster.nodes if n.node_id != leader])]
        for node_id in down:
            cluster.kill_node(node_id)
        # What was acknowledged before the outage trickles out; then the subscriber's count
        # must stand still while the sources keep publishing: one copy is not enough for a
        # write, so no update is acknowledged, and no reader sees one.
        async with asyncio.timeout(DELIVERY_BOUND):
            while True:
                seen = len(rig.subscriber.events)
                await asyncio.sleep(2.0)
                if len(rig.subscriber.events) == seen:
                    break
        published = len(rig.sources.published)
        await asyncio.sleep(8.0)
        assert len(rig.sources.published) > published, "the sources stopped publishing"
        assert len(rig.subscriber.events) == seen, "an update got through below min ISR"
        for role in ("poller", "processor", "gateway", "notifier"):
            assert rig.pipeline.procs[role].returncode is None, f"{role} died in the outage"
        # The poller's sends wait for replicas that are not there: it says so.
        body = await asyncio.wait_for(wait_blocked(rig, "poller", True), DELIVERY_BOUND)
        assert body["components"]["poller"] is False
        assert body["reasons"]["poller"].startswith("kafka: "), body

        cluster.start_node(down[1])
        await asyncio.to_thread(cluster.wait_started, down[1])
        recovered = await asyncio.wait_for(flowing_again(rig), DELIVERY_BOUND)
        await asyncio.wait_for(wait_blocked(rig, "poller", False), DELIVERY_BOUND)
        cluster.start_node(down[0])
        await asyncio.to_thread(cluster.wait_started, down[0])
    finally:
        done.set()
        await feeder
    await finish(rig, "two-down", recovered)
    print(f"figures two-down: poller /readyz in the outage: {body}")
