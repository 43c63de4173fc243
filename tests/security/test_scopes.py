"""A credential restricted to some sources never receives another source's events, on any
surface: WebSocket live, backlog and resume (from memory and from Kafka), SSE live, backlog and
Last-Event-ID resume, and paged history. Unrestricted credentials are the control."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import orjson
import pytest
import websockets

from telex.config import Config
from telex.gateway.cursor import encode_cursor
from telex.gateway.service import Gateway
from tests.conftest import Broker
from tests.integration.gateway_helpers import (
    events,
    gateway,
    produce,
    producer,
    quiet,
    recv_type,
    wait_for,
    wire_event,
)

SECRET = "scope-test-secret-that-is-long-enough"
WALL_KEY = "wall-key-0123456789abcdef"  # may see source "a" only
DESK_KEY = "desk-key-0123456789abcdef"  # may see everything
SOURCES = "abc"
COUNT = 24  # 8 per source; the gateway keeps only 4 in memory, so resumes read Kafka.


def token(**claims: Any) -> str:
    return jwt.encode({"sub": "screen", "exp": int(time.time()) + 120, **claims}, SECRET)


@pytest.fixture
def secured(config_factory: Any, broker: Broker) -> Config:
    config: Config = config_factory(broker.bootstrap)
    settings = config.gateway.model_validate(
        {
            **config.gateway.model_dump(),
            "anonymous": False,
            "history_size": 4,
            "api_keys": [
                {"name": "wall", "key": WALL_KEY, "sources": ["a"]},
                {"name": "desk", "key": DESK_KEY},
            ],
            "jwt_secret": SECRET,
        }
    )
    return config.model_copy(update={"gateway": settings})


def sources_of(frames: list[dict[str, Any]]) -> list[str]:
    return [f["event"]["data"]["source_id"] for f in frames if f.get("type") == "event"]


async def sse(
    client: httpx.AsyncClient, url: str, seconds: float, count: int = 0, **headers: str
) -> list[Any]:
    """SSE messages ``url`` sends (data parsed): for ``seconds``, or until ``count`` events
    and then a short while more (anything extra would show)."""
    out: list[Any] = []
    with contextlib.suppress(TimeoutError):
        async with (
            asyncio.timeout(seconds) as deadline,
            client.stream("GET", url, headers=headers) as response,
        ):
            assert response.status_code == 200, await response.aread()
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    out.append(orjson.loads(line[6:]))
                    events = [m for m in out if m.get("type") == "event"]
                    if count and len(events) == count:
                        deadline.reschedule(asyncio.get_running_loop().time() + 0.3)
    return out


@contextlib.asynccontextmanager
async def filled(config: Config, bootstrap: str) -> AsyncIterator[tuple[str, str, Gateway]]:
    """A gateway whose wire holds COUNT events from sources a, b, c: (http url, ws url, gw)."""
    batch = [wire_event(i, SOURCES[i % 3]) for i in range(COUNT)]
    async with gateway(config) as (running, gw, ws_url), producer(bootstrap) as kafka:
        await produce(kafka, config.topics.wire, batch)
        await wait_for(lambda: sum(gw.hub.positions.values()) >= COUNT)
        yield running.http_url or "", ws_url, gw


def credential_for(kind: str) -> tuple[dict[str, str], str]:
    """Headers and query of a credential limited to source "a" (tokens made now: they expire)."""
    if kind == "api key":
        return {"X-API-Key": WALL_KEY}, ""
    return {}, "&token=" + token(sources=["a"])


@pytest.mark.parametrize("credential", ["api key", "jwt"])
async def test_restricted_credential_sees_only_its_sources_everywhere(
    broker: Broker, secured: Config, credential: str
) -> None:
    headers, query = credential_for(credential)
    mine = COUNT // 3
    async with (
        filled(secured, broker.bootstrap) as (http_url, ws_url, gw),
        httpx.AsyncClient(base_url=http_url, timeout=10) as client,
    ):
        start = encode_cursor(dict.fromkeys(gw.hub.positions, 0))
        stream = f"{ws_url}/v1/stream?x=1{query}"
        # Backlog of everything in memory, then resume from the very start (read from Kafka:
        # the memory holds 4 events) by query and by subscribe op with an empty filter.
        for url in (f"{stream}&backlog=1000", f"{stream}&cursor={start}"):
            async with websockets.connect(url, additional_headers=headers) as ws:
                await ws.send('{"op": "ping"}')
                frames = await quiet(ws, 1.0)
                assert set(sources_of(frames)) <= {"a"}, url
        async with websockets.connect(f"{stream}&subscribe=none", additional_headers=headers) as ws:
            await ws.send(orjson.dumps({"op": "subscribe", "filter": {}, "cursor": start}).decode())
            got = await events(ws, mine)
            assert set(sources_of(got)) == {"a"}
            await ws.send(orjson.dumps({"op": "subscribe", "id": "x", "filter": {}}).decode())
            assert set(sources_of(await quiet(ws, 0.5))) <= {"a"}
            # Widening is refused, also next to an allowed source.
            for wanted in (["b"], ["a", "c"]):
                await ws.send(
                    orjson.dumps({"op": "subscribe", "filter": {"sources": wanted}}).decode()
                )
                assert (await recv_type(ws, "error"))["code"] == "forbidden"

        # SSE: backlog (what memory holds), resume by Last-Event-ID and by cursor (Kafka).
        base = f"/v1/events?x=1{query}"
        for url, extra, expected in (
            (f"{base}&backlog=1000", {}, None),
            (base, {"Last-Event-ID": start}, mine),
            (f"{base}&cursor={start}", {}, mine),
        ):
            messages = await sse(
                client, url, 5.0 if expected else 1.0, expected or 0, **headers, **extra
            )
            seen = [m["event"]["data"]["source_id"] for m in messages if m.get("type") == "event"]
            assert set(seen) <= {"a"}, (url, extra, seen)
            assert expected is None or len(seen) == expected, (url, extra, seen)
        refused = await client.get(f"{base}&sources=b", headers=headers)
        assert refused.status_code == 400 and refused.json()["code"] == "forbidden"

        # History, paged to its end (memory, then Kafka).
        seen: list[str] = []
        page_url = f"/v1/updates?limit=3{query}"
        while True:
            page = await client.get(page_url, headers=headers)
            assert page.status_code == 200, page.text
            body = page.json()
            seen += [u["event"]["data"]["source_id"] for u in body["updates"]]
            if body["next"] is None:
                break
            page_url = f"/v1/updates?limit=3{query}&before={body['next']}"
        assert seen == ["a"] * mine
        widened = await client.get(f"/v1/updates?sources=a,b{query}", headers=headers)
        assert widened.status_code == 400 and "forbidden" in widened.text

        # Live: new events of every source; only "a" arrives, on WebSocket and on SSE (also
        # when SSE is asked for no subscription: that once meant the whole wire).
        sse_live = [
            asyncio.create_task(sse(client, f"{base}{extra}", 10.0, 3, **headers))
            for extra in ("&backlog=0", "&subscribe=none", "&subscribe=none&backlog=5")
        ]
        async with websockets.connect(f"{stream}&backlog=0", additional_headers=headers) as ws:
            await wait_for(lambda: sum(1 for c in gw.hub.conns if c.keys) >= 4)
            async with producer(broker.bootstrap) as kafka:
                live = [wire_event(COUNT + i, SOURCES[i % 3]) for i in range(9)]
                await produce(kafka, secured.topics.wire, live)
            got = await events(ws, 3)
            await wait_for(lambda: sum(gw.hub.positions.values()) >= COUNT + 9)
            await ws.send('{"op": "ping"}')
            rest = await quiet(ws, 0.5)
            assert set(sources_of(got + rest)) == {"a"}
        for task in sse_live:
            messages = await task
            seen = [m["event"]["data"]["source_id"] for m in messages if m.get("type") == "event"]
            assert seen == ["a"] * 3, seen


async def test_unrestricted_and_empty_scopes(broker: Broker, secured: Config) -> None:
    async with (
        filled(secured, broker.bootstrap) as (http_url, ws_url, gw),
        httpx.AsyncClient(base_url=http_url, timeout=10) as client,
    ):
        start = encode_cursor(dict.fromkeys(gw.hub.positions, 0))
        # The control: an unrestricted key gets all three sources the same ways.
        async with websockets.connect(
            f"{ws_url}/v1/stream?cursor={start}", additional_headers={"X-API-Key": DESK_KEY}
        ) as ws:
            assert set(sources_of(await events(ws, COUNT))) == set(SOURCES)
        # A token allowed no source sees nothing, on every surface.
        empty = token(sources=[])
        for path in ("/v1/updates", "/v1/events", "/v1/events?subscribe=none"):
            sep = "&" if "?" in path else "?"
            refused = await client.get(f"{path}{sep}token={empty}")
            assert refused.status_code == 400 and "forbidden" in refused.text, path
        async with websockets.connect(f"{ws_url}/v1/stream?token={empty}") as ws:
            error = await recv_type(ws, "error")
            assert error["code"] == "forbidden"
        # A malformed sources claim is no credential at all (not "every source").
        for claim in ("a", {"a": 1}, [1, 2], None):
            bad = token(sources=claim) if claim is not None else token()
            response = await client.get(f"/v1/updates?token={bad}")
            if claim is None:
                assert response.status_code == 200  # no claim: every source, by design
            else:
                assert response.status_code == 401, claim
