"""Helpers for gateway tests: wire events produced straight to the wire topic of the real
broker, gateways started as the CLI starts them, and frame readers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from telex.config import Config
from telex.events import now_ms
from telex.gateway.service import Gateway
from telex.runtime import Running, started


def wire_event(
    n: int,
    source: str,
    text: str = "",
    *,
    language: str | None = "en",
    entities: list[dict[str, Any]] | None = None,
    tags: list[str] | None = None,
    type_: str = "telex.update.created",
) -> dict[str, Any]:
    """A wire CloudEvent as the processor writes it, with the enrichment fields."""
    now = now_ms()
    uid = f"u_{n:020x}"
    return {
        "specversion": "1.0",
        "id": f"e_{n:024x}",
        "source": f"/telex/sources/{source}",
        "type": type_,
        "time": "2024-01-18T08:29:00Z",
        "subject": uid,
        "datacontenttype": "application/json",
        "data": {
            "id": uid,
            "source_id": source,
            "source_url": f"https://example.com/{source}",
            "entry_id": str(n),
            "url": None,
            "title": None,
            "text": text or f"update {n} from {source}",
            "html": None,
            "time_raw": None,
            "published": "2024-01-18T08:29:00Z",
            "content_hash": f"{n:032x}",
            "previous_hash": None,
            "timings": {
                "first_seen_ms": now,
                "detected_ms": now,
                "produced_ms": now,
                "processed_ms": now,
            },
            "language": language,
            "entities": entities or [],
            "tags": tags or [],
            "quotes": [],
            "sentiment": None,
            "links": [],
            "story_id": f"s_{n:020x}",
            "diff": None,
        },
    }


@contextlib.asynccontextmanager
async def producer(bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    client = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=1)
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


async def produce(client: AIOKafkaProducer, topic: str, events: list[dict[str, Any]]) -> None:
    """Produce ``events`` keyed by source, as the processor does, and wait for the acks."""
    futures = [
        await client.send(topic, orjson.dumps(e), key=e["data"]["source_id"].encode())
        for e in events
    ]
    await asyncio.gather(*futures)


@contextlib.asynccontextmanager
async def gateway(config: Config) -> AsyncIterator[tuple[Running, Gateway, str]]:
    """A gateway process's worth of telex (no poller, no processor): running, gateway, ws URL."""
    async with started(config, ("gateway",), replay=False) as running:
        gw = running.components["gateway"]
        assert isinstance(gw, Gateway) and running.http_url is not None
        await wait_for(lambda: gw.ready)
        yield running, gw, running.http_url.replace("http", "ws", 1)


async def wait_for(predicate: Callable[[], bool], timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def recv(ws: Any, timeout: float = 15) -> dict[str, Any]:
    return dict(orjson.loads(await asyncio.wait_for(ws.recv(), timeout)))


async def recv_type(ws: Any, type_: str, timeout: float = 15) -> dict[str, Any]:
    """The next frame of ``type_``, failing on an event frame in between."""
    async with asyncio.timeout(timeout):
        while True:
            frame = await recv(ws, timeout)
            if frame["type"] == type_:
                return frame
            assert frame["type"] in ("heartbeat", "subscribed"), frame


async def events(ws: Any, count: int, timeout: float = 20) -> list[dict[str, Any]]:
    """The next ``count`` event frames (control frames are skipped)."""
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while len(out) < count:
            frame = await recv(ws, timeout)
            if frame["type"] == "event":
                out.append(frame)
    return out


async def quiet(ws: Any, seconds: float = 0.5) -> list[dict[str, Any]]:
    """Frames that arrive within ``seconds`` (expected: none)."""
    got = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while True:
                got.append(orjson.loads(await ws.recv()))
    return got


async def close_code(ws: Any, timeout: float = 15, frames: list[Any] | None = None) -> int:
    """Read until the server closes; the close code it sent (frames read go to ``frames``)."""
    from websockets.exceptions import ConnectionClosed

    try:
        async with asyncio.timeout(timeout):
            while True:
                frame = orjson.loads(await ws.recv())
                if frames is not None:
                    frames.append(frame)
    except ConnectionClosed as closed:
        if closed.rcvd is None:
            raise AssertionError("closed without a close frame") from closed
        return int(closed.rcvd.code)
