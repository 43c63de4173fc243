"""Two ``telex poller`` processes sharing 200 local sources through the sources topic's consumer
group: every new entry produced, each once in steady state; stopping one poller hands its
sources to the other within a rebalance."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import Broker

from .site import Site, serve_site
from .test_pipeline import read_topic

TELEX = str(Path(sys.executable).with_name("telex"))
SOURCES = 200
_runs = itertools.count()


def page(source: int, count: int) -> str:
    entries = "".join(
        f'<article id="e{n}"><span>{9 + n // 60:02d}:{n % 60:02d}</span>'
        f"<p>Source {source} entry {n}.</p></article>"
        for n in range(count, 0, -1)
    )
    return f"<html><body><h1>S{source}</h1><p>18 January 2024</p>{entries}</body></html>"


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    s = Site()
    for i in range(SOURCES):
        s.set(f"/s/{i}", page(i, 1))
    async for served in serve_site(s):
        yield served


class PollerProcess:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log_path = log
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""

    async def start(self) -> None:
        self.log = self.log_path.open("wb")
        self.proc = await asyncio.create_subprocess_exec(
            TELEX, "poller", env=self.env, stdout=asyncio.subprocess.PIPE, stderr=self.log
        )
        assert self.proc.stdout is not None
        async with asyncio.timeout(60):
            while not self.url:
                line = (await self.proc.stdout.readline()).decode()
                assert line, f"poller exited: {self.log_path.read_text()[-3000:]}"
                if line.strip().startswith("metrics"):
                    self.url = line.split()[-1].removesuffix("/metrics")

    async def owned(self, client: httpx.AsyncClient) -> set[str]:
        listing = (await client.get(f"{self.url}/v1/sources")).json()["sources"]
        return {s["id"] for s in listing if s["status"] is not None}

    async def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            code = await self.proc.wait()
        self.log.close()
        return code


async def until(predicate: Any, timeout: float, what: str) -> float:
    """Wait for an async predicate; return how long it took."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    try:
        async with asyncio.timeout(timeout):
            while not await predicate():
                await asyncio.sleep(0.25)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None
    return loop.time() - began


async def test_two_pollers_share_200_sources_and_hand_over(
    broker: Broker, site: Site, tmp_path: Path
) -> None:
    n = next(_runs)
    raw = f"g{n}.updates.raw"
    env = {
        **os.environ,
        "TELEX_KAFKA_BOOTSTRAP": broker.bootstrap,
        "TELEX_KAFKA_IDEMPOTENCE": "off",
        "TELEX_KAFKA_SESSION_TIMEOUT_MS": "3000",
        "TELEX_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "TELEX_KAFKA_REQUEST_TIMEOUT_MS": "5000",
        "TELEX_TOPICS_RAW": raw,
        "TELEX_TOPICS_WIRE": f"g{n}.updates",
        "TELEX_TOPICS_DLQ": f"g{n}.dlq",
        "TELEX_TOPICS_SOURCES": f"g{n}.sources",
        "TELEX_POLLER_GROUP_ID": f"g{n}-poller",
        "TELEX_POLLER_INTERVAL": "1.0",
        "TELEX_POLLER_ADAPTIVE_MAX": "1.5",
        "TELEX_POLLER_ALLOW_NETWORKS": "127.0.0.0/8",
        "TELEX_HTTP_PORT": "0",
        "TELEX_LOG_FORMAT": "json",
    }
    env.pop("TELEX_CONFIG", None)
    a = PollerProcess(env, tmp_path / "a.log")
    b = PollerProcess(env, tmp_path / "b.log")

    async def texts() -> Counter[str]:
        records = await read_topic(broker.bootstrap, raw)
        return Counter(orjson.loads(r.value)["text"] for r in records)

    def wanted(entry: int, sources: Iterable[int] = range(SOURCES)) -> set[str]:
        return {f"Source {i} entry {entry}." for i in sources}

    try:
        await asyncio.gather(a.start(), b.start())
        async with httpx.AsyncClient(timeout=30) as client:

            async def both_ready() -> bool:
                codes = [(await client.get(f"{p.url}/readyz")).status_code for p in (a, b)]
                return codes == [200, 200]

            await until(both_ready, 60, "both pollers ready")
            for i in range(SOURCES):
                created = await client.post(
                    f"{a.url}/v1/sources", json={"id": f"s{i:03d}", "url": site.url(f"/s/{i}")}
                )
                assert created.status_code == 201, created.text

            # Every source polled, by exactly one of the two pollers.
            async def split() -> bool:
                owned_a, owned_b = await a.owned(client), await b.owned(client)
                return len(owned_a | owned_b) == SOURCES and not owned_a & owned_b

            await until(split, 60, "the sources split between the two pollers")  # fmt: skip
            owned_a, owned_b = await a.owned(client), await b.owned(client)
            assert owned_a and owned_b, "both pollers should have a share"

            async def all_produced(entry: int) -> bool:
                return wanted(entry) <= set(await texts())

            await until(lambda: all_produced(1), 60, "the first entry of every source")

            # Steady state: a new entry on every page is produced once, by its one poller.
            for i in range(SOURCES):
                site.set(f"/s/{i}", page(i, 2))
            await until(lambda: all_produced(2), 60, "the second entry of every source")
            await asyncio.sleep(3)  # several more polls of every source
            counts = await texts()
            assert {t: counts[t] for t in wanted(2) if counts[t] != 1} == {}
            assert {t: counts[t] for t in wanted(1) if counts[t] != 1} == {}

            # Stop one poller: the other takes its sources over within a rebalance.
            assert await b.stop() == 0
            took = await until(
                lambda: _owns_all(a, client), 60, "the remaining poller owning every source"
            )
            for i in range(SOURCES):
                site.set(f"/s/{i}", page(i, 3))
            await until(lambda: all_produced(3), 60, "the third entry of every source")
            await asyncio.sleep(3)
            counts = await texts()
            assert {t: counts[t] for t in wanted(3) if counts[t] != 1} == {}
            # The survivor kept what it knew of its own sources through the rebalance: only
            # the sources it took over were sent again (at-least-once; dedup drops them).
            kept = [int(s[1:]) for s in owned_a]
            for entry in (1, 2):
                assert {t: counts[t] for t in wanted(entry, kept) if counts[t] != 1} == {}
            print(f"handover took {took:.1f}s")
    finally:
        codes = await asyncio.gather(a.stop(), b.stop())
    assert codes == [0, 0], (tmp_path / "a.log").read_text()[-3000:]
    for log in ("a.log", "b.log"):
        assert "Traceback" not in (tmp_path / log).read_text()


async def _owns_all(poller: PollerProcess, client: httpx.AsyncClient) -> bool:
    return len(await poller.owned(client)) == SOURCES
