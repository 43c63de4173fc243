"""Two ``telex poller`` processes sharing 200 local sources through the sources topic's consumer
group: every new entry produced, each once in steady state; stopping one poller hands its
sources to the other within a rebalance."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from telex.config import Config
from telex.testing import TelexProcess
from tests.conftest import Broker

from .site import LOCAL_POLLER, Site, serve_site
from .test_pipeline import read_topic

SOURCES = 200


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


async def owned_polls(poller: TelexProcess, client: httpx.AsyncClient) -> dict[str, int]:
    """The sources ``poller`` polls now, and how many polls each has had."""
    listing = (await client.get(f"{poller.url}/v1/sources")).json()["sources"]
    return {s["id"]: s["status"]["polls"] for s in listing if s["status"] is not None}


async def owned(poller: TelexProcess, client: httpx.AsyncClient) -> set[str]:
    return set(await owned_polls(poller, client))


async def polled_again(pollers: list[TelexProcess], client: httpx.AsyncClient) -> None:
    """Until every source the pollers own has had two more complete polls (a poll of a source
    starts once the one before has ended): anything they would send again is sent by then."""
    before: dict[str, int] = {}
    for poller in pollers:
        before.update(await owned_polls(poller, client))

    async def done() -> bool:
        now: dict[str, int] = {}
        for poller in pollers:
            now.update(await owned_polls(poller, client))
        return all(now.get(source, 0) >= n + 3 for source, n in before.items())

    await until(done, 60, "two more polls of every source")


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
    broker: Broker, config_factory: Callable[..., Config], site: Site, tmp_path: Path
) -> None:
    # A steady interval of about a second: "two more polls" take seconds, not minutes.
    steady = {"TELEX_POLLER_INTERVAL": "1.0", "TELEX_POLLER_ADAPTIVE_MAX": "1.5"}
    json_logs = {"TELEX_LOG_FORMAT": "json", "TELEX_KAFKA_IDEMPOTENCE": "off"}
    config = config_factory(broker.bootstrap, **LOCAL_POLLER, **steady, **json_logs)
    raw = config.topics.raw
    a = TelexProcess("poller", config, log=tmp_path / "a.log")
    b = TelexProcess("poller", config, log=tmp_path / "b.log")

    async def texts() -> Counter[str]:
        records = await read_topic(broker.bootstrap, raw)
        return Counter(orjson.loads(r.value)["text"] for r in records)

    def wanted(entry: int, sources: Iterable[int] = range(SOURCES)) -> set[str]:
        return {f"Source {i} entry {entry}." for i in sources}

    try:
        a.start(), b.start()
        await asyncio.gather(a.wait_ready(60), b.wait_ready(60))
        assert a.url != b.url and a.running and b.running
        async with httpx.AsyncClient(timeout=30) as client:
            for i in range(SOURCES):
                created = await client.post(
                    f"{a.url}/v1/sources", json={"id": f"s{i:03d}", "url": site.url(f"/s/{i}")}
                )
                assert created.status_code == 201, created.text

            # Every source polled, by exactly one of the two pollers.
            async def split() -> bool:
                owned_a, owned_b = await owned(a, client), await owned(b, client)
                return len(owned_a | owned_b) == SOURCES and not owned_a & owned_b

            await until(split, 60, "the sources split between the two pollers")  # fmt: skip
            owned_a, owned_b = await owned(a, client), await owned(b, client)
            assert owned_a and owned_b, "both pollers should have a share"

            async def all_produced(entry: int) -> bool:
                return wanted(entry) <= set(await texts())

            await until(lambda: all_produced(1), 60, "the first entry of every source")

            # Steady state: a new entry on every page is produced once, by its one poller.
            for i in range(SOURCES):
                site.set(f"/s/{i}", page(i, 2))
            await until(lambda: all_produced(2), 60, "the second entry of every source")
            await polled_again([a, b], client)
            counts = await texts()
            assert {t: counts[t] for t in wanted(2) if counts[t] != 1} == {}
            assert {t: counts[t] for t in wanted(1) if counts[t] != 1} == {}

            # Stop one poller: the other takes its sources over within a rebalance.
            assert await b.stop(timeout=20) == 0
            assert a.running, a.log_text()[-3000:]
            took = await until(
                lambda: _owns_all(a, client), 60, "the remaining poller owning every source"
            )
            for i in range(SOURCES):
                site.set(f"/s/{i}", page(i, 3))
            await until(lambda: all_produced(3), 60, "the third entry of every source")
            await polled_again([a], client)
            counts = await texts()
            assert {t: counts[t] for t in wanted(3) if counts[t] != 1} == {}
            # The survivor kept what it knew of its own sources through the rebalance: only
            # the sources it took over were sent again (at-least-once; dedup drops them).
            kept = [int(s[1:]) for s in owned_a]
            for entry in (1, 2):
                assert {t: counts[t] for t in wanted(entry, kept) if counts[t] != 1} == {}
            print(f"handover took {took:.1f}s")
    finally:
        codes = await asyncio.gather(a.stop(timeout=20), b.stop(timeout=20))
    assert codes == [0, 0], (tmp_path / "a.log").read_text()[-3000:]
    for log in ("a.log", "b.log"):
        assert "Traceback" not in (tmp_path / log).read_text()


async def _owns_all(poller: TelexProcess, client: httpx.AsyncClient) -> bool:
    return len(await owned(poller, client)) == SOURCES
