"""A real Prometheus scrapes telex's services, each in its own process as in a deployment."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from telex.config import Config
from telex.kafka.embedded import free_port
from tests.conftest import Broker

TELEX = str(Path(sys.executable).with_name("telex"))


@pytest.fixture
async def services(
    broker: Broker, config_factory: Callable[..., Config], tmp_path: Path
) -> AsyncIterator[dict[str, int]]:
    """replay and the four services as separate processes on the test broker."""
    config = config_factory(broker.bootstrap)
    replay_port = free_port()
    toml = tmp_path / "telex.toml"
    toml.write_text(
        '[poller]\nallow_networks = ["127.0.0.0/8"]\n'
        f'[[sources]]\nid = "replay"\n'
        f'url = "http://127.0.0.1:{replay_port}/live/lavrov-press-conference-2024"\n'
    )
    env = {
        **os.environ,
        "TELEX_CONFIG": str(toml),
        "TELEX_KAFKA_BOOTSTRAP": broker.bootstrap,
        "TELEX_KAFKA_IDEMPOTENCE": "off",
        "TELEX_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "TELEX_TOPICS_RAW": config.topics.raw,
        "TELEX_TOPICS_WIRE": config.topics.wire,
        "TELEX_TOPICS_DLQ": config.topics.dlq,
        "TELEX_TOPICS_SOURCES": config.topics.sources,
        "TELEX_POLLER_GROUP_ID": config.poller.group_id,
        "TELEX_NOTIFIER_GROUP_ID": config.processor.group_id + "-notifier",
        "TELEX_NOTIFIER_TOPIC_WEBHOOKS": config.topics.raw + ".webhooks",
        "TELEX_NOTIFIER_TOPIC_RETRY": config.topics.raw + ".webhooks.retry",
        "TELEX_NOTIFIER_TOPIC_DLQ": config.topics.raw + ".webhooks.dlq",
        "TELEX_NOTIFIER_TOPIC_ATTEMPTS": config.topics.raw + ".webhooks.attempts",
        "TELEX_PROCESSOR_GROUP_ID": config.processor.group_id,
        "TELEX_REPLAY_INTERVAL": "0.2",
        "TELEX_POLLER_INTERVAL": "0.3",
    }
    ports = {name: free_port() for name in ("poller", "processor", "gateway", "notifier")}
    commands = {"replay": ["replay", "--port", str(replay_port)]}
    commands.update({name: [name] for name in ports})
    procs = {
        name: await asyncio.create_subprocess_exec(
            TELEX,
            *args,
            env={**env, "TELEX_HTTP_PORT": str(ports.get(name, 0))},
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / f"{name}.log").open("wb"),
        )
        for name, args in commands.items()
    }
    try:
        yield ports
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for name, proc in procs.items():
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
            assert proc.returncode == 0, (tmp_path / f"{name}.log").read_text()


async def query(client: httpx.AsyncClient, expr: str) -> list[Any]:
    response = await client.get("/api/v1/query", params={"query": expr})
    response.raise_for_status()
    result: list[Any] = response.json()["data"]["result"]
    return result


async def test_prometheus_scrapes_every_service_and_sees_latency(
    services: dict[str, int], tmp_path: Path
) -> None:
    binary = shutil.which("prometheus")
    assert binary, "prometheus missing: `make test` installs it (scripts/system-deps.sh)"
    promtool = shutil.which("promtool")
    assert promtool

    # promtool's linter accepts every service's exposition.
    async with httpx.AsyncClient() as client:
        async with asyncio.timeout(60):
            for port in services.values():
                while True:
                    try:
                        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
                        break
                    except httpx.TransportError:
                        await asyncio.sleep(0.2)
                lint = await asyncio.create_subprocess_exec(
                    promtool,
                    "check",
                    "metrics",
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                )
                out, _ = await lint.communicate(text.encode())
                assert lint.returncode == 0, out.decode()

    prom_port = free_port()
    (tmp_path / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [
                    {
                        "job_name": name,
                        "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
                    }
                    for name, port in services.items()
                ],
            }
        )
    )
    prometheus = await asyncio.create_subprocess_exec(
        binary,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{prom_port}",
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("wb"),
    )
    try:
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{prom_port}") as client,
            asyncio.timeout(150),
        ):
            while True:
                try:
                    up = await query(client, "up == 1")
                    latency = await query(client, "telex_end_to_end_latency_seconds_count > 0")
                except (httpx.TransportError, httpx.HTTPStatusError):
                    up, latency = [], []  # not listening yet, or 503 while it starts
                if len(up) == len(services) and latency:
                    break
                await asyncio.sleep(0.5)
            assert {r["metric"]["job"] for r in up} == set(services)
            # Each stage's own counters arrive from its own process.
            for job, metric in (
                ("poller", "telex_poller_polls_total"),
                ("processor", "telex_processor_records_consumed_total"),
                ("gateway", "telex_gateway_events_consumed_total"),
            ):
                while not await query(client, f'{metric}{{job="{job}"}} > 0'):
                    await asyncio.sleep(0.5)
            # The notifier has nothing to deliver here, but its series are scraped.
            assert await query(client, 'telex_notifier_pending_retries{job="notifier"}')
            assert latency[0]["metric"]["job"] == "gateway"
    finally:
        prometheus.terminate()
        await asyncio.wait_for(prometheus.wait(), 10)
