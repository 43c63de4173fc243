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
        # No linger: a record goes as soon as no request to its broker is in flight (the
        # client keeps one per broker), and what is produced meanwhile shares the next
        # request. Batches grow with the load and an idle pipeline waits for no timer.
        "linger_ms": 0,
        "request_timeout_ms": kafka.request_timeout_ms,
        "compression_type": None,
    }


# The embedded broker answers a waiting fetch only at its deadline: every hop waits for it.
EMBEDDED_FETCH_MAX_WAIT_MS = 20
# Kafka answers as soon as data arrives: the wait only paces an idle consumer (its default).
KAFKA_FETCH_MAX_WAIT_MS = 500


# A broker answers one request per connection at a time, in order: a fetch it holds for its
# whole wait (nothing new to send) delays every later request on that connection (offsets,
# metadata) by as much. A consumer that reads up to an end and then asks something else (a
# restore, a table read, a range of history) waits at most this long.
READER_FETCH_MAX_WAIT_MS = 100


def fetch_max_wait_ms(kafka: KafkaConfig, memory_only: bool) -> int:
    """The consumers' fetch wait: as configured, else per broker (``memory_only`` = embedded)."""
    if kafka.fetch_max_wait_ms is not None:
        return kafka.fetch_max_wait_ms
    return EMBEDDED_FETCH_MAX_WAIT_MS if memory_only else KAFKA_FETCH_MAX_WAIT_MS


def reader_fetch_max_wait_ms(kafka: KafkaConfig, memory_only: bool) -> int:
    """The fetch wait of a consumer that reads partitions up to an end: short, whatever the
    followers' wait is."""
    return min(fetch_max_wait_ms(kafka, memory_only), READER_FETCH_MAX_WAIT_MS)


# Per broker, unless set. Kafka: commit at most every second (each commit is a replicated
# write; committing after every small batch cost the brokers more CPU than the records). The
# embedded broker can restart empty: a commit from memory after that would write the old
# topics' offsets to the new ones, so it commits as each batch is acknowledged.
EMBEDDED_COMMIT_INTERVAL_MS, KAFKA_COMMIT_INTERVAL_MS = 0, 1000


def commit_interval_ms(kafka: KafkaConfig, memory_only: bool) -> int:
    """How often group members commit: as configured, else per broker."""
    if kafka.commit_interval_ms is not None:
        return kafka.commit_interval_ms
    return EMBEDDED_COMMIT_INTERVAL_MS if memory_only else KAFKA_COMMIT_INTERVAL_MS


# Per broker, unless set. The embedded broker has no working static membership: a member
# killed and restarted stalls its partitions for one to two sessions, so the session is short
# there (and its joins, which it holds for half a session, are short too): 1.5 s gave a
# median hand-over of 3.1 s against 4.4 s with 2 s (bench/restart_stall.py). Three heartbeats
# per session: a loop stalled over a second costs a rebalance. Kafka refuses sessions under
# 6 s by default and recognises a restarted static member at once.
EMBEDDED_SESSION_TIMEOUT_MS, EMBEDDED_HEARTBEAT_MS = 1_500, 500
KAFKA_SESSION_TIMEOUT_MS, KAFKA_HEARTBEAT_MS = 10_000, 3_000


def session_timeout_ms(kafka: KafkaConfig, memory_only: bool) -> int:
    """The group session timeout: as configured, else per broker."""
    if kafka.session_timeout_ms is not None:
        return kafka.session_timeout_ms
    return EMBEDDED_SESSION_TIMEOUT_MS if memory_only else KAFKA_SESSION_TIMEOUT_MS


def heartbeat_interval_ms(kafka: KafkaConfig, memory_only: bool) -> int:
    """The heartbeat interval: as configured, else per broker; at most a third of the session."""
    configured = kafka.heartbeat_interval_ms
    if configured is None:
        configured = EMBEDDED_HEARTBEAT_MS if memory_only else KAFKA_HEARTBEAT_MS
    return min(configured, session_timeout_ms(kafka, memory_only) // 3)


def group_instance_id(kafka: KafkaConfig, group_id: str | None, memory_only: bool) -> str | None:
    """The static member name for a group consumer, where the broker honours it.

    The embedded broker accepts the name but a restarted member then waits longer than a
    dynamic one (measured: bench/restart_stall.py), so there it is not sent.
    """
    if not group_id or not kafka.group_instance_id or memory_only:
        return None
    return kafka.group_instance_id


def consumer_kwargs(
    kafka: KafkaConfig,
    bootstrap: str,
    tls: ssl.SSLContext | None,
    group_id: str | None,
    memory_only: bool = False,
) -> dict[str, Any]:
    """A consumer that never commits by itself: its owner commits what it has handed off."""
    session = session_timeout_ms(kafka, memory_only)
    return {
        **connection_kwargs(kafka, bootstrap, tls),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": session,
        "heartbeat_interval_ms": heartbeat_interval_ms(kafka, memory_only),
        # A JoinGroup can take half the session timeout on the embedded broker: a request
        # timeout below that would time the join out forever.
        "request_timeout_ms": max(kafka.request_timeout_ms, session // 2 + 1000),
        "isolation_level": "read_uncommitted",
        "fetch_max_wait_ms": fetch_max_wait_ms(kafka, memory_only),
        # Static membership: a restarted member is recognised and gets its partitions back
        # without waiting out its dead predecessor's session.
        "group_instance_id": group_instance_id(kafka, group_id, memory_only),
    }


def admin_kwargs(
    kafka: KafkaConfig, bootstrap: str, tls: ssl.SSLContext | None, request_timeout_ms: int
) -> dict[str, Any]:
    """An admin client (topics, cluster description)."""
    return {**connection_kwargs(kafka, bootstrap, tls), "request_timeout_ms": request_timeout_ms}
