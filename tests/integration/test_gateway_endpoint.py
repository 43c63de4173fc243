"""The gateway's own WebSocket endpoint: the same fast path on uvloop as on the stock loop,
hostile frames closed with a clear code (counted and logged) while the service keeps serving,
unanswered pings, refused handshakes."""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import uvloop
import websockets
from prometheus_client import REGISTRY

from telex.config import Config
from telex.gateway.endpoint import WebSocketEndpoint
from telex.gateway.service import Gateway
from tests.conftest import Broker
from tests.fuzz.live import Live

from .gateway_helpers import events, gateway, produce, producer, recv_type, wait_for, wire_event


def with_gateway(config: Config, **settings: Any) -> Config:
    return config.model_copy(update={"gateway": config.gateway.model_copy(update=settings)})


def closes(reason: str) -> float:
    value = REGISTRY.get_sample_value("telex_gateway_closes_total", {"reason": reason})
    return value or 0.0


class RawClient:
    """A WebSocket client that writes whatever bytes it is given after a valid handshake."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, url: str, path: str = "/v1/stream?subscribe=none") -> RawClient:
        host, port = url.removeprefix("ws://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(handshake(host, int(port), path))
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def frame(self) -> tuple[int, bytes]:
        """The next server frame: opcode and payload (server frames are never masked)."""
        first, second = await self.reader.readexactly(2)
        assert second & 0x80 == 0, "a server frame must not be masked"
        size = second & 0x7F
        if size == 126:
            size = struct.unpack("!H", await self.reader.readexactly(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", await self.reader.readexactly(8))[0]
        return first & 0x0F, await self.reader.readexactly(size)

    async def close_code(self, timeout: float = 15) -> int:
        """Read until the server's close frame; its code."""
        async with asyncio.timeout(timeout):
            while True:
                opcode, payload = await self.frame()
                if opcode == 0x8:
                    return int.from_bytes(payload[:2], "big")

    async def closed_by_server(self, timeout: float = 15) -> bool:
        """Whether the server then closes the TCP connection."""
        async with asyncio.timeout(timeout):
            return await self.reader.read() == b""

    def abort(self) -> None:
        self.writer.transport.abort()


def handshake(host: str, port: int, path: str, key: bool = True) -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Version: 13",
    ]
    if key:
        lines.append("Sec-WebSocket-Key: " + base64.b64encode(os.urandom(16)).decode())
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def masked(first: int, payload: bytes, declared: int | None = None) -> bytes:
    """A client frame: ``first`` is FIN/RSV/opcode; ``declared`` overrides the length field."""
    size = len(payload) if declared is None else declared
    if size < 126:
        head = bytes((first, 0x80 | size))
    elif size < 65_536:
        head = bytes((first, 0x80 | 126)) + struct.pack("!H", size)
    else:
        head = bytes((first, 0x80 | 127)) + struct.pack("!Q", size)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def test_gateway_on_uvloop_writes_through_its_own_endpoint(
    broker: Broker, config_factory: Callable[..., Config]
) -> None:
    config = config_factory(broker.bootstrap)
    live = Live(config, ("gateway",), loop_factory=uvloop.new_event_loop)
    await asyncio.to_thread(live.start)
    try:
        assert isinstance(live.loop, uvloop.Loop)
        assert live.running is not None
        gw = live.running.components["gateway"]
        assert isinstance(gw, Gateway)
        await wait_for(lambda: gw.ready)
        url = live.http_url.replace("http", "ws", 1)
        clients = [await websockets.connect(f"{url}/v1/stream?backlog=0") for _ in range(3)]

        async def transports() -> list[Any]:
            return [conn.transport for conn in gw.hub.conns]

        await wait_for(lambda: len(gw.hub.conns) == 3)
        # Every connection is written to through the endpoint, straight to uvloop's socket
        # transport: the one write path, whatever the loop.
        assert all(isinstance(t, WebSocketEndpoint) for t in live.call(transports()))
        batch = [wire_event(i, "ab"[i % 2]) for i in range(20)]
        async with producer(broker.bootstrap) as kafka:
            await produce(kafka, config.topics.wire, batch)
        for ws in clients:
            got = await events(ws, len(batch))
            assert sorted(f["event"]["id"] for f in got) == sorted(e["id"] for e in batch)
            await ws.close()
    finally:
        await asyncio.to_thread(live.stop)


HOSTILE: list[tuple[str, bytes, int, str]] = [
    ("unmasked client frame", b"\x81\x05hello", 1002, "protocol_error"),
    ("reserved bits set", masked(0xF1, b"{}"), 1002, "protocol_error"),
    ("unknown opcode", masked(0x83, b"{}"), 1002, "protocol_error"),
    ("continuation with nothing to continue", masked(0x80, b"{}"), 1002, "protocol_error"),
    ("control frame over 125 bytes", masked(0x89, b"x" * 200), 1002, "protocol_error"),
    ("fragmented control frame", masked(0x09, b"ping"), 1002, "protocol_error"),
    ("text that is not UTF-8", masked(0x81, b'{"op": "\xff\xfe"}'), 1007, "invalid_data"),
    ("length field of a terabyte", masked(0x81, b"", declared=1 << 40), 1009, "too_big"),
    (
        "fragments that add up past the limit",
        masked(0x01, b"x" * 600) + masked(0x00, b"x" * 600),
        1009,
        "too_big",
    ),
]


@pytest.mark.parametrize(("name", "data", "code", "reason"), HOSTILE, ids=[h[0] for h in HOSTILE])
async def test_hostile_frames_get_a_clear_close_code_and_the_service_keeps_serving(
    broker: Broker,
    config_factory: Callable[..., Config],
    name: str,
    data: bytes,
    code: int,
    reason: str,
) -> None:
    config = with_gateway(config_factory(broker.bootstrap), max_frame_bytes=1024)
    async with (
        gateway(config) as (_, gw, url),
        websockets.connect(f"{url}/v1/stream?subscribe=none") as bystander,
    ):
        before = closes(reason)
        raw = await RawClient.connect(url)
        raw.send(data)
        assert await raw.close_code() == code, name
        assert await raw.closed_by_server(), name
        assert closes(reason) == before + 1, name
        await wait_for(lambda: len(gw.hub.conns) == 1)
        # A fragmented message split across writes is put together, and served.
        ping = b'{"op": "ping"}'
        raw = await RawClient.connect(url)
        raw.send(masked(0x01, ping[:5]))
        raw.send(masked(0x00, ping[5:9]))
        raw.send(masked(0x80, ping[9:]))
        opcode, payload = await raw.frame()
        assert opcode == 0x1 and orjson.loads(payload)["type"] == "pong"
        raw.abort()
        await bystander.send('{"op": "ping"}')
        assert (await recv_type(bystander, "pong"))["cursor"]


async def test_a_peer_that_answers_no_ping_is_closed_with_1011(
    broker: Broker, config_factory: Callable[..., Config]
) -> None:
    config = with_gateway(config_factory(broker.bootstrap), ping_interval=0.2, ping_timeout=0.3)
    async with gateway(config) as (_, gw, url):
        before = closes("ping_timeout")
        # websockets answers pings by itself; the raw client reads nothing and answers nothing.
        answering = await websockets.connect(f"{url}/v1/stream?subscribe=none", ping_interval=None)
        silent = await RawClient.connect(url)
        assert await silent.close_code() == 1011
        assert closes("ping_timeout") == before + 1
        # The answering peer, connected as long, is still served.
        await answering.send('{"op": "ping"}')
        assert (await recv_type(answering, "pong"))["cursor"]
        await answering.close()
        silent.abort()
        await wait_for(lambda: not gw.hub.conns)


async def test_refused_handshakes(broker: Broker, config_factory: Callable[..., Config]) -> None:
    config = config_factory(broker.bootstrap)
    async with gateway(config) as (_, _, url):
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(f"{url}/v1/elsewhere")
        assert refused.value.response.status_code == 404
        assert b"/v1/stream" in refused.value.response.body
        before = REGISTRY.get_sample_value(
            "telex_gateway_refused_total", {"reason": "bad_handshake"}
        )
        host, port = url.removeprefix("ws://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(handshake(host, int(port), "/v1/stream", key=False))
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400"), head
        writer.close()
        after = REGISTRY.get_sample_value(
            "telex_gateway_refused_total", {"reason": "bad_handshake"}
        )
        assert after == (before or 0.0) + 1
        # And the process is fine.
        async with websockets.connect(f"{url}/v1/stream?subscribe=none") as ws:
            await ws.send('{"op": "ping"}')
            assert (await recv_type(ws, "pong"))["cursor"]
