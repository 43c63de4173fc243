"""In-process fan-out: each wire event is encoded once and the same frame goes to every
subscriber's bounded send queue.

A subscriber whose queue is full is marked slow and closed by its connection with a close code
that says so; it can resume with its cursor. Nobody else waits for it.
"""

from __future__ import annotations

import asyncio
import base64
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from telex import metrics

CLOSE_SLOW = 4008  # private-use close code: "you are too slow, resume with your cursor"


class CursorError(ValueError):
    """A cursor token that telex did not issue."""


def encode_cursor(positions: Mapping[int, int]) -> str:
    """An opaque token for a position on the wire: the next offset of every partition."""
    text = ",".join(f"{p}:{o}" for p, o in sorted(positions.items()))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(token: str) -> dict[int, int]:
    """The positions of a cursor token, or :class:`CursorError`."""
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        pairs = (item.split(":") for item in text.split(",") if item)
        positions = {int(p): int(o) for p, o in pairs}
    except (ValueError, UnicodeDecodeError) as exc:
        raise CursorError(f"malformed cursor {token[:40]!r}") from exc
    if any(p < 0 or o < 0 for p, o in positions.items()):
        raise CursorError("negative partition or offset in cursor")
    return positions


@dataclass(frozen=True, slots=True)
class Frame:
    """One event as sent to subscribers, encoded once."""

    text: str
    cursor: str


class Subscriber:
    """One connection's bounded send queue."""

    __slots__ = ("queue", "slow")

    def __init__(self, queue_size: int) -> None:
        self.queue: asyncio.Queue[Frame] = asyncio.Queue(queue_size)
        self.slow = False

    def offer(self, frame: Frame) -> None:
        """Queue a frame, or mark the subscriber slow when its queue is full."""
        if self.slow:
            return
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.slow = True
            metrics.SLOW_DISCONNECTS.inc()


class Hub:
    """Recent history plus the set of live subscribers."""

    def __init__(self, history_size: int, queue_size: int) -> None:
        self.history: deque[Frame] = deque(maxlen=history_size)
        self.queue_size = queue_size
        self.subscribers: set[Subscriber] = set()

    def subscribe(self) -> tuple[Subscriber, list[Frame]]:
        """A new subscriber and the history it should be sent first.

        Synchronous on purpose: no event can slip between the history snapshot and the
        registration, so the subscriber sees each event exactly once.
        """
        subscriber = Subscriber(self.queue_size)
        self.subscribers.add(subscriber)
        return subscriber, list(self.history)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Forget a subscriber."""
        self.subscribers.discard(subscriber)

    def publish(self, frames: Iterable[Frame]) -> None:
        """Hand frames to every subscriber."""
        for frame in frames:
            self.history.append(frame)
            for subscriber in self.subscribers:
                subscriber.offer(frame)
