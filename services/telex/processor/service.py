"""Consume raw updates, enrich and dedup them, produce CloudEvents to the wire.

Consume -> produce -> commit: a batch's input offsets are committed only after every output of
the batch (and of the batches before) was acknowledged, in the background every
``[kafka] commit_interval_ms`` and at once before a hand-over. A crash re-processes; the dedup
state (restored from the wire, see :mod:`telex.processor.state`) makes re-processing emit
nothing twice. The events of raw partition *p* go to wire partition *p*, which is what lets
the wire serve as the changelog.

Near-duplicates arrive on any partition (the raw key is the source), so story linking needs
every partition's recent updates: each process tails the whole wire into its story index, the
way a Kafka Streams GlobalKTable works. Events of the partitions a process owns enter the index
as they are made (and from the restore); the tail adds the others'. Two near-duplicates
processed at the same instant by two processes, before either sees the other's event, start
two stories: the link is as good as the tail is fresh (a fetch round, well under a second),
and never a drop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, deque
from collections.abc import Iterator
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from telex import metrics
from telex.config import Config
from telex.events import PoisonRecord, decode_raw, encode, now_ms
from telex.kafka import Batch, Clients, Committer, GroupConsumer, Producer, deadletter, stop_quietly
from telex.kafka.scan import at_end, partitions_of
from telex.log import get_logger
from telex.processor.stage import Stage, published_time
from telex.processor.state import PartitionState, restore, source_headers
from telex.tasks import cancel_and_wait

log = get_logger(__name__)

# What became of one record: its event and the event's bytes, a dead-letter reason, or nothing.
Decided = tuple[TopicPartition, Any, tuple[dict[str, Any], bytes] | str | None]

__all__ = ["Processor", "published_time"]

# Wire records fetched by the tail but not yet folded into the story index: a bound on memory
# (the tail waits when it is reached).
_TAIL_QUEUE_BATCHES = 16
# The consume loop goes round at least every 0.5 s plus one batch; this long without a round
# means it is stuck.
_STALLED_AFTER_S = 60.0
# Batches whose outputs may still await their acknowledgement while the next batch is enriched
# and produced (a batch is finished, for the committer, once its outputs and the batch before
# it are).
_SETTLING_BATCHES = 4


def _retrieve(task: asyncio.Task[None]) -> None:
    """Collect a task's outcome, so asyncio does not report an exception never retrieved."""
    if not task.cancelled():
        task.exception()


async def settle(sends: list[Any]) -> None:
    """Wait for every send of a batch to be acknowledged or to fail, then raise the first
    failure.

    ``gather`` would raise at the first failure with other sends still in flight: the rewind
    that follows would restore the state from a wire those sends are still landing on.
    """
    results = await asyncio.gather(*sends, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


class Processor:
    """The processor stage: one consumer-group member."""

    def __init__(self, config: Config, clients: Clients, stage: Stage | None = None) -> None:
        self.config = config
        self.clients = clients
        # Built in start(), while the group join goes on: loading the enrichers' models is the
        # longest part of a start-up after the imports.
        self._stage = stage
        self._prepared = asyncio.Event()
        self._group: GroupConsumer | None = None
        self._restorer: AIOKafkaConsumer | None = None
        self._tailer: AIOKafkaConsumer | None = None
        self._producer: Producer | None = None
        self._states: dict[int, PartitionState] = {}
        # Held while a batch is processed and committed, and by the rebalance callbacks, so a
        # partition is never handed over in the middle of a batch. Only its holder touches the
        # partition states and the story index.
        self._lock = asyncio.Lock()
        self._tail_task: asyncio.Task[None] | None = None
        self._tail_queue: asyncio.Queue[dict[TopicPartition, list[Any]]] = asyncio.Queue(
            _TAIL_QUEUE_BATCHES
        )
        self._settling: deque[asyncio.Task[None]] = deque()
        # Next raw offset to read per partition whose outputs are all acknowledged, and what of
        # it is committed: the committer commits the difference.
        self._finished: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._committer: Committer | None = None
        self._tail_synced_at = -1.0  # loop time at which the tail last reached the wire's end
        self._assigned = False
        self._last_progress = 0.0
        self.sends = clients.watch("processor")
        clients.reset.on_reset(self._start_over)

    @property
    def stage(self) -> Stage:
        """The processor's logic (enrichers loaded): from :meth:`start` on."""
        if self._stage is None:
            raise RuntimeError("the processor's stage is loaded by start()")
        return self._stage

    @property
    def ready(self) -> bool:
        """Partitions assigned and restored, and the consume loop went round recently.

        A consumer can hang after a broker restart without an error (aiokafka#1154): readiness
        comes from this process's own progress, not from the client's view of itself.
        """
        stalled = asyncio.get_running_loop().time() - self._last_progress > _STALLED_AFTER_S
        return self._assigned and not stalled and self.sends.ready

    @property
    def not_ready_reason(self) -> str | None:
        """Why the processor is blocked on Kafka, if it is."""
        return self.sends.reason

    async def start(self) -> None:
        """Join the group, and meanwhile load the enrichers and connect the clients; the join
        and the processing go on in the background.

        A restarted member that the group recognises (static membership) is given its
        partitions within a fraction of a second, and on the embedded broker the join waits for
        the dead member's session to end: either way the join overlaps the rest of the
        start-up instead of following it. Partitions assigned before the rest is done wait for
        it in :meth:`_assigned_partitions`; nothing is fetched before.
        """
        self._producer = self.clients.producer_for("processor")
        self._restorer = self.clients.reader()
        self._tailer = self.clients.consumer(group_id=None)
        self._group = GroupConsumer(
            self.clients,
            [self.config.topics.raw],
            self.config.processor.group_id,
            self._round,
            name="processor",
            on_assigned=self._assigned_partitions,
            on_revoked=self._revoked_partitions,
            on_error=self._rewind,
            # Nothing is read (nor written) while the broker's topics are being checked.
            hold_while_resetting=True,
            max_records=self.config.processor.max_batch,
        )
        self._committer = Committer(
            self._group,
            self.clients.commit_interval_s(),
            self._uncommitted,
            self._committed.update,
        )
        self._committer.start()
        await self._group.start(after=self._prepared)
        if self._stage is None:
            # In a thread: the loop keeps the join's requests and heartbeats going meanwhile.
            self._stage = await asyncio.to_thread(Stage, self.config)
        await self._producer.start()
        await self._restorer.start()
        await self._tailer.start()
        self._tail_task = asyncio.create_task(self._tail(), name="processor-tail")
        self._prepared.set()
        log.info("processor.started", group=self.config.processor.group_id)

    async def stop(self) -> None:
        """Stop processing: what is finished is committed, the batches still waiting for their
        acknowledgements are abandoned uncommitted (they will be re-done)."""
        await cancel_and_wait(self._tail_task, *self._settling)
        self._tail_task = None
        self._settling.clear()
        if self._committer is not None:
            await self._committer.stop()
            self._committer = None
        if self._group is not None:
            await self._group.stop()
        await stop_quietly(self._restorer)
        await stop_quietly(self._tailer)
        await stop_quietly(self._producer)
        self._group = None
        self._restorer = self._tailer = self._producer = None

    async def _start_over(self) -> None:
        """The broker lost its data: forget the dedup state of the old wire and read the new
        raw topic from its start, so that what the pollers send again reaches the new wire
        (the dedup state restored from the new wire drops what is done)."""
        if self._group is not None:
            async with self._lock:
                await self._settle_all()
                # The finished offsets are of the lost topics: forgotten with no commit in
                # flight, which would bring them back.
                assert self._committer is not None
                async with self._committer.held():
                    self._finished.clear()
                    self._committed.clear()
                self._states = await self._restore(
                    [tp.partition for tp in self._group.assignment()]
                )
                await self._group.start_over()
        log.warning("processor.started_over")

    # Assignment --------------------------------------------------------------------------

    async def _revoked_partitions(self, revoked: list[TopicPartition]) -> None:
        """Wait for the batch in progress to be committed, then forget the revoked state.

        No batch is in progress while the lock is held; the batches still awaiting their
        acknowledgements are waited for here.
        """
        async with self._lock:
            # Batches still awaiting acknowledgements settle, and what is finished is committed,
            # before the handover: the new owner starts where this one stopped.
            await self._settle_all()
            if self._committer is not None:  # None once stopping
                await self._committer.flush()
            for tp in revoked:
                self._finished.pop(tp, None)
                self._committed.pop(tp, None)
                self._states.pop(tp.partition, None)
                with contextlib.suppress(KeyError):
                    metrics.CONSUMER_LAG.remove(str(tp.partition))
            self._assigned = False
            self._gauge_state()

    async def _assigned_partitions(self, assigned: list[TopicPartition]) -> None:
        """Restore the state of newly assigned partitions before any of their records run."""
        loop = asyncio.get_running_loop()
        async with self._lock:
            entered = loop.time()
            # Assigned while the start-up was still loading the enrichers or connecting.
            await self._prepared.wait()
            started = loop.time()
            partitions = sorted(tp.partition for tp in assigned if tp.partition not in self._states)
            self._states.update(await self._restore(partitions))
            # The other partitions' stories must be known before this process links any.
            await self._sync_tail(since=started)
            self._assigned = True
            self._last_progress = loop.time()
            self._gauge_state()
            metrics.RESTORE_SECONDS.observe(loop.time() - started)
            log.info(
                "processor.assigned",
                partitions=",".join(str(tp.partition) for tp in assigned),
                restored=",".join(map(str, partitions)),
                seconds=round(loop.time() - started, 3),
                waited_for_start_s=round(started - entered, 3),
            )

    # The wire tail (story index of every partition) ---------------------------------------

    async def _tail(self) -> None:
        """Follow every wire partition from its start, queueing records for the story index."""
        assert self._tailer is not None
        loop = asyncio.get_running_loop()
        wire = self.config.topics.wire
        while True:
            try:
                tps = await partitions_of(self._tailer, wire)
                if not tps:
                    await asyncio.sleep(0.5)
                    continue
                self._tailer.assign(tps)
                await self._tailer.seek_to_beginning(*tps)
                while True:
                    round_started = loop.time()
                    # This process's own partitions are indexed as their events are made (and
                    # by the restore): the tail pauses them rather than read its own output,
                    # and resumes a partition where it paused when the partition is revoked.
                    owned = set(self._states)
                    own = [tp for tp in tps if tp.partition in owned]
                    others = [tp for tp in tps if tp.partition not in owned]
                    self._tailer.pause(*own)
                    self._tailer.resume(*others)
                    batch = (
                        await self._tailer.getmany(*others, timeout_ms=200, max_records=2000)
                        if others
                        else {}
                    )
                    if not others:
                        await asyncio.sleep(0.2)
                    if batch:
                        await self._tail_queue.put(batch)
                    if await at_end(self._tailer, others):
                        self._tail_synced_at = round_started
            except Exception as exc:
                # Whatever went wrong, the tail starts over: story links depend on it, and a
                # dead tail would only show as stories that never link.
                log.warning("processor.tail_failed", error=repr(exc))
                await asyncio.sleep(1.0)

    async def _drain_tail(self) -> None:
        """Fold queued wire records of partitions this process does not own into the index."""
        batches = []
        while not self._tail_queue.empty():
            batches.append(self._tail_queue.get_nowait())
        if batches:
            owned = set(self._states)
            await asyncio.to_thread(self._index_batches, batches, owned)

    def _index_batches(
        self, batches: list[dict[TopicPartition, list[Any]]], owned: set[int]
    ) -> None:
        for batch in batches:
            for tp, records in batch.items():
                if tp.partition in owned:
                    continue  # this process's own events are indexed as they are made.
                for record in records:
                    try:
                        self.stage.index(orjson.loads(record.value)["data"])
                    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                        continue
        self._gauge_state()

    async def _sync_tail(self, since: float, timeout: float = 30.0) -> None:
        """Wait until the tail has read the whole wire as it was at ``since``, indexing it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._tail_synced_at < since:
            await self._drain_tail()
            if loop.time() > deadline:
                # Better to link a few stories late than to stall the partition.
                log.warning("processor.tail_sync_timeout", seconds=timeout)
                return
            await asyncio.sleep(0.02)
        await self._drain_tail()

    # Processing --------------------------------------------------------------------------

    async def _round(self, batch: Batch) -> None:
        """One round of the consume loop: fold the tail in, process ``batch`` (maybe empty)."""
        # The loop hands over whatever has arrived, up to max_batch: a batch never waits to fill.
        consumed_ms = now_ms()
        async with self._lock:
            # An earlier batch whose outputs failed: the consume loop rewinds to the last commit.
            self._raise_settle_failure()
            await self._drain_tail()
            if batch:
                await self._handle(batch, consumed_ms)
        await self._gauge_lag()
        self._last_progress = asyncio.get_running_loop().time()

    async def _gauge_lag(self) -> None:
        assert self._group is not None
        for partition, behind in (await self._group.lag()).items():
            metrics.CONSUMER_LAG.labels(str(partition)).set(behind)

    def _gauge_state(self) -> None:
        metrics.STATE_ENTRIES.labels("dedup").set(sum(len(s) for s in self._states.values()))
        # The group's first join calls the revoke hook (with nothing) while the stage loads.
        if self._stage is not None:
            metrics.STATE_ENTRIES.labels("stories").set(len(self._stage.stories))

    async def _restore(self, partitions: list[int]) -> dict[int, PartitionState]:
        """Dedup states of ``partitions`` rebuilt from the wire, their events in the index."""
        assert self._restorer is not None
        window = self.config.processor.restore_window_s
        # Without a time index on the broker (the embedded one): whole partitions.
        since_ms = (
            now_ms() - int(window * 1000) if self.clients.capabilities.offsets_for_times else None
        )
        updates: list[dict[str, Any]] = []
        restored = await restore(
            self._restorer,
            self.config.topics.wire,
            partitions,
            self.stage.new_state,
            lambda _p, data: updates.append(data),
            since_ms=since_ms,
        )
        await asyncio.to_thread(self.stage.index_many, updates)
        return restored

    async def _rewind(self) -> None:
        """After a failed batch: forget in-memory state and go back to the committed offsets.

        The failed batch may have updated the state for events that never reached the wire;
        re-reading the wire is the only truth.
        """
        assert self._group is not None
        async with self._lock:
            await self._settle_all()
            self._states = await self._restore([tp.partition for tp in self._group.assignment()])
            await self._group.seek_to_committed()

    def _decisions(
        self, batch: dict[TopicPartition, list[Any]], consumed_ms: int
    ) -> Iterator[Decided]:
        """Decide each record of ``batch``, one at a time: an event (and its bytes), a
        dead-letter reason, or nothing."""
        raw_hop = metrics.HOP_SECONDS.labels("raw_topic")
        for tp, records in batch.items():
            state = self._states.get(tp.partition)
            if state is None:
                continue  # revoked while we waited for the lock; its new owner does it.
            metrics.RAW_CONSUMED.inc(len(records))
            for record in records:
                yield tp, record, self._decide(record, state, consumed_ms, raw_hop)

    def _decide(
        self, record: Any, state: PartitionState, consumed_ms: int, raw_hop: Any
    ) -> tuple[dict[str, Any], bytes] | str | None:
        try:
            raw = decode_raw(record.value)
        except PoisonRecord as poison:
            return poison.reason
        if record.offset <= state.done_offset:
            # Its event is on the wire already (a partition handed over before its last
            # commit landed): the state is past it, so it must not be re-decided.
            metrics.DUPLICATES.inc()
            return None
        raw["consumed_ms"] = consumed_ms
        raw_hop.observe(max(0, consumed_ms - raw.get("produced_ms", consumed_ms)) / 1000)
        try:
            result = self.stage.process(raw, state, now_ms())
        except Exception as exc:
            # A record that breaks the processor itself (a bug, or input the checks let
            # through) must not stop its partition: it is dead-lettered, and said.
            log.exception("processor.record_failed", offset=record.offset)
            return f"processing failed: {exc!r}"[:500]
        if result.event is None:
            metrics.DUPLICATES.inc()
            return None
        state.done_offset = record.offset
        return result.event, encode(result.event)

    async def _handle(self, batch: Batch, consumed_ms: int) -> None:
        """Enrich ``batch`` a record at a time and produce each event as soon as it is made;
        the batch's offsets are committed once every output of it (and of the batches before)
        is acknowledged."""
        # Enrichment runs on the event loop, yielding after each record: the producer sends
        # an event while the next is enriched, and what is made while a request is in flight
        # goes in the next one. A worker thread would hand the interpreter lock back and
        # forth with the loop, and every socket call of the loop would wait for it.
        pending: list[Any] = []
        offsets: dict[TopicPartition, int] = {}
        produced: Counter[str] = Counter()
        hop = metrics.HOP_SECONDS.labels("processor")
        for tp, record, outcome in self._decisions(batch, consumed_ms):
            offsets[tp] = record.offset + 1
            if isinstance(outcome, str):
                pending.append(await self._dead_letter(tp, record, outcome))
            elif outcome is not None:
                event, value = outcome
                pending.append(await self._produce(tp, record, value))
                produced[event["type"]] += 1
                hop.observe(max(0, now_ms() - consumed_ms) / 1000)
            await asyncio.sleep(0)
        settling = asyncio.create_task(
            self._settle(
                pending, offsets, produced, self._settling[-1] if self._settling else None
            ),
            name="processor-settle",
        )
        self._settling.append(settling)
        # Acknowledgements and the commit overlap the next batch's enrichment; a bounded number
        # of batches may wait for theirs.
        while len(self._settling) > _SETTLING_BATCHES or (
            self._settling and self._settling[0].done()
        ):
            await asyncio.wait([self._settling[0]])
            self._raise_settle_failure()

    async def _produce(self, tp: TopicPartition, record: Any, value: bytes) -> Any:
        """Queue ``record``'s event on the wire partition of its raw partition."""
        assert self._producer is not None
        return await self._producer.send(
            self.config.topics.wire,
            value,
            key=record.key,
            partition=tp.partition,
            headers=source_headers(record.offset),
        )

    async def _settle(
        self,
        pending: list[Any],
        offsets: dict[TopicPartition, int],
        produced: Counter[str],
        previous: asyncio.Task[None] | None,
    ) -> None:
        """Mark a batch's offsets finished once its outputs are acknowledged, after the batch
        before it finished: a later offset is never committed while an earlier output may be
        lost."""
        try:
            # This batch's own sends settle first, whatever became of the batch before: a
            # rewind must not restore the state from a wire they are still landing on.
            if pending:
                await settle(pending)
        finally:
            if previous is not None:
                await previous  # its failure is this batch's: nothing after it may be committed
        for type_, count in produced.items():
            metrics.EVENTS_PRODUCED.labels(type_).inc(count)
        self._gauge_state()
        # Committed by the committer, in the background: a commit that fails or never comes
        # (a crash) only means re-reading, and the wire-restored state drops what is done.
        self._finished.update(offsets)
        assert self._committer is not None
        self._committer.batch_done()

    def _uncommitted(self) -> dict[TopicPartition, int]:
        """Finished offsets not committed yet."""
        return {
            tp: offset
            for tp, offset in self._finished.items()
            if offset > self._committed.get(tp, -1)
        }

    def _raise_settle_failure(self) -> None:
        """Raise the error of the oldest settled batch that failed (the consume loop rewinds)."""
        while self._settling and self._settling[0].done():
            task = self._settling.popleft()
            if not task.cancelled() and task.exception() is not None:
                # The batches after it fail with the same error; theirs is collected too.
                for later in self._settling:
                    later.add_done_callback(_retrieve)
                self._settling.clear()
                raise task.exception()  # type: ignore[misc]

    async def _settle_all(self) -> None:
        """Wait until every batch produced so far is finished or has failed (the failure is
        left to the consume loop: this is for a handover)."""
        tasks, self._settling = list(self._settling), deque()
        for task in tasks:
            with contextlib.suppress(Exception):
                await task

    async def _dead_letter(self, tp: TopicPartition, record: Any, reason: str) -> Any:
        assert self._producer is not None
        metrics.DLQ.labels("processor").inc()
        log.warning(
            "processor.dead_letter",
            topic=tp.topic,
            partition=tp.partition,
            offset=record.offset,
            reason=reason,
        )
        headers = deadletter.headers(
            reason, "processor", deadletter.origin(tp.topic, tp.partition, record.offset)
        )
        return await self._producer.send(
            self.config.topics.dlq, record.value, key=record.key, headers=headers
        )
