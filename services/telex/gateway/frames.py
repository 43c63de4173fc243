"""The bytes the gateway sends: JSON frames, their WebSocket framing and their SSE framing.

An event frame is ``{"type":"event","cursor":...,"event":<CloudEvent>}``, built by splicing the
wire record's bytes, never re-encoding them. A server-to-client WebSocket frame is unmasked,
so one encoded frame is valid on every connection: :func:`ws_frame` builds it once per event.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import orjson
from starlette.websockets import WebSocket

_TEXT_FIN = 0x81


def event_payload(value: bytes, cursor: str) -> bytes:
    """The JSON event frame around a wire record's bytes."""
    return b'{"type":"event","cursor":"' + cursor.encode() + b'","event":' + value + b"}"


def control(type_: str, **fields: Any) -> bytes:
    """A JSON control frame (``subscribed``, ``live``, ``resync``, ``error``, ...)."""
    return orjson.dumps({"type": type_, **fields})


def ws_frame(payload: bytes) -> bytes:
    """A complete unmasked WebSocket text frame (RFC 6455 section 5.2) around ``payload``."""
    size = len(payload)
    if size < 126:
        header = bytes((_TEXT_FIN, size))
    elif size < 65_536:
        header = struct.pack("!BBH", _TEXT_FIN, 126, size)
    else:
        header = struct.pack("!BBQ", _TEXT_FIN, 127, size)
    return header + payload


def sse_message(payload: bytes, cursor: str | None = None, event: str | None = None) -> bytes:
    """One Server-Sent Events message: ``id`` (the cursor, for Last-Event-ID), ``data``."""
    if b"\n" in payload or b"\r" in payload:
        # Only a record written by someone else's pretty-printer has raw newlines.
        payload = orjson.dumps(orjson.loads(payload))
    head = b""
    if event is not None:
        head += b"event: " + event.encode() + b"\n"
    if cursor is not None:
        head += b"id: " + cursor.encode() + b"\n"
    return head + b"data: " + payload + b"\n\n"


def _protocol_behind(send: Any, depth: int = 4) -> Any:
    # Starlette wraps ``send`` in closures (exception handling); the protocol's own bound
    # ``send`` is in one of their cells.
    seen: list[Any] = [send]
    for _ in range(depth):
        found: list[Any] = []
        for fn in seen:
            proto = getattr(fn, "__self__", None)
            if type(proto).__name__ == "WebSocketsSansIOProtocol":
                return proto
            for cell in getattr(fn, "__closure__", None) or ():
                try:
                    value = cell.cell_contents
                except ValueError:
                    continue
                if callable(value):
                    found.append(value)
        seen = found
    return None


def raw_transport(websocket: WebSocket) -> tuple[Any, asyncio.Transport] | None:
    """The uvicorn protocol and socket transport behind ``websocket``, when reachable.

    uvicorn's sans-I/O WebSocket protocol hands its own ``send`` to the app; writing complete
    frames to its transport is then equivalent to ``send_text`` without the per-message work.
    With any other server this returns None and the gateway sends through ASGI instead,
    correct but slower (tests check that the fast path is taken with the pinned servers).
    """
    proto = _protocol_behind(getattr(websocket, "_send", None))
    if proto is None:
        return None
    transport = getattr(proto, "transport", None)
    if not isinstance(transport, asyncio.Transport) or not hasattr(proto, "conn"):
        return None
    return proto, transport


def close_raw(proto: Any, code: int, reason: str) -> None:
    """Start the closing handshake on a uvicorn sans-I/O protocol from synchronous code.

    Mirrors what the protocol does for an ASGI ``websocket.close``; the app's pending
    ``receive()`` then returns the disconnect.
    """
    transport = proto.transport
    if proto.close_sent or transport.is_closing():
        return
    proto.conn.send_close(code, reason)
    transport.write(b"".join(proto.conn.data_to_send()))
    proto.close_sent = True
    proto.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
    if proto.read_paused:
        proto.read_paused = False
        transport.resume_reading()
    # As uvicorn does: wait for the peer's echo (closing at once could reset the connection
    # before the peer has read our close frame).
    proto.close_timer = proto.loop.call_later(proto.close_timeout, transport.close)
