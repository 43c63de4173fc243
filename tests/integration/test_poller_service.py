"""The poller on the real broker: sources managed through /v1/sources, revisions, deletions,
and a failing source that keeps being polled with its state visible."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest
from jsonschema import Draft202012Validator

from telex.config import Config
from telex.poller.service import Poller
from telex.runtime import started
from telex.testing import run_telex
from tests.conftest import Broker, sample

from .site import LOCAL_POLLER, Site, serve_site
from .test_pipeline import read_topic, wait_for
from .test_poller_http import DATA


def live_page(entries: list[tuple[str, str, str]]) -> str:
    """A reverse-chronological live page; entries are (anchor, time, text), newest first."""
    blocks = "".join(
        f'<article id="{anchor}"><span class="t">{time}</span><p>{text}</p></article>'
        for anchor, time, text in entries
    )
    return f"<html><body><h1>Live</h1><p>18 January 2024</p><div>{blocks}</div></body></html>"


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    async for served in serve_site(Site()):
        yield served


async def raw_values(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in await read_topic(bootstrap, topic)]


async def wait_for_raw(
    bootstrap: str, topic: str, predicate: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    async with asyncio.timeout(30):
        while True:
            values = await raw_values(bootstrap, topic)
            if predicate(values):
                return values
            await asyncio.sleep(0.3)


async def test_sources_api_revisions_deletions_and_failures(
    broker: Broker,
    config_factory: Callable[..., Config],
    site: Site,
    raw_schema: Draft202012Validator,
) -> None:
    quick = {"TELEX_POLLER_INTERVAL": "0.3", "TELEX_POLLER_BACKOFF_MAX": "0.6"}
    config = config_factory(broker.bootstrap, **LOCAL_POLLER, **quick)
    raw_topic = config.topics.raw
    site.set(
        "/live",
        live_page(
            [("p3", "10:46", "Third."), ("p2", "10:30", "Second."), ("p1", "10:00", "First.")]
        ),
    )
    async with started(config, roles=("poller", "processor"), replay=False) as running:
        poller = running.components["poller"]
        assert isinstance(poller, Poller)
        api = f"{running.http_url}/v1/sources"
        async with httpx.AsyncClient(timeout=10) as client:
            created = await client.post(api, json={"id": "live", "url": site.url("/live")})
            assert created.status_code == 201, created.text
            assert (
                await client.post(api, json={"id": "live", "url": site.url("/x")})
            ).status_code == 409
            bad = await client.post(api, json={"id": "Bad", "url": "gopher://x", "interval": 0})
            assert bad.status_code == 422
            assert {e["field"] for e in bad.json()["errors"]} == {"id", "url", "interval"}

            values = await wait_for_raw(running.bootstrap, raw_topic, lambda v: len(v) >= 3)
            assert [v["text"] for v in values] == ["First.", "Second.", "Third."]
            for value in values:
                raw_schema.validate(value)
            ids = {v["text"]: v["id"] for v in values}

            # An edit is the same id with a new content hash: a revision, not a new entry.
            site.set(
                "/live",
                live_page(
                    [("p3", "10:46", "Third, corrected."), ("p2", "10:30", "Second."),
                     ("p1", "10:00", "First.")]
                ),
            )  # fmt: skip
            values = await wait_for_raw(running.bootstrap, raw_topic, lambda v: len(v) >= 4)
            assert values[3]["id"] == ids["Third."] and values[3]["kind"] == "upsert"
            assert values[3]["content_hash"] != values[2]["content_hash"]
            # ...which the processor puts on the wire as telex.update.revised.

            async def revised() -> list[dict[str, Any]]:
                wire = await read_topic(running.bootstrap, config.topics.wire)
                events = [orjson.loads(r.value) for r in wire]
                return [e for e in events if e["type"] == "telex.update.revised"]

            async with asyncio.timeout(30):
                while not (found := await revised()):
                    await asyncio.sleep(0.3)
            assert found[0]["data"]["id"] == ids["Third."]
            assert found[0]["data"]["text"] == "Third, corrected."

            # An entry vanishing from inside the page is reported deleted, with its last text.
            site.set(
                "/live",
                live_page([("p3", "10:46", "Third, corrected."), ("p1", "10:00", "First.")]),
            )
            values = await wait_for_raw(running.bootstrap, raw_topic, lambda v: len(v) >= 5)
            deleted = values[4]
            raw_schema.validate(deleted)
            assert deleted["kind"] == "delete" and deleted["id"] == ids["Second."]
            assert deleted["text"] == "Second."

            # ...which the processor puts on the wire as telex.update.deleted, once.
            async def deletions() -> list[dict[str, Any]]:
                wire = await read_topic(running.bootstrap, config.topics.wire)
                events = [orjson.loads(r.value) for r in wire]
                return [e for e in events if e["type"] == "telex.update.deleted"]

            async with asyncio.timeout(30):
                while not (gone := await deletions()):
                    await asyncio.sleep(0.3)
            assert [e["data"]["id"] for e in gone] == [ids["Second."]]

            # A source that fails keeps being polled, its backoff and error visible.
            site.set("/gone", "")
            site.pages["/gone"].status = 500
            assert (
                await client.put(f"{api}/gone", json={"url": site.url("/gone")})
            ).status_code == 201
            await wait_for(lambda: "gone" in poller.states and poller.states["gone"].polls >= 4)
            status = (await client.get(f"{api}/gone")).json()["status"]
            assert status["state"] == "backoff" and status["last_error"] == "HTTP 500"
            assert status["consecutive_errors"] >= 3 and status["backoff_s"] > 0
            exposition = (await client.get(f"{running.http_url}/metrics")).text
            assert 'telex_poller_source_consecutive_errors{source="gone"}' in exposition
            assert 'telex_poller_errors_total{reason="http_5xx"}' in exposition
            # ...and recovers by itself when the server does.
            site.pages["/gone"] = type(site.pages["/gone"])(
                live_page([("a", "09:00", "Back.")]).encode()
            )
            await wait_for(lambda: poller.states["gone"].cadence.consecutive_errors == 0)

            # A server without validators sending the same bytes: read, not re-extracted.
            site.set("/plain", live_page([("x", "08:00", "Plain.")]))
            site.pages["/plain"].etag = False
            unchanged = sample("telex_poller_polls_total", outcome="unchanged")
            assert (await client.put(f"{api}/plain", json={"url": site.url("/plain")})).is_success
            await wait_for(
                lambda: sample("telex_poller_polls_total", outcome="unchanged") >= unchanged + 2
            )
            assert poller.states["plain"].updates_produced == 1
            assert (await client.delete(f"{api}/plain")).status_code == 204

            listing = (await client.get(api)).json()
            assert [s["id"] for s in listing["sources"]] == ["gone", "live"]
            assert listing["sources"][1]["status"]["entries_seen"] == 2

            patched = await client.patch(f"{api}/live", json={"interval": 5})
            assert patched.status_code == 200 and patched.json()["interval"] == 5
            assert (await client.patch(f"{api}/live", json={"url": "x"})).status_code == 422
            assert (await client.delete(f"{api}/live")).status_code == 204
            await wait_for(lambda: "live" not in poller.states)
            assert (await client.get(f"{api}/live")).status_code == 404
            assert (await client.delete(f"{api}/live")).status_code == 404


async def telex(*args: str) -> tuple[int, str, str]:
    return await run_telex(*args)


async def test_telex_sources_commands(
    broker: Broker, config_factory: Callable[..., Config], site: Site
) -> None:
    config = config_factory(broker.bootstrap, **LOCAL_POLLER)
    site.set("/feed", (DATA / "rss2.xml").read_bytes(), "application/rss+xml")
    async with started(config, roles=("poller",), replay=False) as running:
        assert running.http_url is not None
        url = running.http_url
        code, out, err = await telex("sources", "--url", url, "add", "wire", site.url("/feed"),
                                   "--kind", "feed", "--interval", "0.5")  # fmt: skip
        assert code == 0 and orjson.loads(out)["kind"] == "feed"
        assert "Traceback" not in err, err
        code, _, err = await telex("sources", "--url", url, "add", "bad", "ftp://x")
        assert code == 1 and "url: Value error, must be an http" in err
        poller = running.components["poller"]
        assert isinstance(poller, Poller)
        await wait_for(lambda: "wire" in poller.states and poller.states["wire"].polls >= 1)
        code, out, _ = await telex("sources", "--url", url, "list")
        assert code == 0 and out.split()[:3] == ["wire", "feed", "ok"]
        code, out, _ = await telex("sources", "--url", url, "update", "wire", "--enabled", "false")
        assert code == 0 and orjson.loads(out)["enabled"] is False
        await wait_for(lambda: "wire" not in poller.states)  # disabled: no longer polled
        code, out, _ = await telex("sources", "--url", url, "get", "wire")
        assert code == 0 and orjson.loads(out)["status"] is None
        assert (await telex("sources", "--url", url, "remove", "wire"))[0] == 0
        code, _, err = await telex("sources", "--url", url, "get", "wire")
        assert code == 1 and "no source 'wire'" in err
