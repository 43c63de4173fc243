"""Standard Webhooks signing: ``whsec_`` secrets and ``v1,`` HMAC-SHA256 signatures.

The signed content is ``{webhook-id}.{webhook-timestamp}.{body}``; during a secret rotation the
``webhook-signature`` header carries one signature per live secret, space-separated, so a
receiver holding either secret verifies the delivery.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Iterable

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


class SecretError(ValueError):
    """A secret that is not ``whsec_`` + base64 of 24-64 bytes."""


def new_secret() -> str:
    """A fresh secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key inside a ``whsec_`` secret."""
    if not secret.startswith(SECRET_PREFIX):
        raise SecretError(f"must start with {SECRET_PREFIX}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise SecretError(f"must be {SECRET_PREFIX} followed by base64") from None
    if not 24 <= len(key) <= 64:
        raise SecretError(f"must encode 24 to 64 bytes, got {len(key)}")
    return key


def sign(secret_list: Iterable[str], webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value: ``v1,<base64>`` per secret, space-separated."""
    content = b"%s.%d.%s" % (webhook_id.encode(), timestamp, body)
    parts = []
    for secret in secret_list:
        digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
        parts.append("v1," + base64.b64encode(digest).decode())
    return " ".join(parts)


def webhook_id(event_id: str, subscription_id: str) -> str:
    """The ``webhook-id`` of an event for a subscription: the same for every attempt and replay,
    so the receiver can use it as its idempotency key."""
    digest = hashlib.blake2b(f"{event_id}\x00{subscription_id}".encode(), digest_size=12)
    return "msg_" + digest.hexdigest()
