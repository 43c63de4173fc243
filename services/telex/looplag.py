"""Event loop lag: how long the loop was blocked, measured by a timer that should fire on time.

A callback that runs for 40 ms (CPU work, a blocking call) delays every other task of the
process by up to 40 ms: a WebSocket write, a Kafka fetch, a heartbeat. The monitor sleeps for a
fixed interval and observes how much later than asked it woke up.
"""

from __future__ import annotations

import asyncio

from telex import metrics
from telex.tasks import cancel_and_wait

# Often enough to catch blockings of a few ms in a minute's histogram; the cost is one timer
# callback per interval.
INTERVAL_S = 0.05


class LoopLagMonitor:
    """Owns one background task that observes ``telex_event_loop_lag_seconds``."""

    def __init__(self, interval: float = INTERVAL_S) -> None:
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start measuring on the running loop."""
        if self._task is None:
            self._task = asyncio.create_task(self._measure(), name="loop-lag")

    async def stop(self) -> None:
        """Stop measuring (cancelled and awaited)."""
        await cancel_and_wait(self._task)
        self._task = None

    async def _measure(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(self.interval)
            metrics.LOOP_LAG.observe(max(0.0, loop.time() - asked - self.interval))
