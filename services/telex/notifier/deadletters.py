"""Dead letters: deliveries given up on, written to the dead-letter topic and read back.

A dead letter is the event's bytes with the job's headers, plus why it died (``reason``,
the last status and error), when, and how many attempts were made. Reading back scans the
whole topic and keeps the latest dead letter per delivery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from telex import metrics
from telex.events import now_ms
from telex.kafka import Clients, Producer, deadletter
from telex.kafka.table import scan_topic
from telex.log import get_logger
from telex.notifier import delivery
from telex.notifier.jobs import (
    H_ATTEMPT,
    H_DEAD,
    H_ERROR,
    H_EVENT_ID,
    H_FIRST,
    H_REASON,
    H_STATUS,
    H_SUB,
    H_WEBHOOK_ID,
    Job,
    header_values,
)

log = get_logger(__name__)

MAX_DETAIL = 300  # characters of the error kept in the header


async def write_dead_letter(
    producer: Producer,
    topic: str,
    job: Job,
    reason: str,
    result: delivery.Result | None,
    detail: str,
) -> None:
    """Give up on ``job``: write it to the dead-letter topic and wait for the ack."""
    metrics.WEBHOOK_DEAD_LETTERS.labels(reason).inc()
    # Attempts made so far: the current one counts if it was made (result is not None).
    made = job.attempt if result is not None else job.attempt - 1
    extra: dict[str, str | int] = {
        H_REASON: reason,
        deadletter.STAGE: "notifier",
        H_ERROR: detail[:MAX_DETAIL],
        H_DEAD: now_ms(),
        H_ATTEMPT: made,
    }
    if result is not None and result.status is not None:
        extra[H_STATUS] = result.status
    log.warning(
        "notifier.dead_letter",
        subscription=job.sub_id,
        webhook_id=job.webhook_id,
        reason=reason,
        attempts=made,
    )
    await producer.send_and_wait(
        topic, job.body, key=job.sub_id.encode(), headers=job.headers(**extra)
    )


@dataclass(frozen=True)
class Wanted:
    """Which dead letters to read: a subscription's, narrowed to one delivery or a period."""

    sub_id: str
    webhook_id: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def matches(self, h: dict[str, str]) -> bool:
        """Whether the dead letter with headers ``h`` is wanted."""
        if h.get(H_SUB) != self.sub_id:
            return False
        if self.webhook_id is not None and h.get(H_WEBHOOK_ID) != self.webhook_id:
            return False
        dead = int(h.get(H_DEAD, "0"))
        since, until = self.since_ms, self.until_ms
        return (since is None or dead >= since) and (until is None or dead <= until)


async def read_dead_letters(
    clients: Clients, topic: str, wanted: Wanted
) -> list[tuple[Job, dict[str, str]]]:
    """The wanted dead letters, the latest per delivery."""
    found: dict[str, tuple[Job, dict[str, str]]] = {}

    def take(record: Any) -> None:
        h = header_values(record)
        if not wanted.matches(h):
            return
        job = Job(
            sub_id=wanted.sub_id,
            webhook_id=h[H_WEBHOOK_ID],
            event_id=h.get(H_EVENT_ID, ""),
            body=record.value or b"",
            attempt=int(h.get(H_ATTEMPT, "0")),
            first_ms=int(h.get(H_FIRST, "0")),
        )
        found[job.webhook_id] = (job, h)

    await scan_topic(clients, topic, take)
    return list(found.values())
