"""A webhook receiver that answers 500s, then hangs past the notifier's timeout, then answers
429 with Retry-After, then recovers: every update is acknowledged by the receiver exactly once.

While entries flow on six sources, the recording receiver goes through each failure in turn;
the notifier retries on a short schedule (set below, so the scenario stays bounded) under the
same ``webhook-id``. What the notifier promises (docs/webhooks.md) and what is asserted:

- every update reaches the receiver, under one ``webhook-id`` for all its attempts;
- at least once, and with no process killed here exactly once: each ``webhook-id`` is
  acknowledged (answered 2xx) once; the failed attempts before it are the retries;
- a 429's ``Retry-After`` is honoured: the next attempt of that delivery comes no sooner
  (3 s here, longer than any delay of the schedule, so it is the receiver's wish that shows);
- nothing is dead-lettered, the subscription stays active, every process stays ready.

The notifier does not promise per-source order (a retried update is overtaken by the ones
after it), so none is asserted for the receiver; the WebSocket subscriber still gets everything
once and in per-source order, since nothing upstream of the notifier failed.
"""

from __future__ import annotations

import asyncio
import itertools
import random

import httpx
import pytest

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
FAULT_SECONDS = 3.0
TIMEOUT = 1.5  # the notifier's per-attempt timeout here; the receiver hangs for 3 s
RETRY_AFTER = 3


@pytest.fixture
def rig_env() -> dict[str, str]:
    # Delays of at most 2 s (+/-20 %) for 25 s in all: longer than the ~10 s of faults plus
    # the backlog they leave, so no delivery runs out of retries, yet quick to recover.
    return {
        "TELEX_NOTIFIER_RETRY_SCHEDULE": "0.5,1,2,2,2,2,2,2,2,2,2,2,2,2",
        "TELEX_NOTIFIER_TIMEOUT": str(TIMEOUT),
    }


async def test_failing_receiver_gets_every_update_once(rig: Rig) -> None:
    rng = random.Random(f"webhooks-{SEED}")
    hook = rig.hook
    hook.hang_seconds = 2 * TIMEOUT
    hook.retry_after = RETRY_AFTER
    done = asyncio.Event()
    feeder = asyncio.create_task(feed(rig.sources, rng, done, tail=15))
    outcomes = ("http_error", "timeout")
    series = {o: f'telex_notifier_attempts_total{{outcome="{o}"}}' for o in outcomes}
    before = {o: await metric(rig.pipeline, "notifier", s) for o, s in series.items()}
    try:
        await asyncio.sleep(1.0)
        for mode in ("500", "hang", "429"):
            hook.mode = mode
            await asyncio.sleep(FAULT_SECONDS)
    finally:
        hook.mode = "ok"
        healed_at = asyncio.get_running_loop().time()
        done.set()
        await feeder
    healed = len(rig.receiver.requests)

    await wait_until_delivered(rig.sources, rig.subscriber, rig.receiver, DELIVERY_BOUND, hook=hook)
    # The figure for docs/reliability.md (pytest -s shows it).
    print(
        f"webhook faults: {len(rig.sources.published)} updates, "
        f"{len(rig.receiver.requests)} requests, all acknowledged "
        f"{asyncio.get_running_loop().time() - healed_at:.1f} s after the receiver healed"
    )
    await rig.pipeline.wait_ready(timeout=30)
    await wait_until_settled(rig.pipeline, rig.subscriber, rig.receiver, DELIVERY_BOUND, hook)
    check_exactly_once_in_order(rig.sources, rig.subscriber, rig.receiver, hook=hook)

    # The receiver really met each failure, and it was retried under the same webhook-id.
    answers = list(hook.answers.values())
    assert {500, 429, None} <= set(answers), f"not every failure was met: {set(answers)}"
    acknowledged = {r.headers["webhook-id"] for r in hook.accepted(rig.receiver)}
    failed = {
        r.headers["webhook-id"]
        for n, r in enumerate(rig.receiver.requests, 1)
        if (hook.answers[n] or 0) // 100 != 2
    }
    assert failed and failed <= acknowledged, "a failed delivery was never acknowledged"
    assert len(rig.receiver.requests) > healed, "nothing was retried after the receiver healed"

    # Retry-After: the attempt after a 429 came at least RETRY_AFTER seconds later.
    attempts: dict[str, list[int]] = {}
    for n, request in enumerate(rig.receiver.requests, 1):
        attempts.setdefault(request.headers["webhook-id"], []).append(n)
    early = []
    for numbers in attempts.values():
        for this, after in itertools.pairwise(numbers):
            if hook.answers[this] == 429:
                gap = rig.receiver.requests[after - 1].at - rig.receiver.requests[this - 1].at
                if gap < RETRY_AFTER:
                    early.append(round(gap, 3))
    assert not early, f"retried sooner than Retry-After ({RETRY_AFTER} s): {early[:10]}"

    for outcome in outcomes:
        after = await metric(rig.pipeline, "notifier", series[outcome])
        assert after > before[outcome], f"no attempt counted as {outcome}"
    for reason in ("exhausted", "disabled"):
        dead = await metric(
            rig.pipeline, "notifier", f'telex_notifier_dead_letters_total{{reason="{reason}"}}'
        )
        assert dead == 0, f"{dead:g} deliveries dead-lettered ({reason})"
    async with httpx.AsyncClient(timeout=5) as client:
        subs = (await client.get(f"{rig.pipeline.api('notifier')}/v1/webhooks")).json()
    assert [s["state"] for s in subs["webhooks"]] == ["active"]
    assert rig.pipeline.starts == {"poller": 1, "processor": 1, "gateway": 1, "notifier": 1}
