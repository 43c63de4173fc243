"""Where a connection's bytes go: the one interface the hub writes to.

Every subscriber, WebSocket or Server-Sent Events, is a :class:`Transport`: the hub writes
complete encoded messages to it, reads how many bytes are still unsent (its byte-limited send
queue) and closes it with a WebSocket close code. The WebSocket endpoint writes straight to
its socket; an SSE stream keeps a queue its response drains.
"""

from __future__ import annotations

from typing import Protocol


class Transport(Protocol):
    """A connection the hub can write to, measure and close."""

    def write(self, data: bytes) -> None:
        """Queue ``data`` (complete WebSocket frames or SSE messages) for sending."""

    def buffered(self) -> int:
        """Bytes written but not yet sent to the peer."""

    def close(self, code: int, reason: str) -> None:
        """Close the connection with a WebSocket close code (SSE: a final ``close`` message).

        Idempotent, never blocks: callable from the fan-out loop.
        """
