"""The notifier stage: wire and retry topics in, signed webhook deliveries out.

This module wires the parts; each does one thing. One consumer-group member reads the wire
and the retry topic together (:mod:`.intake`; notifiers split their partitions). A wire event
becomes one job (:mod:`.jobs`) per matching subscription; a retry record is held by the
timers (:mod:`.timers`) until due. Jobs wait in a bounded queue per endpoint
(:mod:`.endpoints`), drained by at most ``max_in_flight`` workers, so a slow receiver only
slows itself; when its queue is full the job spills to the retry topic instead of stalling the
wire. Each attempt is handed off (:mod:`.handoff`): done, retried per the schedule
(:mod:`.schedule`) or dead-lettered (:mod:`.deadletters`).

A record's offset is committed only once every job it started has been handed off, each
acknowledged by Kafka. A crash therefore loses nothing, and the attempts log (see
:mod:`.attempts`) keeps the records read again after the crash from being delivered twice.
"""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from telex import metrics
from telex.config import Config
from telex.events import now_ms
from telex.kafka import Clients, TopicSpec, stop_quietly
from telex.log import get_logger
from telex.notifier import delivery
from telex.notifier.attempts import AttemptLog
from telex.notifier.deadletters import Wanted, read_dead_letters
from telex.notifier.declared import apply_declared
from telex.notifier.endpoints import Endpoints
from telex.notifier.handoff import HandOff
from telex.notifier.intake import Intake
from telex.notifier.jobs import Job
from telex.notifier.subscriptions import Subscription, SubscriptionStore
from telex.notifier.timers import RetryTimers
from telex.outbound import tls_context
from telex.ssrf import AddressPolicy
from telex.tasks import cancel_and_wait

log = get_logger(__name__)


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
        self.handoff = HandOff(self.settings, self.store, self.attempts, self.policy)
        self.endpoints = Endpoints(self.settings, self.store, self.policy, self.handoff.run)
        self.timers = RetryTimers()
        self.intake = Intake(
            config, clients, self.store, self.timers, self.submit, self.endpoints.parked
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._loaded = asyncio.Event()
        self.sends = clients.watch("notifier")
        clients.reset.on_reset(self._start_over)

    @property
    def ready(self) -> bool:
        """True once subscriptions and the attempts log are loaded and partitions assigned;
        false while sends to Kafka fail or wait (``not_ready_reason`` says which)."""
        return self.intake.assigned and self._loaded.is_set() and self.sends.ready

    @property
    def not_ready_reason(self) -> str | None:
        """Why the notifier is blocked on Kafka, if it is."""
        return self.sends.reason

    # Lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Load subscriptions and the attempts log, then start delivering."""
        # One TLS context for every endpoint's client: loading the CA bundle takes ~70 ms of
        # CPU, too much to pay per endpoint on the event loop.
        self.endpoints.tls = await asyncio.to_thread(tls_context, self.config.outbound.ca_file)
        producer = self.handoff.producer = self.clients.producer_for("notifier")
        await producer.start()
        # Joining the group takes seconds on the embedded broker: start it while the
        # subscriptions and the attempts log load. No record is read before both are loaded.
        await self.intake.start(after=self._loaded)
        await asyncio.gather(self.store.start(producer), self.attempts.start())
        await apply_declared(self.settings, self.store, self.policy)
        self._loaded.set()
        self._count_states()
        self._tasks.append(
            asyncio.create_task(self.timers.run(self._due), name="notifier-retry-timer")
        )
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
        await self.endpoints.stop()
        await self.store.stop()
        await self.attempts.stop()
        await self.intake.stop()
        await stop_quietly(self.handoff.producer)
        self.handoff.producer = None
        metrics.WEBHOOK_PENDING_RETRIES.set(0)

    async def _start_over(self) -> None:
        """The broker lost its data: write the subscriptions back from memory, and the retries
        waiting here to the new retry topic.

        The consumer group starts again on the new wire and retry topic from their start (its
        committed offsets went with the broker). The attempts log's index stays in memory, so
        an event that the processor puts on the new wire again is not delivered a second time
        to a receiver that already acknowledged it.
        """
        subs = self.store.all()
        held = self.timers.jobs()
        held += [job for endpoint in self.endpoints for job in endpoint.parked]
        self.timers.clear()
        await self.intake.start_over()
        try:
            for sub in subs:
                await self.store.put(sub)
            for job in held:
                await self.handoff.schedule(job, due_ms=now_ms(), reason="recreated")
        except KafkaError as exc:
            log.warning("notifier.start_over.write_failed", error=repr(exc))
        log.warning("notifier.started_over", subscriptions=len(subs), retries=len(held))

    # Delivering --------------------------------------------------------------------------

    def _due(self, job: Job, tp: TopicPartition) -> bool:
        """Hand a due retry to its endpoint; False when it is dropped instead."""
        if not self.intake.tracker.owned(tp):
            return False
        if self.store.get(job.sub_id) is None:
            job.release()  # subscription deleted since.
            return False
        endpoint = self.endpoints.get(job.sub_id)
        if not endpoint.offer(job):
            endpoint.parked.append(job)  # saturated: its workers take it when free.
        return True

    async def submit(self, job: Job) -> None:
        """Queue a first attempt; a full endpoint queue spills it to the retry topic."""
        if self.endpoints.get(job.sub_id).offer(job):
            return
        await self.handoff.schedule(job, due_ms=now_ms(), reason="overflow")
        job.release()

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
            self.endpoints.retire(sub_id)
            return
        self.endpoints.grow(sub_id, sub.max_in_flight)

    # Operations used by the API ---------------------------------------------------------

    async def send_test(self, sub: Subscription) -> tuple[str, delivery.Result]:
        """Deliver a test event now, once, without retries; the attempt is logged."""
        return await self.handoff.send_test(sub, self.endpoints.get(sub.id).client)

    async def dead_letters(
        self,
        sub_id: str,
        webhook_id: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
    ) -> list[tuple[Job, dict[str, str]]]:
        """Dead letters of a subscription (the latest per delivery), optionally narrowed."""
        wanted = Wanted(sub_id, webhook_id, since_ms, until_ms)
        return await read_dead_letters(self.clients, self.settings.topic_dlq, wanted)

    async def replay(self, jobs: list[Job]) -> None:
        """Schedule dead letters for delivery now, with a fresh retry schedule."""
        now = now_ms()
        for job in jobs:
            attempt = max(job.attempt, self.attempts.done_attempt(job.webhook_id)) + 1
            await self.handoff.schedule(job.again(attempt, 0), due_ms=now, reason="replay")
