"""A delivery job, and how it travels in Kafka headers (retry and dead-letter topics).

A job is one delivery of one event to one subscription. Its position in its retry schedule
(attempt, step, first attempt's time, when due) rides in the record's headers; the body is
the event's bytes, untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from telex.events import now_ms
from telex.kafka import deadletter

H_SUB = "telex-subscription"
H_WEBHOOK_ID = "webhook-id"
H_EVENT_ID = "telex-event-id"
H_ATTEMPT = "telex-attempt"
H_STEP = "telex-step"
H_DUE = "telex-due-ms"
H_FIRST = "telex-first-ms"
H_REASON = deadletter.REASON
H_STATUS = "telex-last-status"
H_ERROR = "telex-last-error"
H_DEAD = "telex-dead-ms"


def header_values(record: Any) -> dict[str, str]:
    """A record's headers as text."""
    return {k: v.decode() for k, v in record.headers or ()}


@dataclass
class Job:
    """One delivery of one event to one subscription (``attempt`` is 1-based, overall)."""

    sub_id: str
    webhook_id: str
    event_id: str
    body: bytes
    attempt: int = 1
    step: int = 0  # index into the retry schedule of the next delay
    first_ms: int = field(default_factory=now_ms)
    release: Callable[[], None] = lambda: None

    def again(self, attempt: int, step: int) -> Job:
        """Another attempt of the same delivery (released by whoever reads it back)."""
        return Job(
            sub_id=self.sub_id,
            webhook_id=self.webhook_id,
            event_id=self.event_id,
            body=self.body,
            attempt=attempt,
            step=step,
            first_ms=self.first_ms,
        )

    def headers(self, **extra: str | int) -> list[tuple[str, bytes]]:
        """Kafka headers carrying this job's position in its schedule."""
        base: dict[str, str | int] = {
            H_SUB: self.sub_id,
            H_WEBHOOK_ID: self.webhook_id,
            H_EVENT_ID: self.event_id,
            H_ATTEMPT: self.attempt,
            H_STEP: self.step,
            H_FIRST: self.first_ms,
        }
        base.update(extra)
        return [(k, str(v).encode()) for k, v in base.items()]

    @classmethod
    def from_record(cls, record: Any) -> tuple[Job, int]:
        """A job and its due time from a retry-topic record (``ValueError`` if malformed)."""
        h = header_values(record)
        try:
            job = cls(
                sub_id=h[H_SUB],
                webhook_id=h[H_WEBHOOK_ID],
                event_id=h.get(H_EVENT_ID, ""),
                body=record.value or b"",
                attempt=int(h[H_ATTEMPT]),
                step=int(h[H_STEP]),
                first_ms=int(h.get(H_FIRST, "0")),
            )
            return job, int(h[H_DUE])
        except (KeyError, ValueError) as exc:
            raise ValueError(f"bad retry record: {exc!r}") from None
