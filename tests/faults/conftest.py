"""Fault tests: the session broker of the integration tests, and a pipeline rig per test."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from telex.config import Config
from tests.conftest import Broker
from tests.faults.harness import (
    HookFaults,
    Pipeline,
    Sources,
    Subscriber,
    create_webhook,
    serving_sources,
)
from tests.integration.webhook_receivers import Receiver, receiving

SOURCES = [f"src{n}" for n in range(6)]


@dataclass
class Rig:
    pipeline: Pipeline
    sources: Sources
    subscriber: Subscriber
    receiver: Receiver
    hook: HookFaults


@pytest.fixture
def rig_env() -> dict[str, str]:
    """Settings of the pipeline's processes beyond the harness's own (a test module
    overrides this fixture to change them)."""
    return {}


@pytest.fixture
async def rig(
    broker: Broker,
    config_factory: Callable[..., Config],
    tmp_path: Path,
    rig_env: dict[str, str],
) -> AsyncIterator[Rig]:
    """Pipeline up and ready, a webhook subscription to everything, a subscriber reading the
    wire from its beginning."""
    config = config_factory(broker.bootstrap)
    hook = HookFaults()
    async with serving_sources(SOURCES) as sources, receiving(hook.respond) as receiver:
        pipeline = Pipeline(config, sources, tmp_path, rig_env)
        for role in ("processor", "gateway", "notifier", "poller"):
            await pipeline.start(role)
        subscriber_task: asyncio.Task[None] | None = None
        try:
            await pipeline.wait_ready(timeout=90)
            await create_webhook(pipeline, receiver.url)
            subscriber = Subscriber(pipeline.gateway_url, pipeline.start_cursor())
            subscriber_task = asyncio.create_task(subscriber.run())
            yield Rig(pipeline, sources, subscriber, receiver, hook)
        finally:
            if subscriber_task is not None:
                subscriber_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await subscriber_task
            await pipeline.stop()
