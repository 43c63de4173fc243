"""Webhooks declared in the config file (``[[notifier.webhooks]]``), made or updated at start.

The id derives from the name, so every notifier process (and every restart) agrees on it. A
changed secret becomes the signing secret; the previous ones keep signing for
``rotation_grace``. The state (paused, disabled) is left as the API or the notifier set it. A
URL refused by the SSRF rules stops the start with a message naming it.
"""

from __future__ import annotations

import hashlib
from typing import Any

from telex.config import NotifierConfig
from telex.events import now_ms
from telex.filters import Filter
from telex.log import get_logger
from telex.notifier.subscriptions import Secret, Subscription, SubscriptionStore
from telex.ssrf import AddressPolicy, TargetRefused

log = get_logger(__name__)


def declared_id(name: str) -> str:
    """The subscription id of a webhook declared in the config file under ``name``."""
    return "wh_" + hashlib.blake2b(name.encode(), digest_size=10).hexdigest()


def rotated(
    secrets: tuple[Secret, ...], secret: str, now: int, grace_ms: int
) -> tuple[Secret, ...]:
    """``secret`` first, then the other unexpired ones, each expiring within ``grace_ms``."""
    expires = now + grace_ms
    kept = tuple(
        s.model_copy(update={"expires_ms": min(s.expires_ms or expires, expires)})
        for s in secrets
        if s.secret != secret and (s.expires_ms is None or s.expires_ms > now)
    )
    return (Secret(secret=secret, created_ms=now), *kept)


async def apply_declared(
    settings: NotifierConfig, store: SubscriptionStore, policy: AddressPolicy
) -> None:
    """Create or update the subscriptions declared in ``[[notifier.webhooks]]``."""
    for declared in settings.webhooks:
        sub_id = declared_id(declared.name)
        try:
            await policy.check_url(declared.url)
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
        current = store.get(sub_id)
        if current is None:
            await store.put(
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
            grace_ms = int(settings.rotation_grace * 1000)
            change["secrets"] = rotated(current.secrets, declared.secret, now, grace_ms)
        if change:
            await store.update(sub_id, lambda _, c=change: c)  # type: ignore[misc]
            log.info(
                "notifier.declared.updated",
                name=declared.name,
                subscription=sub_id,
                fields=",".join(sorted(change)),
            )
