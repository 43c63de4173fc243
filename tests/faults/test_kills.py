"""SIGKILL each service at random moments while updates flow: nothing lost, nothing twice.

One scenario per role, each on its own topics and groups: the pipeline runs as four
processes, six sources publish a known set of entries over a few seconds, and meanwhile one
role is killed three times at seeded random moments and restarted. Afterwards every published
entry must have reached the WebSocket subscriber (which resumes with its cursor) and the webhook
receiver, none twice, in per-source order at the subscriber, and every process is ready again.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from telex.bus import EmbeddedBroker
from telex.config import Config
from tests.faults.harness import (
    Pipeline,
    Sources,
    Subscriber,
    check_exactly_once_in_order,
    create_webhook,
    serving_sources,
    wait_until_delivered,
)
from tests.integration.webhook_receivers import Receiver, receiving

SOURCES = [f"src{n}" for n in range(6)]
PER_SOURCE = 12
DELIVERY_BOUND = 90.0


@dataclass
class Rig:
    pipeline: Pipeline
    sources: Sources
    subscriber: Subscriber
    receiver: Receiver


@pytest.fixture
async def rig(
    broker: EmbeddedBroker, config_factory: Callable[..., Config], tmp_path: Path
) -> AsyncIterator[Rig]:
    """Pipeline up and ready, a webhook subscription to everything, a subscriber connected."""
    config = config_factory(broker.bootstrap)
    async with serving_sources(SOURCES) as sources, receiving() as receiver:
        pipeline = Pipeline(config, broker.bootstrap, sources, tmp_path)
        for role in ("processor", "gateway", "notifier", "poller"):
            await pipeline.start(role)
        subscriber_task: asyncio.Task[None] | None = None
        try:
            await pipeline.wait_ready(timeout=90)
            await create_webhook(pipeline, receiver.url)
            subscriber = Subscriber(pipeline.gateway_url, pipeline.start_cursor())
            subscriber_task = asyncio.create_task(subscriber.run())
            yield Rig(pipeline, sources, subscriber, receiver)
        finally:
            if subscriber_task is not None:
                subscriber_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await subscriber_task
            await pipeline.stop()


async def feed(sources: Sources, rng: random.Random) -> None:
    """PER_SOURCE entries per source, in random interleaving, about 15 per second."""
    order = [s for s in SOURCES for _ in range(PER_SOURCE)]
    rng.shuffle(order)
    for source in order:
        sources.publish(source)
        await asyncio.sleep(rng.uniform(0.02, 0.12))


@pytest.mark.parametrize("role", ["poller", "processor", "notifier", "gateway"])
async def test_sigkill_and_restart_loses_nothing(rig: Rig, role: str) -> None:
    rng = random.Random(f"kill-{role}")
    feeder = asyncio.create_task(feed(rig.sources, rng))
    for _ in range(3):
        await asyncio.sleep(rng.uniform(0.5, 2.5))
        await rig.pipeline.kill(role)
        await asyncio.sleep(rng.uniform(0.0, 1.0))
        await rig.pipeline.start(role)
    await feeder
    assert rig.pipeline.starts[role] == 4

    await wait_until_delivered(rig.sources, rig.subscriber, rig.receiver, DELIVERY_BOUND)
    await rig.pipeline.wait_ready(timeout=60)
    # Late duplicates would arrive now, if any.
    await asyncio.sleep(1.5)
    check_exactly_once_in_order(rig.sources, rig.subscriber, rig.receiver)
