"""Sends to Kafka, watched per component: which failed, and which are still waiting.

With ``acks=all`` a record is acknowledged once ``min.insync.replicas`` copies have it. With
fewer brokers up, the broker answers ``NotEnoughReplicas`` (or the leader is gone), errors the
client treats as retriable: the idempotent producer retries them for as long as it takes,
other producers until ``request_timeout_ms`` and then fail the send. Either way the stage is
stuck, which the stage itself cannot see from its code (a send that never completes raises
nothing). :class:`SendWatch` sees it from the sends: their failures (counted by error), and the
age of the oldest one still waiting. A stage is *blocked* (metric, and not ready on
``/readyz``) while its oldest waiting send is older than ``[kafka] send_blocked_after_s`` or
its latest send failed; the next acknowledged send clears it.

Every stage produces through :class:`Producer`, which wraps aiokafka's producer with the
component's watch.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    LeaderNotAvailableError,
    NotEnoughReplicasAfterAppendError,
    NotEnoughReplicasError,
    NotLeaderForPartitionError,
    ProducerClosed,
    RequestTimedOutError,
)

from telex import metrics
from telex.log import get_logger

log = get_logger(__name__)

# The error label of a failed send: a small fixed set, whatever aiokafka raises.
_ERRORS: dict[type[KafkaError], str] = {
    NotEnoughReplicasError: "not_enough_replicas",
    NotEnoughReplicasAfterAppendError: "not_enough_replicas_after_append",
    KafkaTimeoutError: "timeout",
    RequestTimedOutError: "request_timed_out",
    NotLeaderForPartitionError: "no_leader",
    LeaderNotAvailableError: "no_leader",
    KafkaConnectionError: "connection",
}

# A failed send that nothing follows stops counting after this long. The admin APIs (sources,
# webhooks) are served by the stages and sit behind their readiness: a stage whose only send
# failed would otherwise stay unready and never receive the write that makes it ready again.
FAILURE_HOLD_S = 60.0


def error_label(exc: BaseException) -> str:
    """The ``error`` label of a failed send."""
    for kind, label in _ERRORS.items():
        if isinstance(exc, kind):
            return label
    return "other"


class SendWatch:
    """The sends of one component (all of its producers): failures, and what still waits."""

    def __init__(
        self,
        component: str,
        blocked_after_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.component = component
        self.blocked_after_s = blocked_after_s
        self._clock = clock
        self._tokens = itertools.count()
        # Sends not acknowledged yet, by token, in the order they began: the first is the oldest.
        self._pending: dict[int, float] = {}
        self._failed: tuple[int, str, float] | None = None  # (token, error label, when)
        self._was_blocked = False
        metrics.PRODUCE_BLOCKED.labels(component).set_function(lambda: float(self.blocked))
        metrics.PRODUCE_OLDEST_PENDING.labels(component).set_function(self.oldest_pending_s)

    def begin(self) -> int:
        """A send begins; its token is passed to :meth:`end` (or :meth:`follow`)."""
        token = next(self._tokens)
        self._pending[token] = self._clock()
        return token

    def end(self, token: int, error: BaseException | None) -> None:
        """The send of ``token`` was acknowledged (``error`` None), failed, or was abandoned."""
        self._pending.pop(token, None)
        if error is None:
            if self._failed is not None and token > self._failed[0]:
                self._failed = None
        elif isinstance(error, KafkaError) and not isinstance(error, ProducerClosed):
            label = error_label(error)
            metrics.PRODUCE_ERRORS.labels(self.component, label).inc()
            if self._failed is None or token > self._failed[0]:
                self._failed = (token, label, self._clock())
        self._log_change()

    def follow(self, token: int, future: asyncio.Future[Any]) -> asyncio.Future[Any]:
        """Watch the delivery ``future`` of the send of ``token``; returns it."""

        def done(f: asyncio.Future[Any]) -> None:
            self.end(token, None if f.cancelled() else f.exception())

        future.add_done_callback(done)
        return future

    def oldest_pending_s(self) -> float:
        """Seconds the oldest unacknowledged send has waited (0 when none waits)."""
        began = next(iter(self._pending.values()), None)
        return 0.0 if began is None else max(0.0, self._clock() - began)

    @property
    def blocked(self) -> bool:
        """True while the oldest waiting send is too old, or the latest send failed."""
        if self.oldest_pending_s() > self.blocked_after_s:
            return True
        return self._failed is not None and self._clock() - self._failed[2] < FAILURE_HOLD_S

    @property
    def ready(self) -> bool:
        """Not blocked (a change since the last look is logged: a send that waits for ever
        ends no send that would log it)."""
        self._log_change()
        return not self._was_blocked

    @property
    def reason(self) -> str | None:
        """Why the component is blocked, for ``/readyz`` (``None`` when it is not)."""
        waited = self.oldest_pending_s()
        if waited > self.blocked_after_s:
            return f"kafka: a send has waited {waited:.0f} s for acknowledgement"
        if self.blocked and self._failed is not None:
            return f"kafka: the latest send failed ({self._failed[1]})"
        return None

    def _log_change(self) -> None:
        blocked = self.blocked
        if blocked != self._was_blocked:
            self._was_blocked = blocked
            if blocked:
                log.warning("kafka.sends.blocked", component=self.component, reason=self.reason)
            else:
                log.info("kafka.sends.flowing", component=self.component)


class Producer:
    """aiokafka's producer, with every send watched by the component's :class:`SendWatch`.

    The methods are aiokafka's, same arguments and results.
    """

    def __init__(self, producer: AIOKafkaProducer, watch: SendWatch) -> None:
        self.client = producer
        self.watch = watch

    async def start(self) -> None:
        """Connect (aiokafka's ``start``)."""
        await self.client.start()

    async def stop(self) -> None:
        """Flush what is pending and close."""
        await self.client.stop()

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]:
        """Queue a record; returns the future of its acknowledgement."""
        return await self._watched(
            self.client.send(topic, value, key=key, partition=partition, headers=headers)
        )

    async def send_and_wait(self, topic: str, value: bytes | None = None, **record: Any) -> Any:
        """Send a record (``key``, ``partition``, ``headers`` as :meth:`send` takes them) and
        wait for its acknowledgement (its ``RecordMetadata``)."""
        return await (await self.send(topic, value, **record))

    def create_batch(self) -> Any:
        """An empty record batch to fill and :meth:`send_batch`."""
        return self.client.create_batch()

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future[Any]:
        """Queue a record batch; returns the future of its acknowledgement."""
        return await self._watched(self.client.send_batch(batch, topic, partition=partition))

    async def _watched(self, queueing: Awaitable[asyncio.Future[Any]]) -> asyncio.Future[Any]:
        # Queueing itself can wait (for metadata, or room in a full batch) and fail: it counts.
        token = self.watch.begin()
        try:
            future = await queueing
        except BaseException as exc:
            self.watch.end(token, exc)
            raise
        return self.watch.follow(token, future)
