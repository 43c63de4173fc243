"""The Kafka password never reaches a log line, an error message or a configuration dump, also
at debug level and with aiokafka's own debug logging, when the broker refuses it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from telex.config import Config, ConfigError, load
from telex.kafka import BrokerError, Clients
from tests.conftest import Broker
from tests.security.test_secrets import service_logs

PASSWORD = "kafka-secret-8e1f6b2d9c"
KEY_PASSWORD = "key-secret-47a0c3e5"


async def test_a_refused_kafka_password_is_never_logged(
    broker: Broker, config_factory: Callable[..., Config]
) -> None:
    config = config_factory(
        broker.bootstrap,
        TELEX_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
        TELEX_KAFKA_SASL_MECHANISM="SCRAM-SHA-256",
        TELEX_KAFKA_USERNAME="newsroom",
        TELEX_KAFKA_PASSWORD=PASSWORD,
        TELEX_KAFKA_EMBEDDED_START_TIMEOUT_S="5",
    )
    with service_logs() as logs, pytest.raises(BrokerError) as refused:
        await Clients.connect(config, broker.bootstrap)
    said = logs.getvalue() + str(refused.value) + repr(config) + config.model_dump_json()
    assert "refused user 'newsroom'" in str(refused.value)
    assert PASSWORD not in said


def test_configuration_errors_never_echo_kafka_passwords() -> None:
    environ = {
        "TELEX_KAFKA_BOOTSTRAP": "kafka:9093",
        "TELEX_KAFKA_PASSWORD": PASSWORD,  # without SASL: refused
        "TELEX_KAFKA_SSL_KEY_PASSWORD": KEY_PASSWORD,  # without a key file: refused
    }
    with pytest.raises(ConfigError) as refused:
        load(None, environ)
    message = str(refused.value)
    assert "use SASL_PLAINTEXT or SASL_SSL" in message
    assert PASSWORD not in message and KEY_PASSWORD not in message
