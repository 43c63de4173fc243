"""A source that answers 500s, hangs, returns garbage, then recovers: nothing it published
in the meantime is lost, and nothing else is disturbed.

While entries flow on six sources, one source goes through each failure in turn (its entries
keep growing behind the failure), two others fail at the same time in one way each, then all
recover. Every entry must then reach the subscriber and the webhook receiver exactly once, in
per-source order, the poller must have counted the errors, and every process stays ready.
"""

from __future__ import annotations

import asyncio
import random

from tests.faults.conftest import Rig
from tests.faults.harness import (
    check_exactly_once_in_order,
    feed,
    metric,
    wait_until_delivered,
    wait_until_settled,
)
from tests.faults.test_kills import SEED

DELIVERY_BOUND = 90.0
# Each fault lasts longer than the poller's fetch timeout (2 s in the harness) and several
# poll intervals, so the poller really meets it, and backs off, more than once.
FAULT_SECONDS = 3.0


async def test_failing_source_recovers_without_loss(rig: Rig) -> None:
    rng = random.Random(f"sources-{SEED}")
    done = asyncio.Event()
    feeder = asyncio.create_task(feed(rig.sources, rng, done, tail=15))
    reasons = ("http_5xx", "timeout", "extract")
    series = {r: f'telex_poller_errors_total{{reason="{r}"}}' for r in reasons}
    before = {r: await metric(rig.pipeline, "poller", s) for r, s in series.items()}
    try:
        await asyncio.sleep(1.0)
        rig.sources.mode["src1"] = "500"
        rig.sources.mode["src2"] = "hang"
        for mode in ("500", "hang", "garbage"):
            rig.sources.mode["src0"] = mode
            await asyncio.sleep(FAULT_SECONDS)
        rig.sources.mode["src1"] = "garbage"
        rig.sources.mode["src2"] = "ok"
        await asyncio.sleep(FAULT_SECONDS)
        rig.sources.mode.clear()
    finally:
        rig.sources.mode.clear()
        done.set()
        await feeder

    await wait_until_delivered(rig.sources, rig.subscriber, rig.receiver, DELIVERY_BOUND)
    await rig.pipeline.wait_ready(timeout=30)
    await wait_until_settled(rig.pipeline, rig.subscriber, rig.receiver, DELIVERY_BOUND)
    check_exactly_once_in_order(rig.sources, rig.subscriber, rig.receiver)
    # The poller met (and reported) each kind of failure.
    for reason in reasons:
        after = await metric(rig.pipeline, "poller", series[reason])
        assert after > before[reason], f"no poll failed with {reason}"
    assert rig.pipeline.starts == {"poller": 1, "processor": 1, "gateway": 1, "notifier": 1}
