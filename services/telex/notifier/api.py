"""``/v1/webhooks``: subscriptions, their attempts, test events and dead-letter replay.

Errors are ``{"error": {"field": ..., "message": ...}}`` with 422 for a bad value (the field
says which), 404 for an unknown subscription, 409 for a state that forbids the request.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from telex.events import now_ms
from telex.filters import Filter, FilterError
from telex.http import ApiError
from telex.kafka import deadletter
from telex.notifier.service import Notifier
from telex.notifier.signing import SecretError, new_secret, secret_key
from telex.notifier.subscriptions import Secret, Subscription, new_id
from telex.ssrf import TargetRefused

MAX_URL = 2048
MAX_GRACE_SECONDS = 7 * 24 * 3600


class WebhookChange(BaseModel):
    """The writable fields of a subscription; each one given is changed."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, max_length=MAX_URL)
    filter: dict[str, Any] | None = None
    description: str | None = Field(None, max_length=1000)
    rate_limit: float | None = Field(None, gt=0, le=10_000)
    max_in_flight: int | None = Field(None, ge=1, le=256)
    secret: str | None = Field(None, description="Refused here: use rotate-secret.")


class WebhookCreate(WebhookChange):
    """A new subscription: ``url`` is required, the secret is generated when not given."""

    url: str | None = Field(None, max_length=MAX_URL, description="Required.")
    secret: str | None = Field(None, description="whsec_... (generated when absent).")


class SecretRotation(BaseModel):
    """How long the previous secrets keep signing after a rotation."""

    model_config = ConfigDict(extra="forbid")

    grace_seconds: float | None = Field(None, ge=0, le=MAX_GRACE_SECONDS, strict=True)


class Redelivery(BaseModel):
    """Which dead letters to deliver again: one ``webhook_id``, or a time range."""

    model_config = ConfigDict(extra="forbid")

    webhook_id: str | None = Field(None, strict=True)
    since_ms: int | None = Field(None, strict=True, description="Unix milliseconds.")
    until_ms: int | None = Field(None, strict=True, description="Unix milliseconds.")


class WebhooksApi:
    """The routes, bound to one notifier."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self.store = notifier.store

    async def _check_url(self, url: str) -> str:
        url = url.strip()
        try:
            await self.notifier.policy.check_url(url)
        except TargetRefused as exc:
            raise ApiError(422, f"url {exc}", "url") from None
        return url

    def _get(self, sub_id: str) -> Subscription:
        sub = self.store.get(sub_id)
        if sub is None:
            raise ApiError(404, f"no webhook subscription {sub_id}", "id")
        return sub

    def view(self, sub: Subscription) -> dict[str, Any]:
        """A subscription as the API shows it, with its health."""
        data = sub.public()
        health = self.notifier.attempts.health.get(sub.id)
        data["health"] = health.as_dict() if health is not None else None
        return data

    async def create(self, fields: WebhookCreate) -> dict[str, Any]:
        """Create a subscription; the secret is returned this once."""
        if not fields.url:
            raise ApiError(422, "url is required", "url")
        url = await self._check_url(fields.url)
        try:
            filter_ = Filter.parse(fields.filter)
        except FilterError as exc:
            raise ApiError(422, str(exc), "filter") from None
        secret = fields.secret or new_secret()
        try:
            secret_key(secret)
        except SecretError as exc:
            raise ApiError(422, f"secret {exc}", "secret") from None
        now = now_ms()
        sub = Subscription(
            id=new_id(),
            url=url,
            filter=filter_,
            description=fields.description or "",
            rate_limit=fields.rate_limit,
            max_in_flight=fields.max_in_flight,
            state_changed_ms=now,
            secrets=(Secret(secret=secret, created_ms=now),),
            created_ms=now,
            updated_ms=now,
        )
        await self.store.put(sub)
        return {**self.view(sub), "secret": secret}

    async def update(self, sub_id: str, fields: WebhookChange) -> dict[str, Any]:
        """Change url, filter, description, rate limit or concurrency."""
        self._get(sub_id)
        if fields.secret is not None:
            raise ApiError(422, "secret cannot be set here; use rotate-secret", "secret")
        change: dict[str, Any] = {}
        given = fields.model_fields_set
        if "url" in given:
            if not fields.url:
                raise ApiError(422, "url must not be empty", "url")
            change["url"] = await self._check_url(fields.url)
        if "filter" in given:
            try:
                change["filter"] = Filter.parse(fields.filter)
            except FilterError as exc:
                raise ApiError(422, str(exc), "filter") from None
        for name in ("description", "rate_limit", "max_in_flight"):
            if name in given:
                change[name] = (
                    getattr(fields, name) if name != "description" else (fields.description or "")
                )
        updated = await self.store.update(sub_id, lambda _: change)
        return self.view(self._found(updated, sub_id))

    def _found(self, sub: Subscription | None, sub_id: str) -> Subscription:
        if sub is None:
            raise ApiError(404, f"no webhook subscription {sub_id}", "id")
        return sub

    async def set_state(self, sub_id: str, state: str, reason: str | None) -> dict[str, Any]:
        """Pause or resume (resuming also re-enables a disabled subscription)."""
        self._get(sub_id)
        updated = await self.store.update(
            sub_id,
            lambda _: {"state": state, "state_reason": reason, "state_changed_ms": now_ms()},
        )
        return self.view(self._found(updated, sub_id))

    async def rotate(self, sub_id: str, body: SecretRotation | None) -> dict[str, Any]:
        """A new secret; the previous ones keep signing for ``grace_seconds``."""
        self._get(sub_id)
        grace = body.grace_seconds if body is not None else None
        if grace is None:
            if body is not None and "grace_seconds" in body.model_fields_set:
                raise ApiError(422, "grace_seconds must be a number >= 0", "grace_seconds")
            grace = self.notifier.settings.rotation_grace
        secret = new_secret()
        now = now_ms()
        expires = now + int(grace * 1000)

        def change(sub: Subscription) -> dict[str, Any]:
            kept = tuple(
                s.model_copy(update={"expires_ms": min(s.expires_ms or expires, expires)})
                for s in sub.secrets
                if s.expires_ms is None or s.expires_ms > now
            )
            return {"secrets": (Secret(secret=secret, created_ms=now), *kept)}

        updated = await self.store.update(sub_id, change)
        return {**self.view(self._found(updated, sub_id)), "secret": secret}

    def router(self) -> APIRouter:
        """The FastAPI routes; errors are raised as :class:`ApiError` for the app's handler."""
        r = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
        self._subscription_routes(r)
        self._delivery_routes(r)
        return r

    def _subscription_routes(self, r: APIRouter) -> None:
        api = self

        @r.post("", status_code=201)
        async def create(body: WebhookCreate) -> JSONResponse:
            """Create a subscription. The response carries its secret, shown only this once."""
            return JSONResponse(await api.create(body), status_code=201)

        @r.get("")
        async def list_all() -> JSONResponse:
            """Every subscription (without secrets)."""
            return JSONResponse({"webhooks": [api.view(s) for s in api.store.all()]})

        @r.get("/{sub_id}")
        async def get(sub_id: str) -> JSONResponse:
            """One subscription, with its state and delivery health."""
            return JSONResponse(api.view(api._get(sub_id)))

        @r.patch("/{sub_id}")
        async def update(sub_id: str, body: WebhookChange) -> JSONResponse:
            """Change url, filter, description, rate_limit or max_in_flight."""
            return JSONResponse(await api.update(sub_id, body))

        @r.delete("/{sub_id}", status_code=204)
        async def delete(sub_id: str) -> Response:
            """Delete a subscription."""
            if not await api.store.delete(sub_id):
                raise ApiError(404, f"no webhook subscription {sub_id}", "id")
            return Response(status_code=204)

        @r.post("/{sub_id}/pause")
        async def pause(sub_id: str) -> JSONResponse:
            """Stop delivering; matching events go to the dead-letter topic for later replay."""
            return JSONResponse(await api.set_state(sub_id, "paused", "paused by request"))

        @r.post("/{sub_id}/resume")
        async def resume(sub_id: str) -> JSONResponse:
            """Deliver again (also re-enables a disabled subscription and resets its health)."""
            return JSONResponse(await api.set_state(sub_id, "active", None))

        @r.post("/{sub_id}/rotate-secret")
        async def rotate(
            sub_id: str,
            body: SecretRotation | None = Body(None),  # noqa: B008
        ) -> JSONResponse:
            """New secret; old ones keep signing (both signatures sent) for grace_seconds."""
            return JSONResponse(await api.rotate(sub_id, body))

    def _delivery_routes(self, r: APIRouter) -> None:
        api = self

        @r.post("/{sub_id}/test")
        async def test(sub_id: str) -> JSONResponse:
            """Send a signed test event now, once, and report what the receiver answered."""
            sub = api._get(sub_id)
            webhook_id, result = await api.notifier.send_test(sub)
            return JSONResponse(
                {
                    "webhook_id": webhook_id,
                    "outcome": result.outcome,
                    "status": result.status,
                    "latency_ms": round(result.latency_s * 1000, 3),
                    "error": result.error,
                }
            )

        @r.get("/{sub_id}/attempts")
        async def attempts(
            sub_id: str,
            limit: int = Query(100, ge=1, le=10_000),
            webhook_id: str | None = None,
            outcome: str | None = None,
        ) -> JSONResponse:
            """Recent delivery attempts, newest first (the last ``[notifier] attempts_kept``
            per subscription), optionally of one delivery or one outcome."""
            api._get(sub_id)
            recent = [
                a
                for a in reversed(api.notifier.attempts.recent.get(sub_id, ()))
                if (webhook_id is None or a["webhook_id"] == webhook_id)
                and (outcome is None or a["outcome"] == outcome)
            ]
            return JSONResponse({"attempts": recent[:limit]})

        @r.get("/{sub_id}/dead-letters")
        async def dead_letters(
            sub_id: str,
            since_ms: int | None = None,
            until_ms: int | None = None,
        ) -> JSONResponse:
            """Deliveries that gave up (latest per webhook-id), oldest first."""
            api._get(sub_id)
            found = await api.notifier.dead_letters(sub_id, since_ms=since_ms, until_ms=until_ms)
            return JSONResponse({"dead_letters": [_dead_view(h) for _, h in found]})

        @r.post("/{sub_id}/replay")
        async def redeliver(sub_id: str, body: Redelivery) -> JSONResponse:
            """Deliver dead letters again: one (``webhook_id``) or a range (``since_ms``,
            ``until_ms``, unix milliseconds of when they gave up)."""
            sub = api._get(sub_id)
            if body.webhook_id is None and body.since_ms is None:
                raise ApiError(
                    422, "give webhook_id, or since_ms (and optionally until_ms)", "since_ms"
                )
            if sub.state != "active":
                # It would only go back to the dead letters: say so instead.
                raise ApiError(409, f"subscription is {sub.state}; resume it first", "state")
            found = await api.notifier.dead_letters(
                sub_id, body.webhook_id, body.since_ms, body.until_ms
            )
            if body.webhook_id is not None and not found:
                raise ApiError(404, f"no dead letter {body.webhook_id} for {sub_id}", "webhook_id")
            await api.notifier.replay([job for job, _ in found])
            return JSONResponse(
                {"replayed": len(found), "webhook_ids": [job.webhook_id for job, _ in found]},
                status_code=202,
            )


def _dead_view(h: dict[str, str]) -> dict[str, Any]:
    status = h.get("telex-last-status")
    return {
        "webhook_id": h.get("webhook-id"),
        "event_id": h.get("telex-event-id"),
        "reason": h.get(deadletter.REASON),
        "attempts": int(h.get("telex-attempt", "0")),
        "last_status": int(status) if status else None,
        "last_error": h.get("telex-last-error"),
        "first_attempt_ms": int(h.get("telex-first-ms", "0")),
        "dead_ms": int(h.get("telex-dead-ms", "0")),
    }
