"""The gateway's other surfaces with real clients: SSE with Last-Event-ID resume, paged history,
and authentication (API keys, JWT, origins) on all of them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import jwt
import orjson
import pytest
import websockets

from telex.config import Config
from tests.conftest import Broker

from .gateway_helpers import events, gateway, produce, producer, recv_type, wait_for, wire_event

SECRET = "test-secret-that-is-long-enough-for-hs256"
FORGED = jwt.encode({"sub": "x", "exp": 2**40}, "another-secret-that-is-long-enough-too")


async def sse_messages(lines: AsyncIterator[str], count: int) -> list[dict[str, Any]]:
    """Parse ``count`` SSE messages (with their id and event name) from a response."""
    out: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    async for line in lines:
        if not line:
            if "data" in current:
                out.append(current)
                if len(out) == count:
                    return out
            current = {}
            continue
        name, _, value = line.partition(": ")
        if name == "data":
            current["data"] = orjson.loads(value)
        elif name in ("id", "event"):
            current[name] = value
    return out


async def test_sse_stream_resumes_with_last_event_id(
    broker: Broker, config_factory: Callable[..., Config]
) -> None:
    config = config_factory(broker.bootstrap)
    batch = [wire_event(i, "a" if i % 2 else "b") for i in range(12)]
    only_a = [e["id"] for e in batch if e["data"]["source_id"] == "a"]
    async with gateway(config) as (running, gw, _), producer(broker.bootstrap) as kafka:
        await produce(kafka, config.topics.wire, batch[:6])
        await wait_for(lambda: sum(gw.hub.positions.values()) == 6)
        async with (
            httpx.AsyncClient(base_url=running.http_url or "", timeout=20) as client,
            client.stream("GET", "/v1/events?sources=a&backlog=2") as response,
        ):
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            first = await sse_messages(response.aiter_lines(), 2)
        assert [m["data"]["event"]["id"] for m in first] == only_a[1:3]
        assert all(m["id"] == m["data"]["cursor"] for m in first)
        # Away for a while; the browser's EventSource would send Last-Event-ID.
        await produce(kafka, config.topics.wire, batch[6:])
        await wait_for(lambda: sum(gw.hub.positions.values()) == 12)
        async with (
            httpx.AsyncClient(base_url=running.http_url or "", timeout=20) as client,
            client.stream(
                "GET", "/v1/events?sources=a", headers={"Last-Event-ID": first[-1]["id"]}
            ) as response,
        ):
            resumed = await sse_messages(response.aiter_lines(), 4)
        assert [m["data"]["event"]["id"] for m in resumed[:3]] == only_a[3:]
        assert resumed[3]["event"] == "live" and resumed[3]["data"]["replayed"] == 3

        async with httpx.AsyncClient(base_url=running.http_url or "") as client:
            bad = await client.get("/v1/events?cursor=@@@")
            assert bad.status_code == 400 and bad.json()["code"] == "bad_cursor"
            bad = await client.get("/v1/events?types=published")
            assert bad.status_code == 400 and "unknown event type" in bad.json()["error"]


async def test_history_pages_newest_first_with_filters(
    broker: Broker, config_factory: Callable[..., Config]
) -> None:
    config = config_factory(broker.bootstrap)
    batch = [wire_event(i, "a", tags=["even"] if i % 2 == 0 else []) for i in range(9)]
    async with gateway(config) as (running, gw, _), producer(broker.bootstrap) as kafka:
        await produce(kafka, config.topics.wire, batch)
        await wait_for(lambda: sum(gw.hub.positions.values()) == 9)
        async with httpx.AsyncClient(base_url=running.http_url or "") as client:
            seen = []
            page = (await client.get("/v1/updates?tags=even&limit=2")).json()
            while True:
                assert all(u["type"] == "event" and u["cursor"] for u in page["updates"])
                seen.extend(u["event"]["id"] for u in page["updates"])
                if page["next"] is None:
                    break
                page = (
                    await client.get(f"/v1/updates?tags=even&limit=2&before={page['next']}")
                ).json()
            assert seen == [batch[i]["id"] for i in (8, 6, 4, 2, 0)]
            assert (await client.get("/v1/updates?before=xx!")).status_code == 400
        gw.hub.ring.size = 2  # as if the gateway remembered only the newest events
        await produce(kafka, config.topics.wire, [wire_event(20, "a"), wire_event(21, "a")])
        await wait_for(lambda: sum(gw.hub.positions.values()) == 11)
        async with httpx.AsyncClient(base_url=running.http_url or "") as client:
            # Two from memory, then the rest read back from Kafka, still newest first.
            page = (await client.get("/v1/updates?limit=4")).json()
            got = [u["event"]["id"] for u in page["updates"]]
            page = (await client.get(f"/v1/updates?limit=20&before={page['next']}")).json()
            got += [u["event"]["id"] for u in page["updates"]]
            assert page["next"] is None
            newest_first = [wire_event(21, "a"), wire_event(20, "a"), *reversed(batch)]
            assert got == [e["id"] for e in newest_first]
            even = (await client.get("/v1/updates?tags=even&limit=20")).json()
            assert [u["event"]["id"] for u in even["updates"]] == seen


@pytest.fixture
def secured(config_factory: Callable[..., Config], broker: Broker) -> Config:
    config = config_factory(broker.bootstrap)
    keys = [
        {"name": "wall", "key": "wall-key-0123456789abcdef", "sources": ["a"]},
        {"name": "desk", "key": "desk-key-0123456789abcdef"},
    ]
    settings = config.gateway.model_validate(
        {
            **config.gateway.model_dump(),
            "anonymous": False,
            "api_keys": keys,
            "jwt_secret": SECRET,
            "allowed_origins": "https://newsroom.example",
        }
    )
    return config.model_copy(update={"gateway": settings})


def token(**claims: Any) -> str:
    return jwt.encode({"sub": "screen-1", "exp": int(time.time()) + 60, **claims}, SECRET)


async def test_auth_refusals_and_source_restrictions(broker: Broker, secured: Config) -> None:
    batch = [wire_event(i, "abc"[i % 3]) for i in range(6)]
    async with gateway(secured) as (running, gw, url), producer(broker.bootstrap) as kafka:
        stream = f"{url}/v1/stream?backlog=0"
        refusals = [
            ({}, "", 401),
            ({"Authorization": "Bearer nope-not-a-key-at-all"}, "", 401),
            ({"Authorization": "Basic abc"}, "", 401),
            ({}, f"&token={token(exp=int(time.time()) - 10)}", 401),
            ({}, f"&token={FORGED}", 401),
            ({"Origin": "https://evil.example", "X-API-Key": "desk-key-0123456789abcdef"}, "", 403),
        ]
        for headers, query, status in refusals:
            with pytest.raises(websockets.InvalidStatus) as refused:
                await websockets.connect(stream + query, additional_headers=headers)
            assert refused.value.response.status_code == status, (headers, query)
        async with httpx.AsyncClient(base_url=running.http_url or "") as client:
            assert (await client.get("/v1/updates")).status_code == 401
            assert (await client.get("/v1/events")).status_code == 401

        wall = await websockets.connect(
            stream,
            additional_headers={
                "Authorization": "Bearer wall-key-0123456789abcdef",
                "Origin": "https://newsroom.example",
            },
        )
        desk = await websockets.connect(
            stream, additional_headers={"X-API-Key": "desk-key-0123456789abcdef"}
        )
        screen = await websockets.connect(f"{stream}&token={token(sources=['b'])}")
        await wait_for(lambda: len(gw.hub.conns) == 3)
        await produce(kafka, secured.topics.wire, batch)
        assert {f["event"]["data"]["source_id"] for f in await events(wall, 2)} == {"a"}
        assert {f["event"]["data"]["source_id"] for f in await events(screen, 2)} == {"b"}
        assert len(await events(desk, 6)) == 6
        # A restricted credential cannot widen its view.
        await wall.send(orjson.dumps({"op": "subscribe", "filter": {"sources": ["b"]}}).decode())
        error = await recv_type(wall, "error")
        assert error["code"] == "forbidden" and "'b'" in error["error"]
        for ws in (wall, desk, screen):
            await ws.close()


async def test_sse_stream_ends_with_a_close_message_on_drain(
    broker: Broker, config_factory: Callable[..., Config]
) -> None:
    config = config_factory(broker.bootstrap)
    async with gateway(config) as (running, gw, _), producer(broker.bootstrap) as kafka:
        async with (
            httpx.AsyncClient(base_url=running.http_url or "", timeout=20) as client,
            client.stream("GET", "/v1/events?backlog=0") as response,
        ):
            lines = response.aiter_lines()
            await wait_for(lambda: len(gw.hub.conns) == 1)
            await produce(kafka, config.topics.wire, [wire_event(1, "a")])
            (event,) = await sse_messages(lines, 1)
            assert event["data"]["type"] == "event" and event["id"] == event["data"]["cursor"]
            drain = asyncio.create_task(gw.drain())
            (close,) = await sse_messages(lines, 1)
            assert close["event"] == "close" and close["data"]["code"] == 1012
            assert [line async for line in lines] == []  # and the response ends
            await drain
        assert gw.hub.conns == {}
