"""The two baselines of the fan-out benchmark, each reading the same wire topic as the gateway.

- ``floor``: the least Python can do. A raw asyncio server with a hand-rolled WebSocket
  handshake; for every record it builds one frame and writes it to every transport.
- ``floor_batch``: the same, writing each fetched batch as one buffer per connection (the
  gateway's own trick, without its filters, cursors, limits or accounting).
- ``websockets``: the ``websockets`` library's own server and its ``broadcast()`` of each
  record's frame to every connection.
- ``naive``: what a user would write with FastAPI:
  ``for ws in clients: await ws.send_text(text)``, served by the same uvicorn as telex.

Run by bench/fanout.py: ``python bench/servers.py floor|naive PORT BOOTSTRAP TOPIC``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import sys
from typing import ClassVar

import uvicorn
from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from telex.gateway.frames import event_payload, ws_frame
from telex.kafka.scan import partitions_of

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


async def wire(bootstrap: str, topic: str):  # type: ignore[no-untyped-def]
    """(cursor, value) of every record of ``topic``."""
    async for batch in wire_batches(bootstrap, topic):
        for item in batch:
            yield item


async def wire_batches(bootstrap: str, topic: str):  # type: ignore[no-untyped-def]
    """Lists of (cursor, value), one per fetch from ``topic``."""
    # The same fetch wait as the gateway's default (the embedded broker answers a fetch only
    # when the wait expires, so this bounds the latency it adds).
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50
    )
    await consumer.start()
    tps = await partitions_of(consumer, topic)
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)  # each run has a fresh topic
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=200, max_records=2000)
            items = [
                (f"{tp.partition}:{record.offset + 1}", record.value)
                for tp, records in batch.items()
                for record in records
            ]
            if items:
                yield items
    finally:
        await consumer.stop()


class FloorProtocol(asyncio.Protocol):
    clients: ClassVar[set[asyncio.Transport]] = set()

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.open:
            return  # client frames are ignored: the floor only broadcasts.
        self.buffer += data
        if b"\r\n\r\n" not in self.buffer:
            return
        key = b""
        for line in self.buffer.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        self.open = True
        self.clients.add(self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.clients.discard(self.transport)


async def floor(port: int, bootstrap: str, topic: str) -> None:
    server = await asyncio.get_running_loop().create_server(
        FloorProtocol, "127.0.0.1", port, backlog=4096
    )
    async with server:
        async for cursor, value in wire(bootstrap, topic):
            frame = ws_frame(event_payload(value, cursor))
            for transport in FloorProtocol.clients:
                transport.write(frame)


async def floor_batch(port: int, bootstrap: str, topic: str) -> None:
    """The floor with the gateway's main trick: one write per connection per fetched batch."""
    server = await asyncio.get_running_loop().create_server(
        FloorProtocol, "127.0.0.1", port, backlog=4096
    )
    async with server:
        async for batch in wire_batches(bootstrap, topic):
            blob = b"".join(ws_frame(event_payload(value, cursor)) for cursor, value in batch)
            for transport in FloorProtocol.clients:
                transport.write(blob)


async def websockets_broadcast(port: int, bootstrap: str, topic: str) -> None:
    """The ``websockets`` library: its server, and ``broadcast()`` of every record."""
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    connections: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        connections.add(ws)
        try:
            await ws.wait_closed()
        finally:
            connections.discard(ws)

    # As the other servers here: no compression, no pings (the client answers none).
    async with serve(handler, "127.0.0.1", port, compression=None, ping_interval=None):
        async for cursor, value in wire(bootstrap, topic):
            broadcast(connections, event_payload(value, cursor).decode())


async def naive(port: int, bootstrap: str, topic: str) -> None:
    app = FastAPI()
    clients: set[WebSocket] = set()

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket) -> None:
        await ws.accept()
        clients.add(ws)
        try:
            while True:
                await ws.receive_text()
        except WebSocketDisconnect:
            pass
        finally:
            clients.discard(ws)

    async def broadcast() -> None:
        async for cursor, value in wire(bootstrap, topic):
            text = event_payload(value, cursor).decode()
            for ws in list(clients):
                with contextlib.suppress(Exception):
                    await ws.send_text(text)

    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        ws_ping_interval=None,  # as the gateway in the benchmark: the client sends no pongs
        backlog=4096,
    )
    task = asyncio.create_task(broadcast())
    try:
        await uvicorn.Server(config).serve()
    finally:
        task.cancel()


if __name__ == "__main__":
    kind, port, bootstrap, topic = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    servers = {
        "floor": floor,
        "floor_batch": floor_batch,
        "naive": naive,
        "websockets": websockets_broadcast,
    }
    asyncio.run(servers[kind](port, bootstrap, topic))
