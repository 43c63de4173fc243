"""One attempt of a delivery job, then its hand-off: done, retry or dead letter.

A job is finished only when its hand-off is acknowledged by Kafka: the attempt recorded on the
attempts topic, and a failed attempt either written to the retry topic (due after the next
delay of the schedule, :mod:`.schedule`) or to the dead-letter topic. A receiver that answers
410 Gone, or that has failed for ``disable_after`` seconds, has its subscription disabled.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import aiohttp
import orjson

from telex import metrics
from telex.config import NotifierConfig
from telex.events import now_ms
from telex.kafka import Producer
from telex.log import get_logger
from telex.notifier import delivery
from telex.notifier.attempts import AttemptLog
from telex.notifier.deadletters import write_dead_letter
from telex.notifier.endpoints import Endpoint
from telex.notifier.jobs import H_DUE, Job
from telex.notifier.schedule import next_delay
from telex.notifier.signing import webhook_id as make_webhook_id
from telex.notifier.subscriptions import Subscription, SubscriptionStore
from telex.ssrf import AddressPolicy

log = get_logger(__name__)


@dataclass(eq=False)
class HandOff:
    """Makes attempts and hands their jobs off, with the notifier's producer."""

    settings: NotifierConfig
    store: SubscriptionStore
    attempts: AttemptLog
    policy: AddressPolicy
    producer: Producer | None = None  # set at start
    rng: random.Random = field(default_factory=random.Random)

    async def run(self, endpoint: Endpoint, job: Job) -> None:
        """One attempt of ``job``, then its hand-off: done, retry or dead letter."""
        sub = self.store.get(job.sub_id)
        if sub is None:
            job.release()  # deleted: nothing to deliver to.
            return
        if sub.state != "active":
            await self.dead_letter(job, sub.state, None, f"subscription {sub.state}")
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
        result = await self._attempt(endpoint.client, sub, job, at)
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

    async def _attempt(
        self, client: aiohttp.ClientSession, sub: Subscription, job: Job, at: int
    ) -> delivery.Result:
        """POST the job's body, signed with the subscription's live secrets; counted."""
        result = await delivery.attempt(
            client,
            sub.url,
            job.body,
            delivery.headers_for(sub.live_secrets(at), job.webhook_id, job.body),
            policy=self.policy,
            max_redirects=self.settings.max_redirects,
        )
        metrics.WEBHOOK_ATTEMPTS.labels(result.outcome).inc()
        return result

    async def _after_failure(
        self, sub: Subscription, job: Job, result: delivery.Result, at: int
    ) -> tuple[str, int | None]:
        """Retry, dead-letter or disable after a failed attempt; returns (verdict, due)."""
        if result.outcome == "gone":
            await self.disable(sub.id, "receiver answered 410 Gone", "gone")
            await self.dead_letter(job, "gone", result, "receiver answered 410 Gone")
            return "dead", None
        if result.outcome == "refused":
            await self.dead_letter(job, "refused", result, result.error or "refused")
            return "dead", None
        health = self.attempts.health.get(sub.id)
        since = health.failing_since_ms if health and health.failing_since_ms else at
        since = max(since, sub.state_changed_ms)
        if at - since >= self.settings.disable_after * 1000:
            reason = f"failing continuously since {since} (unix ms)"
            await self.disable(sub.id, reason, "failing")
            await self.dead_letter(job, "disabled", result, reason)
            return "dead", None
        delay = next_delay(self.settings, job.step, result.retry_after_s, self.rng)
        if delay is None:
            await self.dead_letter(job, "exhausted", result, "retry schedule exhausted")
            return "dead", None
        due = now_ms() + int(delay * 1000)
        await self.schedule(job.again(job.attempt + 1, job.step + 1), due_ms=due, reason="failure")
        return "retry", due

    async def schedule(self, job: Job, due_ms: int, reason: str) -> None:
        """Write ``job`` to the retry topic, due at ``due_ms``, and wait for the ack."""
        assert self.producer is not None
        metrics.WEBHOOK_RETRIES.labels(reason).inc()
        await self.producer.send_and_wait(
            self.settings.topic_retry,
            job.body,
            key=job.sub_id.encode(),
            headers=job.headers(**{H_DUE: due_ms}),
        )

    async def dead_letter(
        self, job: Job, reason: str, result: delivery.Result | None, detail: str
    ) -> None:
        """Write ``job`` to the dead-letter topic and wait for the ack."""
        assert self.producer is not None
        await write_dead_letter(self.producer, self.settings.topic_dlq, job, reason, result, detail)

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

    async def disable(self, sub_id: str, reason: str, kind: str) -> None:
        """Disable a subscription, saying why in its status."""
        updated = await self.store.update(
            sub_id,
            lambda _: {"state": "disabled", "state_reason": reason, "state_changed_ms": now_ms()},
        )
        if updated is not None:
            metrics.WEBHOOK_DISABLED.labels(kind).inc()
            log.warning("notifier.subscription_disabled", subscription=sub_id, reason=reason)

    async def send_test(
        self, sub: Subscription, client: aiohttp.ClientSession
    ) -> tuple[str, delivery.Result]:
        """Deliver a test event now, once, without retries; the attempt is logged."""
        at = now_ms()
        event_id = f"test_{at}_{self.rng.getrandbits(32):08x}"
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
        result = await self._attempt(client, sub, job, at)
        await self._record_attempt(sub.id, job, result, at, "none", None, test=True)
        return job.webhook_id, result
