"""A real Prometheus scrapes telex's services, each in its own process as in a deployment."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from telex.config import Config
from telex.kafka.embedded import free_port
from telex.testing import TelexProcess
from tests.conftest import Broker


@pytest.fixture
async def services(
    broker: Broker, config_factory: Callable[..., Config], tmp_path: Path
) -> AsyncIterator[dict[str, int]]:
    """replay and the four services as separate processes on the test broker."""
    replay_port = free_port()
    replay = f"http://127.0.0.1:{replay_port}/live/lavrov-press-conference-2024"
    config = config_factory(
        broker.bootstrap,
        TELEX_SOURCES=orjson.dumps([{"id": "replay", "url": replay}]).decode(),
        TELEX_POLLER_ALLOW_NETWORKS="127.0.0.0/8",
        TELEX_REPLAY_INTERVAL="0.2",
        TELEX_POLLER_INTERVAL="0.3",
    )
    replaying = TelexProcess(
        ["replay", "--port", str(replay_port)], config, log=tmp_path / "replay.log"
    ).start()
    procs = {
        name: TelexProcess(name, config, log=tmp_path / f"{name}.log").start()
        for name in ("poller", "processor", "gateway", "notifier")
    }
    try:
        yield {name: proc.port for name, proc in procs.items()}
    finally:
        everyone = [*procs.values(), replaying]
        codes = await asyncio.gather(*(proc.stop() for proc in everyone))
        for proc, code in zip(everyone, codes, strict=True):
            assert code == 0, proc.log_text()


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
