"""The notifier's intake: the wire and the retry topic, read as one consumer-group member,
turned into jobs; offsets committed only once their jobs are handed off.

A wire event becomes one job per matching subscription (created before the event reached the
wire: a subscription never gets retained history); a retry record goes to the timers until
due. Each record's offset is tracked with the number of jobs it started and committed once
every one of them is done, retried or dead-lettered (each acknowledged by Kafka), so a crash
loses nothing. The retry topic is paused while too many retries wait in memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiokafka import TopicPartition

from telex import metrics
from telex.config import Config
from telex.events import now_ms
from telex.kafka import Batch, Clients, Committer, GroupConsumer
from telex.kafka.commits import AckTracker
from telex.log import get_logger
from telex.notifier.jobs import Job
from telex.notifier.signing import webhook_id as make_webhook_id
from telex.notifier.subscriptions import SubscriptionStore
from telex.notifier.timers import RetryTimers

log = get_logger(__name__)


class Intake:
    """Reads the wire and the retry topic for one notifier; tracks and commits offsets."""

    def __init__(
        self,
        config: Config,
        clients: Clients,
        store: SubscriptionStore,
        timers: RetryTimers,
        submit: Callable[[Job], Awaitable[None]],
        parked: Callable[[], int],
    ) -> None:
        self.config = config
        self.settings = config.notifier
        self.clients = clients
        self.store = store
        self.timers = timers
        self.submit = submit
        self.parked = parked  # due retries waiting in endpoints, held in memory too
        self.tracker = AckTracker()
        self.group: GroupConsumer | None = None
        self.assigned = False
        self._paused = False
        self.committer: Committer | None = None

    async def start(self, after: asyncio.Event) -> None:
        """Join the group; no record is read before ``after`` (an event) is set."""
        self.group = GroupConsumer(
            self.clients,
            [self.config.topics.wire, self.settings.topic_retry],
            self.settings.group_id,
            self._dispatch,
            name="notifier",
            on_assigned=self._assigned_partitions,
            on_revoked=self._revoked_partitions,
            on_error=self._rewind,
            timeout_ms=200,
            max_poll_records=500,
        )
        self.committer = Committer(
            self.group,
            self.clients.commit_interval_s(),
            self.tracker.commits,
            self.tracker.committed,
        )
        self.committer.start()
        await self.group.start(after=after)

    async def stop(self) -> None:
        """Leave the group."""
        if self.committer is not None:
            await self.committer.stop()
            self.committer = None
        if self.group is not None:
            await self.group.stop()
            self.group = None

    async def start_over(self) -> None:
        """The broker lost its data: read the new wire and retry topic from their start."""
        if self.group is not None:
            assert self.committer is not None  # made with the group
            # Forgotten with no commit in flight, which would bring the old offsets back.
            async with self.committer.held():
                self.tracker.restart(self.group.assignment())
            await self.group.start_over()

    # Assignment --------------------------------------------------------------------------

    async def _revoked_partitions(self, revoked: list[TopicPartition]) -> None:
        """Commit what is handed off, then drop the revoked partitions' pending retries."""
        if self.committer is not None:
            await self.committer.flush()
        for tp in revoked:
            self.tracker.forget(tp)
        self.timers.keep(self.tracker.owned)
        self.assigned = False

    async def _assigned_partitions(self, assigned: list[TopicPartition]) -> None:
        """Track the new partitions."""
        for tp in assigned:
            self.tracker.assign(tp)
        self._paused = False
        self.assigned = True
        log.info("notifier.assigned", partitions=len(assigned))

    # Consuming ---------------------------------------------------------------------------

    async def _dispatch(self, batch: Batch) -> None:
        """Turn wire events into deliveries and retry records into timers; commit what is
        handed off."""
        wire = self.config.topics.wire
        for tp, records in batch.items():
            for record in records:
                if tp.topic == wire:
                    await self._on_wire(tp, record)
                else:
                    self._on_retry(tp, record)
        self._flow_control()
        if self.committer is not None:
            self.committer.batch_done()

    async def _rewind(self) -> None:
        """After a failed batch, start again from the committed offsets.

        Part of the batch may not have been dispatched; re-reading it is safe because the
        attempts log skips whatever was already delivered.
        """
        assert self.group is not None
        self.tracker.restart(self.group.assignment())
        await self.group.seek_to_committed()
        self.timers.clear()  # every entry came from the retry topic, read again now.

    async def _on_wire(self, tp: TopicPartition, record: Any) -> None:
        try:
            event = orjson.loads(record.value)
            event_id = str(event["id"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("notifier.wire.bad_record", partition=tp.partition, offset=record.offset)
            self.tracker.add(tp, record.offset, 0)
            return
        # A subscription gets what reached the wire after it was created, never the retained
        # history (a new consumer group starts at the beginning of the wire).
        at = record.timestamp if record.timestamp is not None and record.timestamp > 0 else now_ms()
        metrics.HOP_SECONDS.labels("wire_notifier").observe(max(0, now_ms() - at) / 1000)
        matched = [
            e.sub
            for e in self.store.entries.values()
            if at >= e.sub.created_ms and e.matcher.matches(event)
        ]
        release = self.tracker.add(tp, record.offset, len(matched))
        for sub in matched:
            job = Job(
                sub_id=sub.id,
                webhook_id=make_webhook_id(event_id, sub.id),
                event_id=event_id,
                body=record.value,
                release=release,
            )
            await self.submit(job)

    def _on_retry(self, tp: TopicPartition, record: Any) -> None:
        try:
            job, due = Job.from_record(record)
        except ValueError as exc:
            log.warning("notifier.retry.bad_record", offset=record.offset, error=str(exc))
            self.tracker.add(tp, record.offset, 0)
            return
        job.release = self.tracker.add(tp, record.offset, 1)
        self.timers.push(due, job, tp)

    def _flow_control(self) -> None:
        """Pause the retry topic while too many retries wait in memory."""
        assert self.group is not None
        consumer = self.group.consumer
        limit = self.settings.max_pending_retries
        retry_tps = [tp for tp in consumer.assignment() if tp.topic == self.settings.topic_retry]
        held = len(self.timers) + self.parked()
        if not self._paused and held >= limit:
            consumer.pause(*retry_tps)
            self._paused = True
        elif self._paused and held < limit // 2:
            consumer.resume(*retry_tps)
            self._paused = False
