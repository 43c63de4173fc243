"""One ``/v1/events`` Server-Sent Events stream: its own transport, a queue its response
drains.

The hub writes SSE messages to the queue as it writes frames to a WebSocket; the response
body waits for the queue to fill and sends what it holds in one chunk. A queue over its
limit marks the stream slow, as a full socket buffer does a WebSocket.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator

from telex import metrics
from telex.filters import Filter
from telex.gateway.auth import Principal
from telex.gateway.catchup import CatchUp
from telex.gateway.frames import control, sse_message
from telex.gateway.hub import Conn
from telex.gateway.requests import RequestError

RETRY_MS = 2000  # what the stream asks EventSource clients to wait before reconnecting


class SseSession:
    """One ``/v1/events`` stream; its own transport: a queue its response drains."""

    def __init__(self, catchup: CatchUp, principal: Principal) -> None:
        self.catchup = catchup
        settings = catchup.settings
        self.max_messages = settings.send_queue_size
        self.queue: deque[bytes] = deque()
        self.queued_bytes = 0
        self.ready = asyncio.Event()
        self.conn = Conn("sse", settings.send_queue_bytes, self)
        self.conn.principal = principal
        self._final: bytes | None = None

    def write(self, data: bytes) -> None:
        """Queue SSE messages for the response."""
        self.queue.append(data)
        self.queued_bytes += len(data)
        self.ready.set()

    def buffered(self) -> int:
        """Bytes queued; a queue of ``send_queue_size`` messages counts as over any limit."""
        if len(self.queue) >= self.max_messages:
            return self.conn.limit + 1
        return self.queued_bytes

    def close(self, code: int, reason: str) -> None:
        """End the stream after a last ``close`` message (SSE has no close codes)."""
        conn = self.conn
        if conn.closing:
            return
        self._final = sse_message(control("close", code=code, reason=reason), None, "close")
        conn.closing = True
        self.catchup.hub.go_offline(conn)
        self.ready.set()

    async def stream(
        self, filter_: Filter, cursor: dict[int, int] | None, backlog: int
    ) -> AsyncIterator[bytes]:
        """The bytes of the response body."""
        catchup = self.catchup
        conn = self.conn
        ready = self.ready
        catchup.hub.attach(conn)
        conn.subs = {"default": filter_}
        metrics.SUBSCRIPTIONS.inc()
        starter: asyncio.Task[None] | None = None
        try:
            yield f"retry: {RETRY_MS}\n\n".encode()
            if cursor is not None:
                starter = asyncio.create_task(catchup.resume(conn, cursor))
                starter.add_done_callback(lambda _: ready.set())
            else:
                catchup.start_live(conn, backlog)
            while True:
                await ready.wait()
                ready.clear()
                if self.queue:
                    yield self._take()
                if starter is not None and starter.done():
                    exc = starter.exception()
                    starter = None
                    if isinstance(exc, RequestError):
                        payload = control("error", code=exc.code, error=exc.message)
                        yield sse_message(payload, None, "error")
                        return
                if conn.closing or conn.slow:
                    if self._final is not None:
                        yield self._final
                    return
        finally:
            metrics.SUBSCRIPTIONS.dec()
            conn.closing = True
            catchup.hub.detach(conn)
            if starter is not None:
                starter.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await starter

    def _take(self) -> bytes:
        """Everything queued, as one chunk of the response body."""
        chunk = b"".join(self.queue)
        self.queue.clear()
        self.queued_bytes = 0
        return chunk
