"""Commits after acknowledgement: which offsets of a partition may be committed, when records
are handed off out of order (webhook deliveries finish in any order).

An offset is committable once every record before it is done; a record's outputs count as
done only when the broker acknowledged them. A crash then redoes, never skips.
"""

from __future__ import annotations

from collections.abc import Callable

from aiokafka import TopicPartition


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
