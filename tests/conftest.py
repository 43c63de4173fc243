"""Fixtures shared by every test: the seed blog, schemas, and a config builder."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from telex.config import Config, load
from telex.replay.seed import SeedBlog, load_seed

ROOT = Path(__file__).resolve().parent.parent
_ids = itertools.count()


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
        # The test broker is Tansu, which cannot do idempotent producers (kafka-notes.md).
        "TELEX_KAFKA_IDEMPOTENCE": "off",
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
