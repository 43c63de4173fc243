"""The broker stops for some seconds and starts again, empty (the embedded broker keeps
everything in memory), while entries keep flowing: the services notice, create their topics
again, and go on without a crash, a hang or a restart.

What "nothing lost" can mean on a broker that forgets everything, and what is asserted:

- every process stays up, and all of them are ready again soon after the broker is back;
- each process noticed that its topics were gone and created them again
  (``telex_kafka_topics_recreated_total``);
- the WebSocket subscriber, which stays connected throughout, is told so: a ``resync`` frame
  (the old wire's cursors mean nothing on the new one). After its last resync it receives the
  new wire, which the pollers fill again with what their sources currently show: every update
  ever published (these sources show all their entries), each once; the entries sent again
  arrive in per-source order, and so do the entries published after the restart, but entries
  in flight at the stop (or polled while the broker was down) may come ahead of older ones.
  Before the resync it got each update at most once, in order, as always;
- the webhook receiver gets every update; each ``webhook-id`` once, except deliveries that were
  being made while the broker was down or while the notifier started over (an attempt that
  could not be recorded, or one still queued when the new wire is read from its start, is made
  again: the at-least-once of docs/webhooks.md). The updates the pollers send again after the
  restart are not delivered twice: the notifier's delivery index outlives the broker's data.

Entries the sources no longer show at the restart would be lost with an in-memory broker; with
Kafka the topics, offsets and consumer groups survive a broker restart and none of this happens
(see docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from telex.kafka.embedded import EmbeddedBroker
from tests.conftest import Broker
from tests.faults.conftest import Rig
from tests.faults.harness import (
    feed,
    metric,
    received_updates,
    wait_until_delivered,
    wait_until_settled,
)
from tests.faults.test_kills import SEED

# What the embedded broker itself does: it keeps running on Tansu.
pytestmark = pytest.mark.embedded_broker

DELIVERY_BOUND = 60.0
OUTAGE_SECONDS = 5.0
# How long a notifier may still be delivering queued jobs around the broker's stop and start
# (a delivery whose attempt record could not be written is made again): generous, the machine
# is shared.
ACK_WINDOW = 2.0
# Records the poller and the processor were sending when the broker stopped, or queued while
# it was down, are written to the new broker once it is back, ahead of the entries the poller
# sends again when it hears that the topics were lost: the entries published from this long
# before the stop to this long after the restart are exempt from the order check after the
# resync (they still must arrive, once). Generous: a poll every 0.3 s, a processor batch, a
# topic check every second, a loaded machine.
IN_FLIGHT_SECONDS = 3.0
# When the notifier starts over it reads the new wire from its start; a delivery still queued
# or in progress then can be made twice (at least once: the attempts log only skips finished
# ones). Repeats are allowed while the services start over, this long after the broker is back.
RESTART_WINDOW = 10.0


@pytest.fixture
async def broker() -> AsyncIterator[EmbeddedBroker]:
    """A broker of this test's own (it is stopped and started: not the session's)."""
    kafka = EmbeddedBroker()
    await kafka.start()
    try:
        yield kafka
    finally:
        await kafka.stop()


@pytest.fixture
def rig_env() -> dict[str, str]:
    # A send to a broker that is down fails after the request timeout: shorter than the
    # default 40 s, so a poll caught by the outage is retried soon after it.
    return {
        "TELEX_KAFKA_REQUEST_TIMEOUT_MS": "8000",
        "TELEX_LOG_LEVEL": os.environ.get("FAULTS_LOG_LEVEL", "info"),
    }


async def test_broker_restart_empty_recovers(rig: Rig, broker: Broker) -> None:
    rng = random.Random(f"broker-{SEED}")
    roles = ("poller", "processor", "gateway", "notifier")
    done = asyncio.Event()
    feeder = asyncio.create_task(feed(rig.sources, rng, done, tail=30))
    try:
        await asyncio.sleep(2.0)
        # Entries published from here to the stop may be in flight when the broker stops.
        in_flight_from = len(rig.sources.published)
        await asyncio.sleep(IN_FLIGHT_SECONDS)
        stopped_at = time.monotonic()
        await broker.stop()
        await asyncio.sleep(OUTAGE_SECONDS)
        await broker.start()
        back_at = time.monotonic()
        published_before_back = len(rig.sources.published)
        await asyncio.sleep(IN_FLIGHT_SECONDS)
        in_flight_to = len(rig.sources.published)
        before = set(rig.sources.published[:in_flight_from])
        after = set(rig.sources.published[in_flight_to:])
    finally:
        done.set()
        await feeder

    await wait_until_delivered(rig.sources, rig.subscriber, rig.receiver, DELIVERY_BOUND)
    delivered_at = time.monotonic()
    await rig.pipeline.wait_ready(timeout=60)
    ready_at = time.monotonic()
    await wait_until_settled(rig.pipeline, rig.subscriber, rig.receiver, DELIVERY_BOUND)

    # Nobody crashed or was restarted, and every process recreated its topics.
    assert rig.pipeline.starts == dict.fromkeys(roles, 1)
    for role in roles:
        assert rig.pipeline.procs[role].returncode is None, rig.pipeline.logs(role)
        recreated = await metric(rig.pipeline, role, "telex_kafka_topics_recreated_total")
        assert recreated >= 1, f"{role} never noticed its topics were gone"

    expected = rig.sources.expected()
    subscriber = rig.subscriber
    assert subscriber.resyncs, "the subscriber was never told the wire was recreated"
    assert all("recreated" in r["reason"] for r in subscriber.resyncs), subscriber.resyncs
    bounds = [0, *subscriber.resync_at, len(subscriber.events)]
    segments = [subscriber.events[a:b] for a, b in itertools.pairwise(bounds)]
    for n, segment in enumerate(segments):
        ids = [e["data"]["id"] for e in segment]
        twice = [uid for uid, k in Counter(ids).items() if k > 1]
        assert not twice, f"segment {n} (between resyncs) has updates twice: {twice[:5]}"
        # Before the resync: one sequence per source. After it: the entries sent again (those
        # published before the in-flight window) are one sequence, the ones published after
        # the window another; the window's own entries, and how the two interleave, are free.
        by_source: dict[tuple[str, str], list[int]] = {}
        for uid in ids:
            source, rank = expected[uid]
            entry = (source, f"{source}-e{rank:04d}")
            part = "all" if n == 0 else "resent" if entry in before else "new"
            if n and part == "new" and entry not in after:
                continue
            by_source.setdefault((source, part), []).append(rank)
        for (source, part), ranks in by_source.items():
            assert ranks == sorted(ranks), f"segment {n}: {source} ({part}) out of order: {ranks}"
    last = {e["data"]["id"] for e in segments[-1]}
    assert last == set(expected), (
        f"after the last resync, {len(set(expected) - last)} of {len(expected)} updates "
        "were not sent again"
    )

    # The receiver: everything, and a webhook-id twice only around the outage.
    hooks = received_updates(rig.receiver)
    assert {uid for _, uid in hooks} == set(expected)
    per_update: dict[str, set[str]] = {}
    for webhook_id, uid in hooks:
        per_update.setdefault(uid, set()).add(webhook_id)
    assert all(len(w) == 1 for w in per_update.values()), "one update, several webhook-ids"
    arrivals: dict[str, list[float]] = {}
    for request in rig.receiver.requests:
        arrivals.setdefault(request.headers["webhook-id"], []).append(request.at)
    outside = {
        w: at
        for w, at in arrivals.items()
        if len(at) > 1 and not (stopped_at - ACK_WINDOW <= at[0] <= back_at + RESTART_WINDOW)
    }
    assert not outside, "webhook-ids delivered twice outside the outage: " + "; ".join(
        f"{w} at {[round(a - stopped_at, 2) for a in at]}" for w, at in outside.items()
    )
    repeated = sum(len(at) > 1 for at in arrivals.values())
    print(
        f"broker restart: outage {back_at - stopped_at:.1f} s, {len(expected)} updates "
        f"({published_before_back} before the broker was back), all delivered "
        f"{delivered_at - back_at:.1f} s after it was back, all ready at "
        f"{ready_at - back_at:.1f} s; {len(subscriber.resyncs)} resync(s); "
        f"{repeated} webhook-id(s) repeated inside the outage"
    )
