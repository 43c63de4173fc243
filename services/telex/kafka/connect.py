"""Reaching the cluster at start-up and saying in one line why not; leaving it quietly.

A broker that is down, a wrong password or a certificate that does not verify must stop a
process with a message an operator can act on, not an aiokafka traceback or a silent retry
loop: :func:`wait_for_broker` retries what may pass (nothing listening yet) and gives up at once
on what will not (credentials, TLS), raising :class:`BrokerError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    IllegalSaslStateError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from telex.config import KafkaConfig
from telex.kafka.sends import Producer
from telex.kafka.settings import admin_kwargs
from telex.log import get_logger

log = get_logger(__name__)

_CREDENTIALS = (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    IllegalSaslStateError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)


class BrokerError(RuntimeError):
    """Kafka (embedded or not) could not be started, reached or authenticated to."""


def _first_host(bootstrap: str) -> tuple[str, int]:
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise BrokerError(f"bootstrap {bootstrap!r} is not host:port[,host:port...]") from None


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


async def _handshake(kafka: KafkaConfig, host: str, port: int, tls: ssl.SSLContext | None) -> None:
    """Open one Kafka connection the way every client will (TLS, SASL) and close it."""
    sasl = kafka.security_protocol.startswith("SASL_")
    conn = await create_conn(
        host,
        port,
        client_id=kafka.client_id,
        request_timeout_ms=min(kafka.request_timeout_ms, 10_000),
        ssl_context=tls,
        security_protocol=kafka.security_protocol,
        sasl_mechanism=kafka.sasl_mechanism,
        sasl_plain_username=kafka.username if sasl else None,
        sasl_plain_password=kafka.password.get_secret_value() if sasl else None,
    )
    conn.close()


async def wait_for_broker(
    bootstrap: str,
    timeout: float = 20.0,
    proc: asyncio.subprocess.Process | None = None,
    *,
    kafka: KafkaConfig | None = None,
    tls: ssl.SSLContext | None = None,
) -> None:
    """Wait until the cluster at ``bootstrap`` answers a metadata request.

    Raises :class:`BrokerError` at once when TLS or the credentials are refused, and after
    ``timeout`` seconds when nothing answers.
    """
    kafka = kafka if kafka is not None else KafkaConfig()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = "no answer"
    host, port = _first_host(bootstrap)
    while loop.time() < deadline:
        if proc is not None and proc.returncode is not None:
            raise BrokerError(f"embedded broker exited with status {proc.returncode} at start-up")
        # A plain TCP probe first: aiokafka logs every refused connection as an error.
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2)
            writer.close()
        except (OSError, TimeoutError) as exc:
            last = _reason(exc)
            await asyncio.sleep(0.05)
            continue
        try:
            remaining = max(0.5, deadline - loop.time())
            await asyncio.wait_for(_handshake(kafka, host, port, tls), remaining)
        except ssl.SSLError as exc:
            raise BrokerError(
                f"TLS with Kafka at {host}:{port} failed: {_reason(exc)} "
                "(check [kafka] ssl_cafile, ssl_certfile, ssl_keyfile, ssl_check_hostname)"
            ) from None
        except _CREDENTIALS as exc:
            raise BrokerError(
                f"Kafka at {host}:{port} refused user {kafka.username!r} "
                f"({kafka.sasl_mechanism}): {_reason(exc)}"
            ) from None
        except TimeoutError:
            last = "no answer to a Kafka request"
            if tls is not None:
                # A plaintext listener waits for a Kafka request and never answers a TLS hello.
                last += f" (is the listener at {host}:{port} TLS? security_protocol is "
                last += f"{kafka.security_protocol})"
            continue
        except (KafkaError, OSError) as exc:
            last = _reason(exc)
            await asyncio.sleep(0.2)
            continue
        admin = AIOKafkaAdminClient(**admin_kwargs(kafka, bootstrap, tls, 2000))
        try:
            await admin.start()
            await admin.describe_cluster()
            return
        except (KafkaError, OSError) as exc:
            last = _reason(exc)
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        await asyncio.sleep(0.1)
    raise BrokerError(f"Kafka at {bootstrap} did not answer within {timeout:.0f}s: {last}")


async def stop_quietly(
    client: AIOKafkaProducer | AIOKafkaConsumer | Producer | None,
) -> None:
    """Stop a Kafka client, logging rather than raising (used on shutdown paths)."""
    if client is None:
        return
    try:
        await client.stop()
    except (KafkaError, KafkaConnectionError, OSError) as exc:
        log.warning("kafka.client.stop_failed", error=repr(exc))
