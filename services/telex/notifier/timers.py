"""The retry timers: retries read from the retry topic, held in memory until due.

One heap, ordered by due time (ties in arrival order), woken when an earlier retry arrives;
never asleep more than a second, so that a clock step is noticed. Due retries are handed out
in due order, one at a time, letting workers start in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import Callable

from aiokafka import TopicPartition

from telex import metrics
from telex.events import now_ms
from telex.notifier.jobs import Job

_MAX_SLEEP = 1.0  # seconds


class RetryTimers:
    """Retries waiting for their time, each with the partition it was read from."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Job, TopicPartition]] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, due_ms: int, job: Job, tp: TopicPartition) -> None:
        """Hold ``job`` until ``due_ms`` (unix ms)."""
        heapq.heappush(self._heap, (due_ms, next(self._seq), job, tp))
        metrics.WEBHOOK_PENDING_RETRIES.set(len(self._heap))
        self._wake.set()

    def jobs(self) -> list[Job]:
        """Every job held, in no particular order."""
        return [entry[2] for entry in self._heap]

    def clear(self) -> None:
        """Forget every job held (they are read again from the retry topic)."""
        self._heap.clear()
        metrics.WEBHOOK_PENDING_RETRIES.set(0)

    def keep(self, owned: Callable[[TopicPartition], bool]) -> None:
        """Forget the jobs read from partitions no longer ``owned``."""
        self._heap = [entry for entry in self._heap if owned(entry[3])]
        heapq.heapify(self._heap)
        metrics.WEBHOOK_PENDING_RETRIES.set(len(self._heap))

    async def run(self, hand_off: Callable[[Job, TopicPartition], bool]) -> None:
        """Give due jobs to ``hand_off`` in due order, forever (``False``: the job was
        dropped rather than handed on)."""
        while True:
            if not self._heap:
                self._wake.clear()
                await self._wake.wait()
                continue
            due, _, job, tp = self._heap[0]
            wait = (due - now_ms()) / 1000
            if wait > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), min(wait, _MAX_SLEEP))
                continue
            heapq.heappop(self._heap)
            if not hand_off(job, tp):
                continue
            metrics.WEBHOOK_PENDING_RETRIES.set(len(self._heap))
            await asyncio.sleep(0)  # let workers start while many retries fall due.
