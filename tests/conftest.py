"""Fixtures shared by every test: the session's brokers, the seed blog, schemas, and a config
builder.

Two brokers serve a session, each started on first use: a three-node Apache Kafka cluster
(``kafka_cluster``), which is what ``broker`` gives by default, and the embedded Tansu broker
(``tansu``) of ``make run``, which ``broker`` gives to modules marked ``embedded_broker``
(tests of that broker's own behaviour: what the quick start runs, topics lost on a restart).
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import orjson
import pytest
from jsonschema import Draft202012Validator
from prometheus_client import REGISTRY

from telex.config import Config, load
from telex.kafka.embedded import EmbeddedBroker
from telex.replay.seed import SeedBlog, load_seed
from telex.testing import run_command
from tests.kafka_cluster import KafkaCluster

ROOT = Path(__file__).resolve().parent.parent
_ids = itertools.count()
# Settings telex needs on each session broker, by bootstrap string: Tansu cannot do idempotent
# producers; on the cluster every topic gets three replicas, as a newsroom would run it.
_BROKER_ENV: dict[str, dict[str, str]] = {}
TANSU_ENV = {"TELEX_KAFKA_IDEMPOTENCE": "off"}
# Idempotence stays "auto": on for a cluster.
KAFKA_ENV = {"TELEX_TOPICS_REPLICATION_FACTOR": "3"}


class Broker(Protocol):
    """What tests need of a session broker: where it is."""

    @property
    def bootstrap(self) -> str: ...


def broker_env(bootstrap: str) -> dict[str, str]:
    """The TELEX_* settings for processes on the session broker at ``bootstrap``."""
    return dict(_BROKER_ENV.get(bootstrap, TANSU_ENV))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "embedded_broker: the module runs on the embedded Tansu broker (what `make run` "
        "starts), not on the Apache Kafka cluster",
    )


@pytest.fixture(scope="session")
async def tansu() -> AsyncIterator[EmbeddedBroker]:
    """The embedded broker, for the session."""
    kafka = EmbeddedBroker()
    await kafka.start()
    _BROKER_ENV[kafka.bootstrap] = TANSU_ENV
    try:
        yield kafka
    finally:
        await kafka.stop()


@pytest.fixture(scope="session")
async def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[KafkaCluster]:
    """Three Apache Kafka nodes (KRaft) for the session. A test that stops or kills nodes
    starts them again before it ends (``KafkaCluster.heal``)."""
    cluster = KafkaCluster(tmp_path_factory.mktemp("kafka"))
    try:
        await cluster.astart()
        _BROKER_ENV[cluster.bootstrap] = KAFKA_ENV
        yield cluster
    finally:
        await asyncio.to_thread(cluster.stop)


@pytest.fixture(scope="module")
def broker(request: pytest.FixtureRequest) -> Broker:
    """The module's broker: the Apache Kafka cluster, or Tansu under ``embedded_broker``."""
    if request.node.get_closest_marker("embedded_broker") is not None:
        chosen: Broker = request.getfixturevalue("tansu")
    else:
        chosen = request.getfixturevalue("kafka_cluster")
    return chosen


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The broker is chosen per module: a marker on a single test would be silently ignored.
    for item in items:
        own = any(m.name == "embedded_broker" for m in item.own_markers)
        module = item.getparent(pytest.Module)
        if own and module is not None and module.get_closest_marker("embedded_broker") is None:
            raise pytest.UsageError(
                f"{item.nodeid}: mark the whole module embedded_broker (pytestmark), not one test"
            )


@pytest.fixture(scope="session")
def seed() -> SeedBlog:
    return load_seed()


def schema_validator(name: str) -> Draft202012Validator:
    schema = orjson.loads((ROOT / "schemas" / name).read_bytes())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


@pytest.fixture(scope="session")
def raw_schema() -> Draft202012Validator:
    return schema_validator("raw-update.schema.json")


@pytest.fixture(scope="session")
def wire_schema() -> Draft202012Validator:
    return schema_validator("wire-event.schema.json")


def make_config(bootstrap: str = "", **env: Any) -> Config:
    """A config for one test: its own topics and group, short Kafka timeouts, free ports."""
    n = next(_ids)
    environ = {
        "TELEX_KAFKA_BOOTSTRAP": bootstrap,
        "TELEX_KAFKA_SESSION_TIMEOUT_MS": "6000",
        **broker_env(bootstrap),
        "TELEX_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "TELEX_TOPICS_RAW": f"t{n}.updates.raw",
        "TELEX_TOPICS_WIRE": f"t{n}.updates",
        "TELEX_TOPICS_DLQ": f"t{n}.dlq",
        "TELEX_PROCESSOR_GROUP_ID": f"t{n}-processor",
        "TELEX_TOPICS_SOURCES": f"t{n}.sources",
        "TELEX_POLLER_GROUP_ID": f"t{n}-poller",
        "TELEX_HTTP_PORT": "0",
        "TELEX_REPLAY_INTERVAL": "0",
        "TELEX_POLLER_INTERVAL": "0.5",
        # Notifier
        "TELEX_NOTIFIER_GROUP_ID": f"t{n}-notifier",
        "TELEX_NOTIFIER_TOPIC_WEBHOOKS": f"t{n}.webhooks",
        "TELEX_NOTIFIER_TOPIC_RETRY": f"t{n}.webhooks.retry",
        "TELEX_NOTIFIER_TOPIC_DLQ": f"t{n}.webhooks.dlq",
        "TELEX_NOTIFIER_TOPIC_ATTEMPTS": f"t{n}.webhooks.attempts",
    }
    environ.update({k: str(v) for k, v in env.items()})
    return load(None, environ)


@pytest.fixture
def config_factory() -> Any:
    return make_config


async def run_bench(script: str, *args: str, timeout: float) -> tuple[int, str, str]:
    """``bench/<script>`` run by this Python to its end: exit code, stdout, stderr."""
    return await run_command(sys.executable, str(ROOT / "bench" / script), *args, timeout=timeout)


def sample(name: str, **labels: str) -> float:
    """A metric of this process as it is exposed (``telex_x_total``, label values), read
    through prometheus_client's public registry; 0 for a series not exposed yet.

    What ``REGISTRY.get_sample_value`` does, but collecting only the metric asked for: the
    tests poll in loops on the event loop of the services they test, and collecting every
    metric (milliseconds) each time slows those services down.
    """
    for metric in REGISTRY.restricted_registry([name]).collect():
        for found in metric.samples:
            if found.name == name and found.labels == labels:
                return found.value
    return 0.0
