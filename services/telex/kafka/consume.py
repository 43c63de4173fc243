"""Consuming: one resilient fetch loop, and the consumer-group member built on it.

:func:`fetch_forever` is the only fetch loop of telex: a Kafka error is logged, waited out and
followed by the owner's rewind hook, and the loop goes on; nothing else ends it but
cancellation. :class:`GroupConsumer` adds what a consumer-group member needs: assignment hooks,
commits of what its owner has handed off, going back to the committed offsets after a failed
batch, and starting over from the beginning when the broker lost its data.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from telex.kafka.connect import stop_quietly
from telex.kafka.scan import Batch
from telex.log import get_logger
from telex.tasks import cancel_and_wait

if TYPE_CHECKING:
    from telex.kafka.clients import Clients

log = get_logger(__name__)

Handler = Callable[[Batch], Awaitable[None]]
Hook = Callable[[], Awaitable[None]]
PartitionsHook = Callable[[list[TopicPartition]], Awaitable[None]]


async def fetch_forever(
    consumer: AIOKafkaConsumer,
    handle: Handler,
    *,
    name: str,
    timeout_ms: int = 500,
    max_records: int | None = None,
    on_error: Hook | None = None,
    hold: asyncio.Event | None = None,
) -> None:
    """Fetch batches and hand each to ``handle`` (empty ones too) until cancelled.

    A :class:`KafkaError` from the fetch or from ``handle`` (a produce that failed) is logged,
    waited out for a second, and followed by ``on_error`` (the rewind hook: forget what the
    failed batch did, go back to what is known to be done). While ``hold`` is cleared nothing
    is fetched.
    """
    while True:
        if hold is not None and not hold.is_set():
            await asyncio.sleep(0.1)
            continue
        try:
            batch = await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
            await handle(batch)
        except KafkaError as exc:
            log.warning("kafka.consume_failed", consumer=name, error=repr(exc))
            await asyncio.sleep(1.0)
            if on_error is not None:
                try:
                    await on_error()
                except KafkaError as again:
                    log.warning("kafka.rewind_failed", consumer=name, error=repr(again))


class GroupConsumer(ConsumerRebalanceListener):  # type: ignore[misc]
    """One member of a consumer group, fetching with :func:`fetch_forever`.

    ``on_assigned``/``on_revoked`` run inside the rebalance (the consumer fetches nothing
    meanwhile); ``on_error`` is the owner's rewind hook after a failed batch, and defaults to
    going back to the committed offsets. ``reread_on_assign`` reads every assigned partition
    from its start (a compacted topic rebuilt by each owner).
    """

    def __init__(
        self,
        clients: Clients,
        topics: list[str],
        group_id: str,
        handle: Handler,
        *,
        name: str,
        on_assigned: PartitionsHook | None = None,
        on_revoked: PartitionsHook | None = None,
        on_error: Hook | None = None,
        reread_on_assign: bool = False,
        hold_while_resetting: bool = False,
        timeout_ms: int = 500,
        max_records: int | None = None,
        **overrides: Any,
    ) -> None:
        self.clients = clients
        self.name = name
        self.consumer = clients.consumer(group_id=group_id, **overrides)
        self.consumer.subscribe(topics, listener=self)
        self._handle = handle
        self._on_assigned = on_assigned
        self._on_revoked = on_revoked
        self._on_error = on_error
        self._reread_on_assign = reread_on_assign
        self._hold = clients.reset.intact if hold_while_resetting else None
        self._timeout_ms = timeout_ms
        self._max_records = max_records
        self._from_start = False  # set by start_over, for the next assignment
        self._task: asyncio.Task[None] | None = None

    async def start(self, after: asyncio.Event | None = None) -> None:
        """Join the group and fetch in the background (joining takes seconds); with ``after``,
        no record is fetched before that event is set."""
        self._task = asyncio.create_task(self._run(after), name=self.name)

    async def stop(self) -> None:
        """Stop fetching and leave the group (which hands the partitions to the others)."""
        await cancel_and_wait(self._task)
        self._task = None
        await stop_quietly(self.consumer)

    async def _run(self, after: asyncio.Event | None) -> None:
        await self.consumer.start()
        if after is not None:
            await after.wait()
        await fetch_forever(
            self.consumer,
            self._handle,
            name=self.name,
            timeout_ms=self._timeout_ms,
            max_records=self._max_records,
            on_error=self._on_error or self.seek_to_committed,
            hold=self._hold,
        )

    def assignment(self) -> list[TopicPartition]:
        """The partitions this member holds now, sorted."""
        return sorted(self.consumer.assignment())

    async def lag(self) -> dict[int, int]:
        """Records behind the end, per assigned partition, as of the last fetch.

        From ``highwater()``, not ``end_offsets()``: the embedded broker's end offsets are
        wrong for batches of several records.
        """
        behind = {}
        for tp in self.assignment():
            high = self.consumer.highwater(tp)
            if high is None:
                continue
            with contextlib.suppress(KafkaError, AssertionError):
                behind[tp.partition] = max(0, high - await self.consumer.position(tp))
        return behind

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> bool:
        """Commit ``offsets`` (next offset to read, per partition): call it only for records
        whose every output the broker acknowledged.

        ``False`` when the group rebalanced under us: the new owner redoes from the last commit
        and the owner's dedup (processor state, attempts log) drops what is done. Any other
        :class:`KafkaError` is raised, for the consume loop's rewind.
        """
        if not offsets:
            return True
        try:
            await self.consumer.commit(dict(offsets))
            return True
        except CommitFailedError as exc:
            log.warning("kafka.commit_failed", consumer=self.name, error=repr(exc))
            return False

    async def seek_to_committed(self, from_start: bool = False) -> None:
        """Go back to the committed offset of each assigned partition (its start if none)."""
        for tp in self.assignment():
            committed = None if from_start else await self.consumer.committed(tp)
            if committed is None:
                await self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, committed)

    async def start_over(self) -> None:
        """Read every partition from its start, now and at the next assignment.

        After the broker lost its data the group's committed offsets belong to the old topics
        (a commit may even have reached the new broker before anyone noticed).
        """
        self._from_start = True
        if self.assignment():
            try:
                await self.seek_to_committed(from_start=True)
            except KafkaError as exc:
                log.warning("kafka.start_over.seek_failed", consumer=self.name, error=repr(exc))

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        """Rebalance: the owner's hook first (it commits what is handed off)."""
        if self._on_revoked is not None:
            await self._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        """Rebalance: the owner's hook, then the start offsets."""
        if self._on_assigned is not None:
            await self._on_assigned(assigned)
        if assigned and (self._reread_on_assign or self._from_start):
            self._from_start = False
            await self.consumer.seek_to_beginning(*assigned)
