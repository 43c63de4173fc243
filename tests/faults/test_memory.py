"""Memory returns to its baseline: repeated fault cycles do not make any process grow.

While entries flow, three cycles each make the webhook receiver answer 500, hang past the
notifier's timeout and answer 429, make two sources fail (500, hang), then SIGKILL and restart
the gateway (the subscriber resumes from its cursor), and wait until everything is delivered.
The resident memory (VmRSS) of every process is read after a warm-up and after each cycle.

The first cycle is a warm-up of its own: it is the first time each process meets retries,
timeouts, a rebalance, and its allocator grows its arenas for them. What must hold is that the
cycles after it add nothing that stays: the poller, processor and notifier, which live through
all cycles, end within ``GROWTH_MIB`` of their size after the first cycle, and the gateway,
restarted each cycle, comes back each time within ``GROWTH_MIB`` of its first size after a
restart. Measured growth after the first cycle is under 2 MiB per process (allocator arenas,
the gateway's history ring filling up); the bound, five times that, catches a leak per retry,
per timeout, per reconnection or per batch of a few KiB, not one of a few bytes per update.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from tests.faults.conftest import Rig
from tests.faults.harness import (
    check_exactly_once_in_order,
    feed,
    wait_until_delivered,
    wait_until_settled,
)
from tests.faults.test_kills import SEED

CYCLES = 3
GROWTH_MIB = 10.0
DELIVERY_BOUND = 60.0


@pytest.fixture
def rig_env() -> dict[str, str]:
    return {
        "TELEX_NOTIFIER_RETRY_SCHEDULE": "0.5,1,1,1,1,1,1,1,1,1,1,1,1,1",
        "TELEX_NOTIFIER_TIMEOUT": "1",
    }


async def test_fault_cycles_leave_memory_at_baseline(rig: Rig) -> None:
    rng = random.Random(f"memory-{SEED}")
    hook, sources, pipeline = rig.hook, rig.sources, rig.pipeline
    hook.hang_seconds, hook.retry_after = 2.0, 1
    done = asyncio.Event()
    feeder = asyncio.create_task(feed(sources, rng, done, tail=10))
    sizes: list[dict[str, float]] = []
    recovery: list[tuple[float, float]] = []  # (gateway ready again, all delivered after), s
    loop = asyncio.get_running_loop()
    try:
        await asyncio.sleep(3.0)
        await wait_until_delivered(sources, rig.subscriber, rig.receiver, DELIVERY_BOUND, hook=hook)
        baseline = pipeline.rss_mib()
        for _ in range(CYCLES):
            sources.mode.update({"src0": "500", "src1": "hang"})
            for mode in ("500", "hang", "429"):
                hook.mode = mode
                await asyncio.sleep(1.0)
            hook.mode = "ok"
            sources.mode.clear()
            t0 = loop.time()
            await pipeline.kill("gateway")
            await pipeline.start("gateway")
            await pipeline.wait_ready(timeout=60)
            t1 = loop.time()
            await wait_until_delivered(
                sources, rig.subscriber, rig.receiver, DELIVERY_BOUND, hook=hook
            )
            recovery.append((round(t1 - t0, 1), round(loop.time() - t1, 1)))
            sizes.append(pipeline.rss_mib())
    finally:
        hook.mode = "ok"
        sources.mode.clear()
        done.set()
        await feeder

    await wait_until_delivered(sources, rig.subscriber, rig.receiver, DELIVERY_BOUND, hook=hook)
    await wait_until_settled(pipeline, rig.subscriber, rig.receiver, DELIVERY_BOUND, hook)
    check_exactly_once_in_order(sources, rig.subscriber, rig.receiver, pipeline.kills, hook=hook)
    assert rig.subscriber.connects > CYCLES, "the subscriber never had to resume"
    assert set(hook.answers.values()) >= {500, 429, None}, "the receiver never failed"

    print(
        f"memory (MiB, VmRSS) over {len(sources.published)} updates: baseline "
        + ", ".join(f"{r} {v:.1f}" for r, v in baseline.items())
        + "; after each cycle "
        + "; ".join(", ".join(f"{r} {v:.1f}" for r, v in s.items()) for s in sizes)
        + f"; recovery per cycle (ready, delivered) {recovery} s"
    )
    first, last = sizes[0], sizes[-1]
    for role in ("poller", "processor", "notifier"):
        grown = last[role] - first[role]
        assert grown <= GROWTH_MIB, f"{role} grew {grown:.1f} MiB after the first cycle: {sizes}"
    gateway = [s["gateway"] for s in sizes]
    assert max(gateway) - gateway[0] <= GROWTH_MIB, f"gateway restarts grew: {gateway}"
