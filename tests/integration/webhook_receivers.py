"""Real HTTP receivers on 127.0.0.1 for the notifier tests, and a wire-event producer."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from telex.events import cloudevent, content_hash, update_id
from telex.runtime import serve_http


@dataclass
class Received:
    """One request a receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float


Respond = Callable[[int, Received], Awaitable[tuple[int, dict[str, str]]]]


async def ok(_: int, __: Received) -> tuple[int, dict[str, str]]:
    return 200, {}


@dataclass
class Receiver:
    """An ASGI app that records every request and answers with ``respond(n, request)``."""

    respond: Respond = ok
    requests: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        request = Received(scope["path"], headers, body, time.monotonic())
        self.requests.append(request)
        self.arrived.set()
        status, extra = await self.respond(len(self.requests), request)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in extra.items()],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    async def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        """Wait until ``count`` requests arrived."""
        async with asyncio.timeout(timeout):
            while len(self.requests) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.requests


@contextlib.asynccontextmanager
async def receiving(respond: Respond = ok) -> AsyncIterator[Receiver]:
    """A receiver served on a free loopback port."""
    receiver = Receiver(respond)
    async with serve_http(receiver, "127.0.0.1", 0) as url:
        receiver.url = url + "/hook"
        yield receiver


def wire_event(source_id: str, text: str, **data: Any) -> dict[str, Any]:
    """A wire CloudEvent as the processor would produce it."""
    entry = uuid.uuid4().hex[:12]
    uid = update_id(source_id, entry)
    payload = {
        "id": uid,
        "source_id": source_id,
        "source_url": f"https://example.org/{source_id}",
        "entry_id": entry,
        "url": None,
        "title": None,
        "text": text,
        "html": None,
        "time_raw": None,
        "published": "2024-01-18T10:46:00Z",
        "content_hash": content_hash(None, text),
        "previous_hash": None,
        "timings": {},
        **data,
    }
    return cloudevent(
        "telex.update.created", payload, time_iso="2024-01-18T10:46:00Z", source_id=source_id
    )


async def produce(bootstrap: str, topic: str, *events: dict[str, Any]) -> None:
    """Put events on the wire topic, keyed by source like the processor does."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(
                topic, orjson.dumps(event), key=event["data"]["source_id"].encode()
            )
    finally:
        await producer.stop()
