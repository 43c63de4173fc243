"""Webhook endpoints: per subscription, a bounded queue of jobs, its workers and its own
connection pool.

A pool per endpoint rather than one shared pool: a slow receiver cannot take connections from
the others, and one pool holding hundreds of connections to many hosts was measured slower
(bench/notifier_deliveries.py, with httpx's pool). A queue that is full makes a first attempt
spill to the retry topic; a due retry that finds it full is parked and moves into the queue as
workers free up.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import aiohttp
from aiokafka.errors import KafkaError

from telex import metrics
from telex.config import NotifierConfig
from telex.log import get_logger
from telex.notifier.jobs import Job
from telex.notifier.subscriptions import SubscriptionStore
from telex.ratelimit import TokenBucket
from telex.ssrf import AddressPolicy, guarded_session
from telex.tasks import cancel_and_wait

log = get_logger(__name__)

_HANDOFF_BACKOFF_MAX = 30.0  # seconds between tries of an unacknowledged hand-off, at most
# Idle connections to a receiver are kept this long: one that gets a delivery every few seconds
# keeps its connection instead of paying a new handshake (TLS included) each time.
_KEEPALIVE_S = 15.0


class Endpoint:
    """A subscription's bounded queue, its workers and its own connection pool."""

    def __init__(
        self,
        sub_id: str,
        settings: NotifierConfig,
        workers: int,
        client: aiohttp.ClientSession,
        run: Callable[[Endpoint, Job], Awaitable[None]],
    ) -> None:
        self.sub_id = sub_id
        self.queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=settings.max_queued)
        self.limiter = TokenBucket(rate=1.0)
        self.client = client
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
                backoff = min(backoff * 2, _HANDOFF_BACKOFF_MAX)
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
        await self.client.close()
        metrics.WEBHOOK_QUEUED.dec(self.queue.qsize())


@dataclass(eq=False)
class Endpoints:
    """The endpoints of one notifier, made on first use, one per subscription."""

    settings: NotifierConfig
    store: SubscriptionStore
    policy: AddressPolicy
    run: Callable[[Endpoint, Job], Awaitable[None]]
    tls: ssl.SSLContext | None = None  # set at start: loading it takes ~70 ms
    _open: dict[str, Endpoint] = field(default_factory=dict, init=False)
    _retiring: set[asyncio.Task[None]] = field(default_factory=set, init=False)

    def __contains__(self, sub_id: object) -> bool:
        return sub_id in self._open

    def __iter__(self) -> Iterator[Endpoint]:
        return iter(list(self._open.values()))

    def get(self, sub_id: str) -> Endpoint:
        """The endpoint of ``sub_id``, made with its subscription's ``max_in_flight``."""
        endpoint = self._open.get(sub_id)
        if endpoint is None:
            sub = self.store.get(sub_id)
            workers = (sub.max_in_flight if sub else None) or self.settings.max_in_flight
            assert self.tls is not None
            client = guarded_session(
                self.policy,
                self.tls,
                limit=workers,
                keepalive_s=_KEEPALIVE_S,
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
                cookies=False,  # a receiver's cookies never go back to it
                decompress=False,  # the answer is only logged, at most 64 KiB of it
            )
            endpoint = Endpoint(sub_id, self.settings, workers, client, self.run)
            self._open[sub_id] = endpoint
        return endpoint

    def parked(self) -> int:
        """Due retries waiting for a place in their endpoint's queue."""
        return sum(len(e.parked) for e in self._open.values())

    def grow(self, sub_id: str, workers: int | None) -> None:
        """Give an open endpoint at least ``workers`` workers (its subscription changed)."""
        endpoint = self._open.get(sub_id)
        if endpoint is not None and workers:
            endpoint.grow(workers)

    def retire(self, sub_id: str) -> None:
        """Close ``sub_id``'s endpoint once its queue is drained (subscription deleted)."""
        retired = self._open.pop(sub_id, None)
        if retired is not None:
            task = asyncio.create_task(retired.retire(), name=f"retire:{sub_id}")
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def stop(self) -> None:
        """Stop every endpoint, retiring ones included."""
        await cancel_and_wait(*self._retiring)
        for endpoint in self._open.values():
            await endpoint.stop()
        self._open.clear()
