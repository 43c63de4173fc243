"""The notifier stage: wire and retry topics in, signed webhook deliveries out.

One consumer-group member reads the wire and the retry topic together (notifiers split their
partitions). A wire event becomes one delivery per matching subscription; a retry record is
held in a timer heap until it is due. Deliveries wait in a bounded queue per endpoint, drained
by at most ``max_in_flight`` workers, so a slow receiver only slows itself; when its queue is
full the delivery spills to the retry topic instead of stalling the wire.

A record's offset is committed only once every delivery it started has been handed off: done,
written to the retry topic, or written to the dead-letter topic, each acknowledged by Kafka.
A crash therefore loses nothing, and the attempts log (see :mod:`.attempts`) keeps the records
read again after the crash from being delivered twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import itertools
import random
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from telex import metrics
from telex.config import Config, NotifierConfig
from telex.events import now_ms
from telex.filters import Filter
from telex.kafka import (
    Batch,
    Clients,
    GroupConsumer,
    Producer,
    TopicSpec,
    deadletter,
    stop_quietly,
)
from telex.kafka.commits import AckTracker
from telex.kafka.table import scan_topic
from telex.log import get_logger
from telex.notifier import delivery
from telex.notifier.attempts import AttemptLog
from telex.notifier.signing import webhook_id as make_webhook_id
from telex.notifier.subscriptions import Secret, Subscription, SubscriptionStore
from telex.outbound import tls_context
from telex.ratelimit import TokenBucket
from telex.ssrf import AddressPolicy, GuardedTransport, TargetRefused
from telex.tasks import cancel_and_wait

log = get_logger(__name__)

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


def declared_id(name: str) -> str:
    """The subscription id of a webhook declared in the config file under ``name``."""
    return "wh_" + hashlib.blake2b(name.encode(), digest_size=10).hexdigest()


def notifier_topics(config: Config) -> list[TopicSpec]:
    """The topics the notifier needs besides the wire."""
    n = config.notifier
    partitions = config.topics.partitions
    return [
        TopicSpec(n.topic_webhooks, 1, compact=True),
        TopicSpec(n.topic_retry, partitions),
        TopicSpec(n.topic_dlq, 1),
        TopicSpec(n.topic_attempts, partitions),
    ]


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
        h = {k: v.decode() for k, v in record.headers or ()}
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


class Endpoint:
    """A subscription's bounded queue, its workers and its own connection pool.

    A pool per endpoint rather than one shared pool: a slow receiver cannot take connections
    from the others, and httpx's pool gets slow when one pool holds hundreds of connections to
    many hosts (measured for bench/notifier_deliveries.py).
    """

    def __init__(
        self,
        sub_id: str,
        max_queued: int,
        workers: int,
        timeout: float,
        transport: GuardedTransport,
        run: Callable[[Endpoint, Job], Awaitable[None]],
    ) -> None:
        self.sub_id = sub_id
        self.queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=max_queued)
        self.limiter = TokenBucket(rate=1.0)
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            trust_env=False,
            transport=transport,
        )
        self._run = run
        self._tasks: list[asyncio.Task[None]] = []
        self.busy = 0
        # Due retries that found the queue full wait here, not in the timer heap, and move
        # into the queue as workers free up.
        self.parked: deque[Job] = deque()
        self.grow(workers)

    def grow(self, workers: int) -> None:
        """Run at least ``workers`` workers (fewer take effect at the next start)."""
        while len(self._tasks) < workers:
            name = f"webhook:{self.sub_id}:{len(self._tasks)}"
            self._tasks.append(asyncio.create_task(self._work(), name=name))

    def offer(self, job: Job) -> bool:
        """Queue ``job``; ``False`` when the queue is full."""
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            return False
        metrics.WEBHOOK_QUEUED.inc()
        return True

    async def _work(self) -> None:
        while True:
            job = await self.queue.get()
            metrics.WEBHOOK_QUEUED.dec()
            self.busy += 1
            try:
                await self._handle(job)
            finally:
                self.busy -= 1
                while self.parked and self.offer(self.parked[0]):
                    self.parked.popleft()

    async def _handle(self, job: Job) -> None:
        backoff = 0.5
        while True:
            try:
                await self._run(self, job)
                break
            except KafkaError as exc:
                # The hand-off (attempt record, retry or dead letter) was not acknowledged:
                # do the job again once Kafka answers. The receiver may see this attempt
                # twice, with the same webhook-id; nothing is lost.
                log.warning("notifier.handoff_failed", subscription=self.sub_id, error=repr(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
            except Exception:
                # A bug, not a transient failure: say so loudly and move on rather than
                # hold the partition's commits forever.
                log.exception("notifier.job_failed", subscription=self.sub_id)
                job.release()
                break

    async def retire(self) -> None:
        """Stop once the queue is drained and no attempt is running (subscription deleted)."""
        while self.queue.qsize() or self.busy or self.parked:
            await asyncio.sleep(0.1)
        await self.stop()

    async def stop(self) -> None:
        """Cancel the workers; queued jobs stay uncommitted and are redone by the next owner."""
        await cancel_and_wait(*self._tasks)
        await self.client.aclose()
        metrics.WEBHOOK_QUEUED.dec(self.queue.qsize())


def next_delay(
    settings: NotifierConfig, step: int, retry_after: float | None, rng: random.Random
) -> float | None:
    """Seconds until the next attempt, or ``None`` when the schedule is exhausted.

    The schedule's delay gets +/- ``retry_jitter`` of itself. A receiver's ``Retry-After`` can
    lengthen the wait (up to ``retry_after_max``) but never shorten it below the schedule.
    """
    if step >= len(settings.retry_schedule):
        return None
    base = settings.retry_schedule[step]
    delay = base * (1 + rng.uniform(-settings.retry_jitter, settings.retry_jitter))
    if retry_after is not None:
        delay = max(delay, min(retry_after, settings.retry_after_max))
    return max(0.0, delay)


class Notifier:
    """The notifier stage: subscriptions, the delivery loop and the retry scheduler."""

    def __init__(self, config: Config, clients: Clients) -> None:
        self.config = config
        self.settings = config.notifier
        self.clients = clients
        self.policy = AddressPolicy(self.settings.allow_networks, hint="[notifier] allow_networks")
        self.store = SubscriptionStore(clients, self.settings.topic_webhooks)
        self.attempts = AttemptLog(
            clients, self.settings.topic_attempts, self.settings.attempts_kept
        )
        self.store.on_change = self._subscription_changed
        self.producer: Producer | None = None
        self._group: GroupConsumer | None = None
        self._tracker = AckTracker()
        self._endpoints: dict[str, Endpoint] = {}
        self._heap: list[tuple[int, int, Job, TopicPartition]] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._rng = random.Random()
        self._assigned = False
        self._paused = False
        self._loaded = asyncio.Event()
        self._tls: ssl.SSLContext | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self.sends = clients.watch("notifier")
        clients.reset.on_reset(self._start_over)

    @property
    def ready(self) -> bool:
        """True once subscriptions and the attempts log are loaded and partitions assigned;
        false while sends to Kafka fail or wait (``not_ready_reason`` says which)."""
        return self._assigned and self._loaded.is_set() and self.sends.ready

    @property
    def not_ready_reason(self) -> str | None:
        """Why the notifier is blocked on Kafka, if it is."""
        return self.sends.reason

    # Lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Load subscriptions and the attempts log, then start delivering."""
        # One TLS context for every endpoint's client: loading the CA bundle takes ~70 ms of
        # CPU, too much to pay per endpoint on the event loop.
        self._tls = await asyncio.to_thread(tls_context, self.config.outbound.ca_file)
        self.producer = self.clients.producer_for("notifier")
        await self.producer.start()
        self._group = GroupConsumer(
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
        # Joining the group takes seconds on the embedded broker: start it while the
        # subscriptions and the attempts log load. No record is read before both are loaded.
        await self._group.start(after=self._loaded)
        await asyncio.gather(self.store.start(self.producer), self.attempts.start())
        await self._apply_declared()
        self._loaded.set()
        self._count_states()
        self._tasks.append(asyncio.create_task(self._timer(), name="notifier-retry-timer"))
        log.info(
            "notifier.started",
            group=self.settings.group_id,
            subscriptions=len(self.store.entries),
            schedule=",".join(f"{d:g}" for d in self.settings.retry_schedule),
        )

    async def stop(self) -> None:
        """Stop consuming and delivering; whatever is not handed off is redone later."""
        await cancel_and_wait(*self._tasks)
        self._tasks = []
        await cancel_and_wait(*self._retiring)
        for endpoint in self._endpoints.values():
            await endpoint.stop()
        self._endpoints.clear()
        await self.store.stop()
        await self.attempts.stop()
        if self._group is not None:
            await self._group.stop()
            self._group = None
        await stop_quietly(self.producer)
        self.producer = None
        metrics.WEBHOOK_PENDING_RETRIES.set(0)

    async def _apply_declared(self) -> None:
        """Create or update the subscriptions declared in ``[[notifier.webhooks]]``.

        The id derives from the name, so every notifier process (and every restart) agrees on
        it. A changed secret becomes the signing secret; the previous one keeps signing for
        ``rotation_grace``. The state (paused, disabled) is left as the API or the notifier set
        it. A URL refused by the SSRF rules stops the start with a message naming it.
        """
        for declared in self.settings.webhooks:
            sub_id = declared_id(declared.name)
            try:
                await self.policy.check_url(declared.url)
            except TargetRefused as exc:
                raise RuntimeError(f"[[notifier.webhooks]] {declared.name}: url {exc}") from None
            fields: dict[str, Any] = {
                "url": declared.url,
                "filter": Filter.parse(declared.filter),
                "description": declared.description,
                "rate_limit": declared.rate_limit,
                "max_in_flight": declared.max_in_flight,
            }
            now = now_ms()
            current = self.store.get(sub_id)
            if current is None:
                await self.store.put(
                    Subscription(
                        id=sub_id,
                        state_changed_ms=now,
                        secrets=(Secret(secret=declared.secret, created_ms=now),),
                        created_ms=now,
                        updated_ms=now,
                        **fields,
                    )
                )
                log.info("notifier.declared.created", name=declared.name, subscription=sub_id)
                continue
            change = {k: v for k, v in fields.items() if getattr(current, k) != v}
            if not current.secrets or current.secrets[0].secret != declared.secret:
                expires = now + int(self.settings.rotation_grace * 1000)
                kept = tuple(
                    s.model_copy(update={"expires_ms": min(s.expires_ms or expires, expires)})
                    for s in current.secrets
                    if s.secret != declared.secret and (s.expires_ms is None or s.expires_ms > now)
                )
                change["secrets"] = (Secret(secret=declared.secret, created_ms=now), *kept)
            if change:
                await self.store.update(sub_id, lambda _, c=change: c)  # type: ignore[misc]
                log.info(
                    "notifier.declared.updated",
                    name=declared.name,
                    subscription=sub_id,
                    fields=",".join(sorted(change)),
                )

    async def _start_over(self) -> None:
        """The broker lost its data: write the subscriptions back from memory, and the retries
        waiting here to the new retry topic.

        The consumer group starts again on the new wire and retry topic from their start (its
        committed offsets went with the broker). The attempts log's index stays in memory, so
        an event that the processor puts on the new wire again is not delivered a second time
        to a receiver that already acknowledged it.
        """
        subs = self.store.all()
        held = [entry[2] for entry in self._heap]
        held += [job for endpoint in self._endpoints.values() for job in endpoint.parked]
        self._heap.clear()
        metrics.WEBHOOK_PENDING_RETRIES.set(0)
        if self._group is not None:
            self._tracker.restart(self._group.assignment())
            await self._group.start_over()
        try:
            for sub in subs:
                await self.store.put(sub)
            for job in held:
                await self._schedule(job, due_ms=now_ms(), reason="recreated")
        except KafkaError as exc:
            log.warning("notifier.start_over.write_failed", error=repr(exc))
        log.warning("notifier.started_over", subscriptions=len(subs), retries=len(held))

    # Assignment --------------------------------------------------------------------------

    async def _revoked_partitions(self, revoked: list[TopicPartition]) -> None:
        """Commit what is handed off, then drop the revoked partitions' pending retries."""
        await self._commit()
        for tp in revoked:
            self._tracker.forget(tp)
        self._heap = [entry for entry in self._heap if self._tracker.owned(entry[3])]
        heapq.heapify(self._heap)
        metrics.WEBHOOK_PENDING_RETRIES.set(len(self._heap))
        self._assigned = False

    async def _assigned_partitions(self, assigned: list[TopicPartition]) -> None:
        """Track the new partitions."""
        for tp in assigned:
            self._tracker.assign(tp)
        self._paused = False
        self._assigned = True
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
        await self._commit()

    async def _rewind(self) -> None:
        """After a failed batch, start again from the committed offsets.

        Part of the batch may not have been dispatched; re-reading it is safe because the
        attempts log skips whatever was already delivered.
        """
        assert self._group is not None
        self._tracker.restart(self._group.assignment())
        await self._group.seek_to_committed()
        self._heap.clear()  # every entry came from the retry topic, read again now.
        metrics.WEBHOOK_PENDING_RETRIES.set(0)

    async def _on_wire(self, tp: TopicPartition, record: Any) -> None:
        try:
            event = orjson.loads(record.value)
            event_id = str(event["id"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("notifier.wire.bad_record", partition=tp.partition, offset=record.offset)
            self._tracker.add(tp, record.offset, 0)
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
        release = self._tracker.add(tp, record.offset, len(matched))
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
            self._tracker.add(tp, record.offset, 0)
            return
        job.release = self._tracker.add(tp, record.offset, 1)
        heapq.heappush(self._heap, (due, next(self._seq), job, tp))
        metrics.WEBHOOK_PENDING_RETRIES.set(len(self._heap))
        self._wake.set()

    def _flow_control(self) -> None:
        """Pause the retry topic while too many retries wait in memory."""
        assert self._group is not None
        consumer = self._group.consumer
        limit = self.settings.max_pending_retries
        retry_tps = [tp for tp in consumer.assignment() if tp.topic == self.settings.topic_retry]
        held = len(self._heap) + sum(len(e.parked) for e in self._endpoints.values())
        if not self._paused and held >= limit:
            consumer.pause(*retry_tps)
            self._paused = True
        elif self._paused and held < limit // 2:
            consumer.resume(*retry_tps)
            self._paused = False

    async def _commit(self) -> None:
        offsets = self._tracker.commits()
        if not offsets or self._group is None:
            return
        try:
            if await self._group.commit(offsets):
                self._tracker.committed(offsets)
        except KafkaError as exc:
            # Nothing to redo: what is handed off stays so, and the next commit covers it.
            log.warning("notifier.commit_failed", error=repr(exc))

    async def _timer(self) -> None:
        """Hand due retries to their endpoints, in due order."""
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
                    await asyncio.wait_for(self._wake.wait(), min(wait, 1.0))
                continue
            heapq.heappop(self._heap)
            if not self._tracker.owned(tp):
                continue
            if self.store.get(job.sub_id) is None:
                job.release()  # subscription deleted since.
                continue
            endpoint = self._endpoint(job.sub_id)
            if not endpoint.offer(job):
                endpoint.parked.append(job)  # saturated: its workers take it when free.
            metrics.WEBHOOK_PENDING_RETRIES.set(len(self._heap))
            await asyncio.sleep(0)  # let workers start while many retries fall due.

    # Delivering --------------------------------------------------------------------------

    def _endpoint(self, sub_id: str) -> Endpoint:
        endpoint = self._endpoints.get(sub_id)
        if endpoint is None:
            sub = self.store.get(sub_id)
            workers = (sub.max_in_flight if sub else None) or self.settings.max_in_flight
            assert self._tls is not None
            limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
            endpoint = Endpoint(
                sub_id,
                self.settings.max_queued,
                workers,
                self.settings.timeout,
                GuardedTransport(self.policy, self._tls, limits),
                self._run,
            )
            self._endpoints[sub_id] = endpoint
        return endpoint

    def _count_states(self) -> None:
        states = {"active": 0, "paused": 0, "disabled": 0}
        for entry in self.store.entries.values():
            states[entry.sub.state] += 1
        for state, count in states.items():
            metrics.WEBHOOK_SUBSCRIPTIONS.labels(state).set(count)

    def _subscription_changed(self, sub: Subscription | None, sub_id: str) -> None:
        if self._loaded.is_set():  # while loading, once at the end instead of per record.
            self._count_states()
        if sub is None:
            self.attempts.forget(sub_id)
            retired = self._endpoints.pop(sub_id, None)
            if retired is not None:
                task = asyncio.create_task(retired.retire(), name=f"retire:{sub_id}")
                self._retiring.add(task)
                task.add_done_callback(self._retiring.discard)
            return
        endpoint = self._endpoints.get(sub_id)
        if endpoint is not None and sub.max_in_flight:
            endpoint.grow(sub.max_in_flight)

    async def submit(self, job: Job) -> None:
        """Queue a first attempt; a full endpoint queue spills it to the retry topic."""
        if self._endpoint(job.sub_id).offer(job):
            return
        await self._schedule(job, due_ms=now_ms(), reason="overflow")
        job.release()

    async def _run(self, endpoint: Endpoint, job: Job) -> None:
        """One attempt of ``job``, then its hand-off: done, retry or dead letter."""
        sub = self.store.get(job.sub_id)
        if sub is None:
            job.release()  # deleted: nothing to deliver to.
            return
        if sub.state != "active":
            await self._dead_letter(job, sub.state, None, f"subscription {sub.state}")
            job.release()
            return
        if self.attempts.done_attempt(job.webhook_id) >= job.attempt:
            metrics.WEBHOOK_SKIPPED.inc()
            job.release()
            return
        if sub.rate_limit:
            endpoint.limiter.rate = sub.rate_limit
            await endpoint.limiter.wait()
        at = now_ms()
        result = await delivery.attempt(
            endpoint.client,
            sub.url,
            job.body,
            delivery.headers_for(sub.live_secrets(at), job.webhook_id, job.body),
            policy=self.policy,
            max_redirects=self.settings.max_redirects,
        )
        metrics.WEBHOOK_ATTEMPTS.labels(result.outcome).inc()
        metrics.WEBHOOK_ATTEMPT_DURATION.observe(result.latency_s)
        if result.ok and job.attempt == 1:
            # A first attempt's job was made when the wire record was read.
            metrics.HOP_SECONDS.labels("webhook").observe(max(0, now_ms() - job.first_ms) / 1000)
        if result.outcome == "tls_error":
            log.warning("notifier.tls_refused", subscription=sub.id, error=result.error)
        next_due: int | None = None
        verdict = "delivered"
        if not result.ok:
            verdict, next_due = await self._after_failure(sub, job, result, at)
        await self._record_attempt(sub.id, job, result, at, verdict, next_due)
        # Per attempt at debug level; the processor's update.processed line maps the update id
        # to this event id, so one update can be followed to its receivers.
        log.debug(
            "update.delivered",
            event_id=job.event_id,
            subscription=sub.id,
            attempt=job.attempt,
            outcome=result.outcome,
            verdict=verdict,
        )
        # Only once the hand-off is acknowledged: a failed one is redone, not skipped.
        self.attempts.mark_done(job.webhook_id, job.attempt)
        job.release()

    async def _after_failure(
        self, sub: Subscription, job: Job, result: delivery.Result, at: int
    ) -> tuple[str, int | None]:
        """Retry, dead-letter or disable after a failed attempt; returns (verdict, due)."""
        if result.outcome == "gone":
            await self.disable(sub.id, "receiver answered 410 Gone", "gone")
            await self._dead_letter(job, "gone", result, "receiver answered 410 Gone")
            return "dead", None
        if result.outcome == "refused":
            await self._dead_letter(job, "refused", result, result.error or "refused")
            return "dead", None
        health = self.attempts.health.get(sub.id)
        since = health.failing_since_ms if health and health.failing_since_ms else at
        since = max(since, sub.state_changed_ms)
        if at - since >= self.settings.disable_after * 1000:
            reason = f"failing continuously since {since} (unix ms)"
            await self.disable(sub.id, reason, "failing")
            await self._dead_letter(job, "disabled", result, reason)
            return "dead", None
        delay = next_delay(self.settings, job.step, result.retry_after_s, self._rng)
        if delay is None:
            await self._dead_letter(job, "exhausted", result, "retry schedule exhausted")
            return "dead", None
        due = now_ms() + int(delay * 1000)
        retry = Job(
            sub_id=job.sub_id,
            webhook_id=job.webhook_id,
            event_id=job.event_id,
            body=job.body,
            attempt=job.attempt + 1,
            step=job.step + 1,
            first_ms=job.first_ms,
        )
        await self._schedule(retry, due_ms=due, reason="failure")
        return "retry", due

    async def _schedule(self, job: Job, due_ms: int, reason: str) -> None:
        assert self.producer is not None
        metrics.WEBHOOK_RETRIES.labels(reason).inc()
        await self.producer.send_and_wait(
            self.settings.topic_retry,
            job.body,
            key=job.sub_id.encode(),
            headers=job.headers(**{H_DUE: due_ms}),
        )

    async def _dead_letter(
        self, job: Job, reason: str, result: delivery.Result | None, detail: str
    ) -> None:
        assert self.producer is not None
        metrics.WEBHOOK_DEAD_LETTERS.labels(reason).inc()
        # Attempts made so far: the current one counts if it was made (result is not None).
        made = job.attempt if result is not None else job.attempt - 1
        extra: dict[str, str | int] = {
            H_REASON: reason,
            deadletter.STAGE: "notifier",
            H_ERROR: detail[:300],
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
        await self.producer.send_and_wait(
            self.settings.topic_dlq, job.body, key=job.sub_id.encode(), headers=job.headers(**extra)
        )

    async def _record_attempt(
        self,
        sub_id: str,
        job: Job,
        result: delivery.Result,
        at: int,
        verdict: str,
        next_due: int | None,
        test: bool = False,
    ) -> None:
        assert self.producer is not None
        item = {
            "subscription_id": sub_id,
            "webhook_id": job.webhook_id,
            "event_id": job.event_id,
            "attempt": job.attempt,
            "time_ms": at,
            "outcome": result.outcome,
            "status": result.status,
            "latency_ms": round(result.latency_s * 1000, 3),
            "error": result.error,
            "next": verdict,
            "next_attempt_ms": next_due,
        }
        if test:
            item["test"] = True
        await self.producer.send_and_wait(
            self.settings.topic_attempts, orjson.dumps(item), key=sub_id.encode()
        )

    # Operations used by the API ---------------------------------------------------------

    async def disable(self, sub_id: str, reason: str, kind: str) -> None:
        """Disable a subscription, saying why in its status."""
        updated = await self.store.update(
            sub_id,
            lambda _: {"state": "disabled", "state_reason": reason, "state_changed_ms": now_ms()},
        )
        if updated is not None:
            metrics.WEBHOOK_DISABLED.labels(kind).inc()
            log.warning("notifier.subscription_disabled", subscription=sub_id, reason=reason)

    async def send_test(self, sub: Subscription) -> tuple[str, delivery.Result]:
        """Deliver a test event now, once, without retries; the attempt is logged."""
        at = now_ms()
        event_id = f"test_{at}_{self._rng.getrandbits(32):08x}"
        event = {
            "specversion": "1.0",
            "id": event_id,
            "source": "/telex/webhooks",
            "type": "telex.webhook.test",
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at / 1000)),
            "subject": sub.id,
            "datacontenttype": "application/json",
            "data": {"subscription_id": sub.id, "message": "telex webhook test"},
        }
        body = orjson.dumps(event)
        job = Job(sub.id, make_webhook_id(event_id, sub.id), event_id, body)
        result = await delivery.attempt(
            self._endpoint(sub.id).client,
            sub.url,
            body,
            delivery.headers_for(sub.live_secrets(at), job.webhook_id, body),
            policy=self.policy,
            max_redirects=self.settings.max_redirects,
        )
        metrics.WEBHOOK_ATTEMPTS.labels(result.outcome).inc()
        await self._record_attempt(sub.id, job, result, at, "none", None, test=True)
        return job.webhook_id, result

    async def dead_letters(
        self,
        sub_id: str,
        webhook_id: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
    ) -> list[tuple[Job, dict[str, str]]]:
        """Dead letters of a subscription (the latest per delivery), optionally narrowed."""

        found: dict[str, tuple[Job, dict[str, str]]] = {}

        def take(record: Any) -> None:
            h = {k: v.decode() for k, v in record.headers or ()}
            if h.get(H_SUB) != sub_id:
                return
            if webhook_id is not None and h.get(H_WEBHOOK_ID) != webhook_id:
                return
            dead = int(h.get(H_DEAD, "0"))
            if since_ms is not None and dead < since_ms:
                return
            if until_ms is not None and dead > until_ms:
                return
            job = Job(
                sub_id=sub_id,
                webhook_id=h[H_WEBHOOK_ID],
                event_id=h.get(H_EVENT_ID, ""),
                body=record.value or b"",
                attempt=int(h.get(H_ATTEMPT, "0")),
                first_ms=int(h.get(H_FIRST, "0")),
            )
            found[job.webhook_id] = (job, h)

        await scan_topic(self.clients, self.settings.topic_dlq, take)
        return list(found.values())

    async def replay(self, jobs: list[Job]) -> None:
        """Schedule dead letters for delivery now, with a fresh retry schedule."""
        now = now_ms()
        for job in jobs:
            again = Job(
                sub_id=job.sub_id,
                webhook_id=job.webhook_id,
                event_id=job.event_id,
                body=job.body,
                attempt=max(job.attempt, self.attempts.done_attempt(job.webhook_id)) + 1,
                step=0,
                first_ms=job.first_ms,
            )
            await self._schedule(again, due_ms=now, reason="replay")
