"""``[kafka]`` security settings: validated at start-up, turned into aiokafka client settings,
and the topic settings telex creates topics with."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest

from telex.config import Config, ConfigError, load
from telex.kafka import Clients
from telex.kafka.admin import TopicSpec, replication, topic_configs
from telex.kafka.capabilities import Capabilities
from telex.kafka.settings import (
    admin_kwargs,
    connection_kwargs,
    consumer_kwargs,
    producer_kwargs,
    ssl_context,
)

PASSWORD = "s3cret-scram-password-91c4"
BOOT = "kafka-1.example:9093"


@pytest.fixture(scope="module")
def pems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A self-signed certificate and its key, made by openssl."""
    where = tmp_path_factory.mktemp("pem")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=kafka-1.example", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return {"cert": cert, "key": key}


def env(**values: str) -> dict[str, str]:
    return {
        "TELEX_KAFKA_BOOTSTRAP": BOOT,
        **{f"TELEX_KAFKA_{k.upper()}": v for k, v in values.items()},
    }


def test_plaintext_by_default_without_tls_nor_sasl() -> None:
    kafka = Config().kafka
    settings = connection_kwargs(kafka, BOOT, ssl_context(kafka))
    assert settings == {
        "bootstrap_servers": BOOT,
        "client_id": "telex",
        "security_protocol": "PLAINTEXT",
    }


def test_sasl_scram_over_tls_from_the_environment(pems: dict[str, Path]) -> None:
    config = load(
        None,
        env(
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            username="telex",
            password=PASSWORD,
            ssl_cafile=str(pems["cert"]),
        ),
    )
    kafka = config.kafka
    tls = ssl_context(kafka)
    assert isinstance(tls, ssl.SSLContext)
    assert tls.check_hostname and tls.verify_mode == ssl.CERT_REQUIRED
    assert [c["subject"] for c in tls.get_ca_certs()] == [((("commonName", "kafka-1.example"),),)]
    for settings in (
        producer_kwargs(kafka, BOOT, tls, idempotence=True),
        consumer_kwargs(kafka, BOOT, tls, group_id="g"),
        admin_kwargs(kafka, BOOT, tls, 5000),
    ):
        assert settings["security_protocol"] == "SASL_SSL"
        assert settings["sasl_mechanism"] == "SCRAM-SHA-512"
        assert settings["sasl_plain_username"] == "telex"
        assert settings["sasl_plain_password"] == PASSWORD
        assert settings["ssl_context"] is tls
    producer = producer_kwargs(kafka, BOOT, tls, idempotence=True)
    assert producer["acks"] == "all" and producer["enable_idempotence"] is True
    assert consumer_kwargs(kafka, BOOT, tls, group_id="g")["enable_auto_commit"] is False


def test_sasl_plaintext_has_no_tls() -> None:
    kafka = load(
        None, env(security_protocol="SASL_PLAINTEXT", username="telex", password=PASSWORD)
    ).kafka
    assert ssl_context(kafka) is None
    settings = connection_kwargs(kafka, BOOT, None)
    assert "ssl_context" not in settings
    assert settings["sasl_mechanism"] == "PLAIN"


def test_client_certificate_and_hostname_check(pems: dict[str, Path]) -> None:
    kafka = load(
        None,
        env(
            security_protocol="SSL",
            ssl_cafile=str(pems["cert"]),
            ssl_certfile=str(pems["cert"]),
            ssl_keyfile=str(pems["key"]),
            ssl_check_hostname="false",
        ),
    ).kafka
    tls = ssl_context(kafka)
    assert tls is not None and tls.check_hostname is False
    settings = connection_kwargs(kafka, BOOT, tls)
    assert "sasl_mechanism" not in settings and settings["security_protocol"] == "SSL"


async def test_clients_are_built_with_the_security_settings(pems: dict[str, Path]) -> None:
    config = load(
        None,
        env(
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-256",
            username="telex",
            password=PASSWORD,
            ssl_cafile=str(pems["cert"]),
        ),
    )
    clients = Clients(config, BOOT, Capabilities(idempotence=True))
    producer = clients.producer()
    assert producer.client._security_protocol == "SASL_SSL"
    assert producer.client._sasl_mechanism == "SCRAM-SHA-256"
    assert isinstance(producer.client._ssl_context, ssl.SSLContext)
    consumer = clients.consumer(group_id=None)
    assert consumer._client._sasl_plain_username == "telex"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"security_protocol": "SASL_SSL", "username": "telex"}, "needs username and password"),
        ({"security_protocol": "SASL_PLAINTEXT", "password": PASSWORD}, "needs username"),
        ({"username": "telex", "password": PASSWORD}, "use SASL_PLAINTEXT or SASL_SSL"),
        ({"ssl_cafile": "/etc/hostname"}, "ssl_cafile set but security_protocol is PLAINTEXT"),
        ({"security_protocol": "SSL", "ssl_cafile": "/nonexistent/ca.pem"}, "cannot be read"),
        ({"security_protocol": "SSL", "ssl_certfile": "/etc/hostname"}, "go together"),
        ({"security_protocol": "KERBEROS"}, "security_protocol"),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI", "username": "u"},
            "sasl_mechanism",
        ),
    ],
)
def test_bad_security_settings_are_clear_errors(values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load(None, env(**values))
    assert message in str(refused.value)
    assert PASSWORD not in str(refused.value)


def test_the_embedded_broker_is_plaintext_only() -> None:
    environ = env(security_protocol="SASL_PLAINTEXT", username="u", password=PASSWORD)
    environ["TELEX_KAFKA_BOOTSTRAP"] = ""
    with pytest.raises(ConfigError, match="embedded broker speaks PLAINTEXT only"):
        load(None, environ)


def test_the_password_is_hidden_from_repr_and_dumps() -> None:
    config = load(
        None,
        env(security_protocol="SASL_PLAINTEXT", username="telex", password=PASSWORD)
        | {"TELEX_KAFKA_SSL_KEY_PASSWORD": ""},
    )
    for shown in (repr(config), str(config), repr(config.kafka), config.model_dump_json()):
        assert PASSWORD not in shown
    assert config.kafka.password.get_secret_value() == PASSWORD


def test_replication_follows_the_cluster_unless_set() -> None:
    topics = Config().topics
    assert replication(topics, brokers=1) == (1, 1)
    assert replication(topics, brokers=2) == (2, 1)
    assert replication(topics, brokers=3) == (3, 2)
    assert replication(topics, brokers=7) == (3, 2)
    set_ = load(
        None, {"TELEX_TOPICS_REPLICATION_FACTOR": "5", "TELEX_TOPICS_MIN_INSYNC_REPLICAS": "3"}
    )
    assert replication(set_.topics, brokers=7) == (5, 3)
    with pytest.raises(ConfigError, match="no record could ever be acknowledged"):
        load(
            None, {"TELEX_TOPICS_REPLICATION_FACTOR": "2", "TELEX_TOPICS_MIN_INSYNC_REPLICAS": "3"}
        )


def test_topic_settings_at_creation() -> None:
    assert topic_configs(TopicSpec("t", 3), 1) == {}
    assert topic_configs(TopicSpec("t", 3), 2) == {"min.insync.replicas": "2"}
    assert topic_configs(TopicSpec("s", 1, compact=True), 2) == {
        "cleanup.policy": "compact",
        "min.insync.replicas": "2",
    }


async def test_the_reset_signal_is_never_armed_on_a_broker_that_keeps_its_data() -> None:
    clients = Clients(Config(), BOOT, Capabilities(memory_only=False))
    await clients.reset.start([TopicSpec("t", 1)], "t.guard", interval=0.1)
    try:
        assert not clients.reset.armed
        clients.reset.check()  # intact: raises nothing
    finally:
        await clients.reset.stop()


def test_fetch_wait_is_chosen_per_broker_unless_set() -> None:
    """The embedded (memory-only) broker answers a waiting fetch only at its deadline: a short
    wait there; Kafka answers when data arrives: its own default there. A set value wins."""
    kafka = load(None, {}).kafka
    assert consumer_kwargs(kafka, BOOT, None, "g", memory_only=True)["fetch_max_wait_ms"] == 20
    assert consumer_kwargs(kafka, BOOT, None, "g", memory_only=False)["fetch_max_wait_ms"] == 500
    kafka = load(None, env(fetch_max_wait_ms="75")).kafka
    for memory_only in (True, False):
        settings = consumer_kwargs(kafka, BOOT, None, "g", memory_only=memory_only)
        assert settings["fetch_max_wait_ms"] == 75


def test_commit_interval_is_chosen_per_broker_unless_set() -> None:
    """Kafka: every second (each commit is a replicated write); the embedded broker, which can
    restart empty: after every batch. A set value wins, on both."""
    for memory_only, interval in ((True, 0.0), (False, 1.0)):
        clients = Clients(Config(), BOOT, Capabilities(memory_only=memory_only))
        assert clients.commit_interval_s() == interval
    config = load(None, env(commit_interval_ms="250"))
    for memory_only in (True, False):
        clients = Clients(config, BOOT, Capabilities(memory_only=memory_only))
        assert clients.commit_interval_s() == 0.25


async def test_clients_pass_the_broker_kind_to_their_consumers() -> None:
    for memory_only, wait in ((True, 20), (False, 500)):
        clients = Clients(Config(), BOOT, Capabilities(memory_only=memory_only))
        consumer = clients.consumer(group_id=None)
        assert consumer._fetch_max_wait_ms == wait


async def test_readers_fetch_with_a_short_wait_whatever_the_followers_wait() -> None:
    """A reader asks the broker offsets after its fetches; the broker answers a connection's
    requests in order, so a fetch held for a long wait would hold the question too."""
    for fetch_wait, memory_only, expected in (
        (None, True, 20),
        (None, False, 100),
        ("10000", False, 100),
        ("50", False, 50),
    ):
        config = load(None, env(fetch_max_wait_ms=fetch_wait) if fetch_wait else {})
        clients = Clients(config, BOOT, Capabilities(memory_only=memory_only))
        assert clients.reader()._fetch_max_wait_ms == expected
        assert clients.reader()._group_id is None


def test_producers_do_not_linger() -> None:
    """An idle pipeline's record is sent at once: no linger timer."""
    assert producer_kwargs(load(None, {}).kafka, BOOT, None, idempotence=False)["linger_ms"] == 0


def test_group_settings_are_chosen_per_broker_unless_set() -> None:
    """Short sessions on the embedded broker (a restarted member waits out the dead one's
    session there); Kafka's usual ones, with static membership, elsewhere."""
    kafka = load(None, env(group_instance_id="telex-processor-0")).kafka
    embedded = consumer_kwargs(kafka, BOOT, None, "g", memory_only=True)
    assert embedded["session_timeout_ms"] == 1500
    assert embedded["heartbeat_interval_ms"] == 500
    # The embedded broker takes the name but then stalls a restarted member longer.
    assert embedded["group_instance_id"] is None
    cluster = consumer_kwargs(kafka, BOOT, None, "g", memory_only=False)
    assert cluster["session_timeout_ms"] == 10_000
    assert cluster["heartbeat_interval_ms"] == 3000
    assert cluster["group_instance_id"] == "telex-processor-0"
    # A consumer outside any group is no member: no instance name.
    assert consumer_kwargs(kafka, BOOT, None, None)["group_instance_id"] is None
    assert consumer_kwargs(load(None, env()).kafka, BOOT, None, "g")["group_instance_id"] is None
    kafka = load(None, env(session_timeout_ms="6000", heartbeat_interval_ms="3000")).kafka
    for memory_only in (True, False):
        settings = consumer_kwargs(kafka, BOOT, None, "g", memory_only=memory_only)
        assert settings["session_timeout_ms"] == 6000
        assert settings["heartbeat_interval_ms"] == 2000  # a third of the session at most


def test_a_group_instance_id_must_be_a_plain_name() -> None:
    with pytest.raises(ConfigError, match="group_instance_id"):
        load(None, env(group_instance_id="two words"))
