"""The event loop lag monitor: observes how long the loop was blocked, and stops cleanly."""

from __future__ import annotations

import asyncio
import time

from telex import metrics
from telex.looplag import LoopLagMonitor


def observed() -> tuple[float, float]:
    """(count, sum) of the loop lag histogram so far."""
    count = sum(s.value for s in metrics.LOOP_LAG.collect()[0].samples if s.name.endswith("_count"))
    total = metrics.LOOP_LAG._sum.get()
    return count, total


async def test_a_blocked_loop_is_observed_and_the_task_is_awaited_on_stop() -> None:
    monitor = LoopLagMonitor(interval=0.01)
    count, total = observed()
    await monitor.start()
    await asyncio.sleep(0.05)
    time.sleep(0.3)  # noqa: ASYNC251 - the point: a callback that blocks the loop
    await asyncio.sleep(0.05)
    task = monitor._task
    await monitor.stop()
    assert task is not None and task.done() and monitor._task is None
    after_count, after_total = observed()
    assert after_count > count
    # The timer asked for 10 ms could not fire during the 300 ms block: at least 290 ms late.
    assert after_total - total >= 0.29
    # Stopped: nothing more is observed.
    await asyncio.sleep(0.05)
    assert observed() == (after_count, after_total)
