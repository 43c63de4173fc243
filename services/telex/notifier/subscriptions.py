"""Webhook subscriptions and the compacted topic that holds them.

One record per subscription in ``telex.webhooks`` (key = subscription id, value = JSON, a
tombstone on delete). Every notifier process reads the whole topic from the start and keeps the
latest version of each key (the embedded broker never compacts, and real Kafka compacts late,
so readers must do it themselves). Writers bump ``version``; a reader ignores a record older
than what it holds, so a process sees its own writes at once and others' shortly after.
"""

from __future__ import annotations

import asyncio
import secrets as _secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from telex.events import now_ms
from telex.filters import Filter, Matcher
from telex.kafka import Clients, Producer, TopicFollower
from telex.log import get_logger

log = get_logger(__name__)

State = Literal["active", "paused", "disabled"]


class Secret(BaseModel):
    """A signing secret; ``expires_ms`` is set on the old one during a rotation."""

    model_config = ConfigDict(frozen=True)

    secret: str
    created_ms: int
    expires_ms: int | None = None


class Subscription(BaseModel):
    """One webhook subscription as stored in ``telex.webhooks``."""

    model_config = ConfigDict(frozen=True)

    id: str
    url: str
    filter: Filter = Filter()
    description: str = ""
    rate_limit: float | None = Field(None, description="Deliveries per second, at most.")
    max_in_flight: int | None = Field(None, description="Concurrent requests, at most.")
    state: State = "active"
    state_reason: str | None = None
    state_changed_ms: int = 0
    secrets: tuple[Secret, ...] = ()
    created_ms: int
    updated_ms: int
    version: int = 1

    def live_secrets(self, at_ms: int) -> list[str]:
        """The secrets that sign a delivery made at ``at_ms``, newest first."""
        live = [s for s in self.secrets if s.expires_ms is None or s.expires_ms > at_ms]
        return [s.secret for s in sorted(live, key=lambda s: -s.created_ms)]

    def public(self) -> dict[str, Any]:
        """The subscription as the API shows it: never the secrets."""
        data = self.model_dump(mode="json", exclude={"secrets"})
        data["filter"] = self.filter.model_dump(mode="json", exclude_defaults=True)
        data["secrets"] = [
            {"created_ms": s.created_ms, "expires_ms": s.expires_ms} for s in self.secrets
        ]
        return data


def new_id() -> str:
    """A subscription id: ``wh_`` + 20 hex digits."""
    return "wh_" + _secrets.token_hex(10)


def encode(sub: Subscription) -> bytes:
    """The record value of a subscription."""
    return orjson.dumps(sub.model_dump(mode="json"))


def decode(value: bytes) -> Subscription:
    """A subscription from its record value (raises ``ValueError`` on a bad record)."""
    return Subscription.model_validate(orjson.loads(value))


@dataclass
class CompiledSubscription:
    """A subscription and its compiled filter."""

    sub: Subscription
    matcher: Matcher = field(init=False)

    def __post_init__(self) -> None:
        self.matcher = self.sub.filter.compile()


class SubscriptionStore:
    """Every subscription, kept current from the compacted topic."""

    def __init__(self, clients: Clients, topic: str) -> None:
        self.topic = topic
        self.entries: dict[str, CompiledSubscription] = {}
        self._deleted: dict[str, int] = {}
        self._producer: Producer | None = None
        self._follower = TopicFollower(clients, topic, self._apply_record, "notifier-subscriptions")
        self._lock = asyncio.Lock()
        self.on_change: Callable[[Subscription | None, str], None] | None = None

    def get(self, sub_id: str) -> Subscription | None:
        """The subscription ``sub_id``, or ``None``."""
        entry = self.entries.get(sub_id)
        return entry.sub if entry is not None else None

    def all(self) -> list[Subscription]:
        """Every subscription, oldest first."""
        return sorted((e.sub for e in self.entries.values()), key=lambda s: s.created_ms)

    async def start(self, producer: Producer) -> None:
        """Read the topic to its end, then keep following it in the background."""
        self._producer = producer
        await self._follower.start()
        log.info("notifier.subscriptions.loaded", count=len(self.entries))

    async def stop(self) -> None:
        """Stop following the topic (the clients are stopped by their owner)."""
        await self._follower.stop()

    def _apply_record(self, record: Any) -> None:
        sub_id = record.key.decode() if record.key else ""
        if record.value is None:
            version = int(dict(record.headers or ()).get("telex-version", b"0") or 0)
            self._delete(sub_id, version)
            return
        try:
            sub = decode(record.value)
        except ValidationError as exc:
            # Where and what, never the input: a record carries signing secrets.
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
            )
            log.warning("notifier.subscriptions.bad_record", key=sub_id, error=problems[:300])
            return
        except ValueError:
            log.warning("notifier.subscriptions.bad_record", key=sub_id, error="not JSON")
            return
        self._apply(sub)

    def _apply(self, sub: Subscription) -> None:
        current = self.entries.get(sub.id)
        if current is not None and current.sub.version > sub.version:
            return
        if self._deleted.get(sub.id, -1) >= sub.version:
            return
        self.entries[sub.id] = CompiledSubscription(sub)
        if self.on_change is not None:
            self.on_change(sub, sub.id)

    def _delete(self, sub_id: str, version: int) -> None:
        current = self.entries.get(sub_id)
        if current is not None and current.sub.version > version:
            return
        self._deleted[sub_id] = max(version, self._deleted.get(sub_id, -1))
        if self.entries.pop(sub_id, None) is not None and self.on_change is not None:
            self.on_change(None, sub_id)

    async def put(self, sub: Subscription) -> Subscription:
        """Write a subscription (its version must already be bumped) and apply it here."""
        assert self._producer is not None
        await self._producer.send_and_wait(self.topic, encode(sub), key=sub.id.encode())
        self._apply(sub)
        return sub

    async def update(
        self, sub_id: str, change: Callable[[Subscription], dict[str, Any]]
    ) -> Subscription | None:
        """Read-modify-write one subscription; ``None`` when it does not exist."""
        async with self._lock:
            current = self.get(sub_id)
            if current is None:
                return None
            fields = change(current)
            updated = current.model_copy(
                update={**fields, "version": current.version + 1, "updated_ms": now_ms()}
            )
            return await self.put(updated)

    async def delete(self, sub_id: str) -> bool:
        """Delete a subscription with a tombstone; ``False`` when it does not exist."""
        assert self._producer is not None
        async with self._lock:
            current = self.get(sub_id)
            if current is None:
                return False
            version = current.version + 1
            await self._producer.send_and_wait(
                self.topic,
                None,
                key=sub_id.encode(),
                headers=[("telex-version", str(version).encode())],
            )
            self._delete(sub_id, version)
            return True
