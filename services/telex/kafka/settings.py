"""Client settings: what ``[kafka]`` turns into for aiokafka's producers, consumers and admins.

Every client telex makes gets the same connection and security settings from here, so a
managed cluster's TLS and SASL requirements are met by all of them or by none.
"""

from __future__ import annotations

import ssl
from typing import Any

from aiokafka.helpers import create_ssl_context

from telex.config import KafkaConfig


def ssl_context(kafka: KafkaConfig) -> ssl.SSLContext | None:
    """The TLS context for SSL and SASL_SSL (``None`` for plaintext protocols).

    Reads the CA, certificate and key files: call it once, off the event loop.
    """
    if not kafka.security_protocol.endswith("SSL"):
        return None
    password = kafka.ssl_key_password.get_secret_value() or None
    context: ssl.SSLContext = create_ssl_context(
        cafile=kafka.ssl_cafile or None,
        certfile=kafka.ssl_certfile or None,
        keyfile=kafka.ssl_keyfile or None,
        password=password,
    )
    context.check_hostname = kafka.ssl_check_hostname
    return context


def connection_kwargs(
    kafka: KafkaConfig, bootstrap: str, tls: ssl.SSLContext | None
) -> dict[str, Any]:
    """Settings every client shares: where the cluster is and how to authenticate to it."""
    settings: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "client_id": kafka.client_id,
        "security_protocol": kafka.security_protocol,
    }
    if tls is not None:
        settings["ssl_context"] = tls
    if kafka.security_protocol.startswith("SASL_"):
        settings["sasl_mechanism"] = kafka.sasl_mechanism
        settings["sasl_plain_username"] = kafka.username
        settings["sasl_plain_password"] = kafka.password.get_secret_value()
    return settings


def producer_kwargs(
    kafka: KafkaConfig, bootstrap: str, tls: ssl.SSLContext | None, idempotence: bool
) -> dict[str, Any]:
    """A producer that waits for every in-sync replica (acks=all)."""
    return {
        **connection_kwargs(kafka, bootstrap, tls),
        "acks": "all",
        "enable_idempotence": idempotence,
        "linger_ms": 2,
        "request_timeout_ms": kafka.request_timeout_ms,
        "compression_type": None,
    }


def consumer_kwargs(
    kafka: KafkaConfig, bootstrap: str, tls: ssl.SSLContext | None, group_id: str | None
) -> dict[str, Any]:
    """A consumer that never commits by itself: its owner commits what it has handed off."""
    return {
        **connection_kwargs(kafka, bootstrap, tls),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": kafka.session_timeout_ms,
        "heartbeat_interval_ms": min(kafka.heartbeat_interval_ms, kafka.session_timeout_ms // 3),
        # A JoinGroup can take half the session timeout on the embedded broker: a request
        # timeout below that would time the join out forever.
        "request_timeout_ms": max(kafka.request_timeout_ms, kafka.session_timeout_ms // 2 + 1000),
        "isolation_level": "read_uncommitted",
        "fetch_max_wait_ms": kafka.fetch_max_wait_ms,
    }


def admin_kwargs(
    kafka: KafkaConfig, bootstrap: str, tls: ssl.SSLContext | None, request_timeout_ms: int
) -> dict[str, Any]:
    """An admin client (topics, cluster description)."""
    return {**connection_kwargs(kafka, bootstrap, tls), "request_timeout_ms": request_timeout_ms}
