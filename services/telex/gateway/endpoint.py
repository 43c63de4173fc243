"""The gateway's WebSocket endpoint: RFC 6455 on connections telex owns.

uvicorn parses HTTP and hands each upgrade request, with its socket, to the protocol class it
is given as its public ``ws`` option (:meth:`Endpoints.protocol_class`). From there the
connection belongs to this module: the ``websockets`` library's sans-I/O ``ServerProtocol``
answers the handshake and parses the client's frames, pings and closes; the server's frames,
encoded once per event for every subscriber, are written straight to the socket. Only the
transport's public methods are used, so the stock asyncio loop and uvloop take the same path.

An open connection costs one :class:`WebSocketEndpoint`, its ``ServerProtocol`` and the
application's handler: no task, no queue, no timer while idle. Protocol pings are sent by one
sweep over all connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

import orjson
from websockets.datastructures import Headers
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol

from telex import metrics
from telex.log import get_logger
from telex.tasks import cancel_and_wait

log = get_logger(__name__)

CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009
CLOSE_PING_TIMEOUT = 1011
# Close codes the frame parser sends for hostile or broken input, as metric reasons.
_PARSER_CLOSES = {CLOSE_TOO_BIG: "too_big", CLOSE_INVALID_DATA: "invalid_data"}
# The library's own per-connection log lines (open, closed) are not worth a logger lookup each.
_LIBRARY_LOG = logging.getLogger("websockets.server")


class Refused(Exception):
    """A handshake the application turns down: answered with ``status`` and a JSON error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Handler(Protocol):
    """The application side of one accepted connection."""

    def start(self) -> None:
        """The handshake response has been sent: the connection is open."""

    def receive(self, message: str | bytes) -> None:
        """A complete client message (text decoded, binary as is)."""

    def closing(self) -> None:
        """The connection is being closed: stop sending to it."""

    def lost(self) -> None:
        """The connection is gone."""


class Acceptor(Protocol):
    """Decides on each handshake: a handler for the connection, or :class:`Refused`."""

    def open(self, endpoint: WebSocketEndpoint, request: Request) -> Handler:
        """The handler of a new connection asking for ``request`` (raises :class:`Refused`)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-connection protocol limits."""

    max_message_bytes: int = 65_536
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    # How long a closing connection may take to read its close frame before it is cut.
    close_timeout: float = 5.0


class Endpoints:
    """The WebSocket connections of one HTTP server: how they are made, kept alive and ended."""

    def __init__(self, acceptor: Acceptor | None, limits: Limits) -> None:
        self.acceptor = acceptor
        self.limits = limits
        self.open: dict[WebSocketEndpoint, None] = {}
        self._keepalive: asyncio.Task[None] | None = None

    def protocol_class(self) -> type[asyncio.Protocol]:
        """An asyncio protocol class for uvicorn's ``ws`` option, bound to these endpoints."""
        endpoints = self

        class Bound(WebSocketEndpoint):
            __slots__ = ()

            def __init__(self, **_: Any) -> None:
                # uvicorn passes its config and server state: the endpoint needs neither.
                super().__init__(endpoints)

        return Bound

    def added(self, endpoint: WebSocketEndpoint) -> None:
        """Count a new connection; the keepalive sweep starts with the first."""
        self.open[endpoint] = None
        # Without an acceptor every handshake is refused: nothing to keep alive, nothing to stop.
        if self._keepalive is None and self.acceptor is not None:
            self._keepalive = asyncio.get_running_loop().create_task(
                self._sweep(), name="gateway-ws-keepalive"
            )

    async def _sweep(self) -> None:
        limits = self.limits
        tick = max(0.05, min(limits.ping_interval, limits.ping_timeout) / 4)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for endpoint in list(self.open):
                endpoint.keepalive(now, limits.ping_interval, limits.ping_timeout)

    async def stop(self) -> None:
        """Stop the keepalive sweep and cut the connections still open."""
        if self._keepalive is not None:
            await cancel_and_wait(self._keepalive)
            self._keepalive = None
        for endpoint in list(self.open):
            endpoint.abort()


class WebSocketEndpoint(asyncio.Protocol):
    """One WebSocket connection; also the :class:`~telex.gateway.transport.Transport` the hub
    writes its shared frames to."""

    __slots__ = (
        "_abort_timer",
        "_endpoints",
        "_failed",
        "_handler",
        "_parts",
        "_paused",
        "_ping_at",
        "_seen",
        "_transport",
        "_ws",
        "buffered",
        "write",
    )

    def __init__(self, endpoints: Endpoints) -> None:
        self._endpoints = endpoints
        self._ws = ServerProtocol(max_size=endpoints.limits.max_message_bytes, logger=_LIBRARY_LOG)
        # Typed as asyncio's; uvloop's transport has the same methods without being a subclass.
        self._transport: asyncio.Transport = None  # type: ignore[assignment]
        self._handler: Handler | None = None
        self._parts: tuple[Opcode, list[bytes]] | None = None  # a fragmented message
        self._paused = False
        self._failed = False
        self._seen = time.monotonic()
        self._ping_at = 0.0
        self._abort_timer: asyncio.TimerHandle | None = None
        # The Transport's write and buffered are the socket transport's own methods, bound in
        # connection_made: the fan-out calls them with no call of ours in between.
        self.write: Callable[[bytes], None] = _unconnected_write
        self.buffered: Callable[[], int] = _unconnected_buffered

    # Transport (the hub's side) ----------------------------------------------------------------

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake; the peer gets what was written before, then the close
        frame, and is cut if it has not answered within the close timeout."""
        if self._handler is not None:
            self._handler.closing()
        ws = self._ws
        if ws.state is State.OPEN:
            ws.send_close(code, reason)
            self._flush()
            self._arm_abort()

    def abort(self) -> None:
        """Cut the connection at once."""
        if self._transport is not None:
            self._transport.abort()

    def pause(self) -> None:
        """Stop reading the client (while the application is busy with one of its requests)."""
        if not self._paused and not self._transport.is_closing():
            self._paused = True
            self._transport.pause_reading()

    def resume(self) -> None:
        """Read the client again."""
        if self._paused and not self._transport.is_closing():
            self._paused = False
            self._transport.resume_reading()

    # asyncio.Protocol ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = socket = cast(asyncio.Transport, transport)
        self.write = socket.write  # complete, unmasked server frames
        self.buffered = socket.get_write_buffer_size  # bytes written, not yet sent
        self._endpoints.added(self)

    def data_received(self, data: bytes) -> None:
        ws = self._ws
        self._seen = time.monotonic()
        ws.receive_data(data)
        for event in ws.events_received():
            if isinstance(event, Frame):
                self._frame(event)
            elif isinstance(event, Request):
                self._handshake(event)
        self._flush()
        if ws.parser_exc is not None and not self._failed:
            self._report(ws.parser_exc)

    def eof_received(self) -> bool | None:
        self._ws.receive_eof()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._endpoints.open.pop(self, None)
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None
        handler, self._handler = self._handler, None
        if handler is not None:
            handler.lost()

    # Keepalive -----------------------------------------------------------------------------------

    def keepalive(self, now: float, interval: float, timeout: float) -> None:
        """Ping a connection quiet for ``interval``; fail one that left a ping unanswered for
        ``timeout``. Anything received from the peer counts as an answer."""
        ws = self._ws
        if ws.state is not State.OPEN or self._paused:
            return
        if self._ping_at > self._seen:
            if now - self._ping_at > timeout:
                metrics.CLOSES.labels("ping_timeout").inc()
                if self._handler is not None:
                    self._handler.closing()
                ws.fail(CLOSE_PING_TIMEOUT, "keepalive ping timeout")
                self._flush()
        elif now - self._seen >= interval and now - self._ping_at >= interval:
            ws.send_ping(b"")
            self._ping_at = now
            self._flush()

    # Inside -------------------------------------------------------------------------------------

    def _handshake(self, request: Request) -> None:
        ws = self._ws
        acceptor = self._endpoints.acceptor
        try:
            if acceptor is None:
                raise Refused(404, "no WebSocket endpoint here")
            handler = acceptor.open(self, request)
        except Refused as exc:
            ws.send_response(_json_response(exc.status, {"error": exc.message}))
            return
        response = ws.accept(request)
        ws.send_response(response)
        if response.status_code != 101:
            metrics.REFUSED.labels("bad_handshake").inc()
            log.info("gateway.bad_handshake", status=response.status_code)
            return
        self._flush()  # the 101 goes before any frame the handler writes
        self._handler = handler
        handler.start()

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        data = bytes(frame.data)  # already bytes when received: no copy
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if frame.fin:
                self._deliver(opcode, data)
            else:
                self._parts = (opcode, [data])
        elif opcode is Opcode.CONT and self._parts is not None:
            first, parts = self._parts
            parts.append(data)
            if frame.fin:
                self._parts = None
                self._deliver(first, b"".join(parts))
        elif opcode is Opcode.CLOSE and self._handler is not None:
            self._handler.closing()
        # Pings are answered by the protocol; a pong only proves the peer alive (``_seen``).

    def _deliver(self, opcode: Opcode, data: bytes) -> None:
        handler = self._handler
        if handler is None:
            return
        if opcode is Opcode.BINARY:
            handler.receive(data)
            return
        try:
            text = data.decode()
        except UnicodeDecodeError as exc:
            metrics.CLOSES.labels("invalid_data").inc()
            self._failed = True
            log.info("gateway.bad_frame", code=CLOSE_INVALID_DATA, error=str(exc)[:200])
            handler.closing()
            self._ws.fail(CLOSE_INVALID_DATA, "text frame is not UTF-8")
            return
        handler.receive(text)

    def _report(self, exc: Exception) -> None:
        # The parser failed the connection (and queued the close frame): say why, once.
        self._failed = True
        if isinstance(exc, EOFError):
            return  # the peer went away mid-frame: nothing hostile, nothing to count.
        sent = self._ws.close_sent
        code = sent.code if sent is not None else 1006
        metrics.CLOSES.labels(_PARSER_CLOSES.get(code, "protocol_error")).inc()
        log.info("gateway.bad_frame", code=code, error=str(exc)[:200])
        if self._handler is not None:
            self._handler.closing()

    def _flush(self) -> None:
        transport = self._transport
        for data in self._ws.data_to_send():
            if data:
                transport.write(data)
            elif not transport.is_closing():
                # End of stream: the closing handshake is done (or the connection failed).
                transport.close()
                self._arm_abort()

    def _arm_abort(self) -> None:
        # A peer that never reads would keep its buffer, and this connection, forever.
        if self._abort_timer is None:
            loop = asyncio.get_running_loop()
            self._abort_timer = loop.call_later(
                self._endpoints.limits.close_timeout, self._transport.abort
            )


def _unconnected_write(data: bytes) -> None:
    raise RuntimeError("the WebSocket endpoint has no connection yet")


def _unconnected_buffered() -> int:
    return 0


def _json_response(status: int, body: dict[str, Any]) -> Response:
    data = orjson.dumps(body)
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(data))),
            ("Content-Type", "application/json"),
        ]
    )
    with contextlib.suppress(ValueError):
        return Response(status, http.HTTPStatus(status).phrase, headers, data)
    return Response(status, "", headers, data)
