"""SIGKILL each service at random moments while updates flow: nothing lost, nothing twice.

One scenario per role, each on its own topics and groups (the ``rig`` fixture): the pipeline
runs as four processes and six sources publish entries with known ids. Three times, once the
role's process is ready and working, it is SIGKILLed at a seeded random moment and started
again; entries keep flowing throughout and after the last restart. Then every published entry
must reach the WebSocket subscriber (which resumes with its cursor) and the webhook receiver,
none twice, in per-source order at the subscriber, and every process is ready again.
"""

from __future__ import annotations

import asyncio
import os
import random

import pytest

from tests.faults.conftest import Rig
from tests.faults.harness import (
    check_exactly_once_in_order,
    feed,
    wait_until_delivered,
    wait_until_settled,
)

KILLS = 3
# The moments are random but seeded, so a failure can be replayed: FAULTS_SEED=<n>.
SEED = os.environ.get("FAULTS_SEED", "0")
DELIVERY_BOUND = 90.0


@pytest.mark.parametrize("role", ["poller", "processor", "notifier", "gateway"])
async def test_sigkill_and_restart_loses_nothing(rig: Rig, role: str) -> None:
    rng = random.Random(f"kill-{role}-{SEED}")
    done = asyncio.Event()
    feeder = asyncio.create_task(feed(rig.sources, rng, done, tail=15))
    try:
        for _ in range(KILLS):
            # Kill a process that is up and doing work, not one still starting.
            await rig.pipeline.wait_ready(timeout=60, roles=(role,))
            await asyncio.sleep(rng.uniform(0.2, 2.0))
            await rig.pipeline.kill(role)
            await asyncio.sleep(rng.uniform(0.0, 0.5))
            await rig.pipeline.start(role)
    finally:
        done.set()
        await feeder
    assert rig.pipeline.starts[role] == KILLS + 1

    await wait_until_delivered(rig.sources, rig.subscriber, rig.receiver, DELIVERY_BOUND)
    await rig.pipeline.wait_ready(timeout=60)
    await wait_until_settled(rig.pipeline, rig.subscriber, rig.receiver, DELIVERY_BOUND)
    check_exactly_once_in_order(rig.sources, rig.subscriber, rig.receiver, rig.pipeline.kills)
    if role == "gateway":
        assert rig.subscriber.connects >= 2, "the subscriber never had to resume"
