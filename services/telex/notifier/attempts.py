"""The attempts log: one record per delivery attempt on ``telex.webhooks.attempts``.

Every notifier process reads the whole log and keeps, per subscription, its recent attempts
(for the API) and its health (failing since when; one success resets it), and per delivery the
highest attempt number finished. That last index is what keeps "arrive once" across restarts:
a delivery read again from the wire or the retry topic after a crash is skipped when the log
already shows its attempt.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from telex.kafka import Clients, TopicFollower
from telex.log import get_logger

log = get_logger(__name__)

MAX_DONE = 500_000  # deliveries remembered for duplicate suppression (~100 bytes each).


@dataclass
class Health:
    """How a subscription's deliveries have gone lately."""

    last_attempt_ms: int | None = None
    last_success_ms: int | None = None
    failing_since_ms: int | None = None
    consecutive_failures: int = 0
    last_outcome: str | None = None
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """For the API."""
        return asdict(self)


class AttemptLog:
    """Recent attempts, health and finished-attempt index, kept current from the topic."""

    def __init__(self, clients: Clients, topic: str, kept_per_subscription: int) -> None:
        self.topic = topic
        self.kept = kept_per_subscription
        self.recent: dict[str, deque[dict[str, Any]]] = {}
        self.health: dict[str, Health] = {}
        self._done: OrderedDict[str, int] = OrderedDict()
        self._follower = TopicFollower(clients, topic, self._apply_record, "notifier-attempts")

    async def start(self) -> None:
        """Read the log to its end, then follow it."""
        await self._follower.start()

    async def stop(self) -> None:
        """Stop following the log."""
        await self._follower.stop()

    def _apply_record(self, record: Any) -> None:
        try:
            item = orjson.loads(record.value)
            sub_id = item["subscription_id"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("notifier.attempts.bad_record", offset=record.offset)
            return
        self.apply(sub_id, item)

    def apply(self, sub_id: str, item: dict[str, Any]) -> None:
        """Take one attempt record into account."""
        recent = self.recent.get(sub_id)
        if recent is None:
            recent = self.recent[sub_id] = deque(maxlen=self.kept)
        recent.append(item)
        if item.get("test"):
            return  # a test event says nothing about the subscription's real deliveries.
        self.mark_done(item["webhook_id"], int(item["attempt"]))
        health = self.health.setdefault(sub_id, Health())
        at = int(item["time_ms"])
        if at >= (health.last_attempt_ms or 0):
            health.last_outcome, health.last_error = item["outcome"], item.get("error")
        health.last_attempt_ms = max(health.last_attempt_ms or 0, at)
        if item["outcome"] == "success":
            health.last_success_ms = max(health.last_success_ms or 0, at)
            health.failing_since_ms = None
            health.consecutive_failures = 0
        elif health.last_success_ms is None or at > health.last_success_ms:
            if health.failing_since_ms is None or at < health.failing_since_ms:
                health.failing_since_ms = at
            health.consecutive_failures += 1

    def mark_done(self, webhook_id: str, attempt: int) -> None:
        """Remember that ``attempt`` of delivery ``webhook_id`` finished."""
        if self._done.get(webhook_id, 0) < attempt:
            self._done[webhook_id] = attempt
        self._done.move_to_end(webhook_id)
        while len(self._done) > MAX_DONE:
            self._done.popitem(last=False)

    def done_attempt(self, webhook_id: str) -> int:
        """The highest finished attempt number of a delivery (0: none)."""
        return self._done.get(webhook_id, 0)

    def forget(self, sub_id: str) -> None:
        """Drop what is kept about a deleted subscription."""
        self.recent.pop(sub_id, None)
        self.health.pop(sub_id, None)
