"""Commits after acknowledgement: which offsets of a partition may be committed, when records
are handed off out of order (webhook deliveries finish in any order), and committing them
off the consume loop.

An offset is committable once every record before it is done; a record's outputs count as
done only when the broker acknowledged them. A crash then redoes, never skips.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from telex.log import get_logger
from telex.tasks import cancel_and_wait

if TYPE_CHECKING:
    from telex.kafka.consume import GroupConsumer

log = get_logger(__name__)

_LAST_COMMIT_S = 5.0


class AckTracker:
    """Per partition, the offsets whose outputs are not acknowledged yet."""

    def __init__(self) -> None:
        self._pending: dict[TopicPartition, dict[int, int]] = {}
        self._next: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}

    def owned(self, tp: TopicPartition) -> bool:
        """Whether ``tp`` is assigned to us (and not revoked since)."""
        return tp in self._pending

    def assign(self, tp: TopicPartition) -> None:
        """Start tracking ``tp``."""
        self._pending.setdefault(tp, {})

    def forget(self, tp: TopicPartition) -> None:
        """Stop tracking ``tp`` (revoked): later releases for it are ignored."""
        self._pending.pop(tp, None)
        self._next.pop(tp, None)
        self._committed.pop(tp, None)

    def restart(self, tps: list[TopicPartition]) -> None:
        """Forget what is pending on ``tps`` and track them afresh (after a rewind)."""
        for tp in tps:
            self.forget(tp)
            self.assign(tp)

    def add(self, tp: TopicPartition, offset: int, count: int) -> Callable[[], None]:
        """Record that ``offset`` started ``count`` outputs; returns their release function."""
        pending = self._pending.get(tp)
        if pending is None:
            return lambda: None
        self._next[tp] = max(self._next.get(tp, 0), offset + 1)
        if count <= 0:
            return lambda: None
        pending[offset] = count

        def release() -> None:
            current = self._pending.get(tp)
            if current is not pending or offset not in pending:
                return
            pending[offset] -= 1
            if pending[offset] <= 0:
                del pending[offset]

        return release

    def commits(self) -> dict[TopicPartition, int]:
        """Offsets to commit now: below the oldest pending offset of each partition."""
        out = {}
        for tp, pending in self._pending.items():
            if tp not in self._next:
                continue
            upto = min(pending) if pending else self._next[tp]
            if upto > self._committed.get(tp, -1):
                out[tp] = upto
        return out

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        """Note a successful commit."""
        self._committed.update(offsets)


class Committer:
    """Commits a group member's finished offsets in the background: every ``interval_s``, or
    after each batch when it is 0, and at once on :meth:`flush` (a hand-over, a stop).

    One commit at a time, never on the consume loop: a commit is a round trip to the group
    coordinator and a replicated write there, which the next fetch need not wait for.
    ``collect`` gives the offsets to commit now (next offset to read, per partition);
    ``committed`` is told which were.
    """

    def __init__(
        self,
        group: GroupConsumer,
        interval_s: float,
        collect: Callable[[], dict[TopicPartition, int]],
        committed: Callable[[dict[TopicPartition, int]], None],
    ) -> None:
        self.group = group
        self.interval_s = interval_s
        self._collect = collect
        self._committed = committed
        self._lock = asyncio.Lock()
        self._wanted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Commit in the background from now on."""
        self._task = asyncio.create_task(self._run(), name=f"{self.group.name}-commits")

    async def stop(self) -> None:
        """Stop, after a last commit of what is finished (what is not committed is read again
        by the next owner). The last commit gets a few seconds: a stop does not wait long for
        a broker that is down."""
        await cancel_and_wait(self._task)
        self._task = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_LAST_COMMIT_S):
                await self.flush()

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """No commit runs inside (one in flight is waited for): for the owner to forget its
        offsets (the broker lost its data) without a late commit bringing old ones back."""
        async with self._lock:
            yield

    def batch_done(self) -> None:
        """A batch's outputs are acknowledged (with no interval, this commits them)."""
        self._wanted.set()

    async def flush(self) -> None:
        """Commit what is finished now (after a commit in flight, if any)."""
        async with self._lock:
            offsets = self._collect()
            if not offsets:
                return
            try:
                if await self.group.commit(offsets):
                    self._committed(offsets)
            except KafkaError as exc:
                # Nothing is lost: what is finished stays so, and the next commit covers it.
                log.warning("kafka.commit_failed", consumer=self.group.name, error=repr(exc))

    async def _run(self) -> None:
        while True:
            if self.interval_s > 0:
                await asyncio.sleep(self.interval_s)
            else:
                await self._wanted.wait()
                self._wanted.clear()
            await self.flush()
