"""The bytes the gateway sends: JSON frames, their WebSocket framing and their SSE framing.

An event frame is ``{"type":"event","cursor":...,"event":<CloudEvent>}``, built by splicing the
wire record's bytes, never re-encoding them. A server-to-client WebSocket frame is unmasked,
so one encoded frame is valid on every connection: :func:`ws_frame` builds it once per event.
"""

from __future__ import annotations

import struct
from typing import Any

import orjson

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
