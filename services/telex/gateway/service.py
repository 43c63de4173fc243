"""The gateway: reads the whole wire and serves it as filtered live subscriptions.

This module wires the parts; each does one thing. Surfaces (the protocol is in
``schemas/gateway.asyncapi.yaml``):

- ``/v1/stream``: WebSocket (:mod:`.endpoint`, :mod:`.ws_session`); subscribe/unsubscribe
  with filters and cursors;
- ``/v1/events``: the same feed as Server-Sent Events (:mod:`.sse_session`), resumable with
  ``Last-Event-ID``;
- ``/v1/updates``: recent history, newest first, with the same filters (:mod:`.updates`).

Inside: :mod:`.wire` reads the wire into :mod:`.hub`, which fans events out to connections
admitted by :mod:`.admission`; :mod:`.catchup` brings each connection to the live stream,
:mod:`.heartbeats` keeps quiet ones informed, :mod:`.requests` checks what clients ask for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any
from urllib.parse import parse_qsl

from websockets.http11 import Request as Handshake

from telex import metrics
from telex.config import Config
from telex.gateway.admission import Admission
from telex.gateway.auth import Authenticator, AuthError
from telex.gateway.catchup import CatchUp
from telex.gateway.closes import CLOSE_RESTART
from telex.gateway.endpoint import Endpoints, Handler, Limits, Refused, WebSocketEndpoint
from telex.gateway.heartbeats import heartbeats
from telex.gateway.hub import Hub
from telex.gateway.routes import build_router
from telex.gateway.updates import Pages
from telex.gateway.wire import WireReader
from telex.gateway.ws_session import WebSocketSession
from telex.kafka import Clients
from telex.log import get_logger
from telex.tasks import cancel_and_wait

log = get_logger(__name__)

STREAM_PATH = "/v1/stream"


class Gateway:
    """Wire reader, subscription hub and the HTTP/WebSocket surfaces."""

    def __init__(self, config: Config, clients: Clients) -> None:
        self.config = config
        self.settings = config.gateway
        self.hub = Hub(config.gateway.history_size)
        self.admission = Admission(
            Authenticator(config.gateway), self.hub, config.gateway.max_connections
        )
        self.reader = WireReader(config, clients, self.hub)
        self.catchup = CatchUp(config, clients, self.hub, self.reader)
        pages = Pages(clients, config.topics.wire, self.hub, self.reader, self.catchup.replays)
        self._heartbeats: asyncio.Task[None] | None = None
        # Resumes started by WebSocket clients: the only per-connection tasks, while they run.
        self._session_tasks: set[asyncio.Task[None]] = set()
        self.endpoints = Endpoints(
            self,
            Limits(
                max_message_bytes=self.settings.max_frame_bytes,
                ping_interval=self.settings.ping_interval,
                ping_timeout=self.settings.ping_timeout,
                close_timeout=self.settings.slow_close_grace,
            ),
        )
        self.router = build_router(self.admission, self.catchup, pages)
        clients.reset.on_reset(self.reader.start_over)

    @property
    def draining(self) -> bool:
        """True once :meth:`drain` began: new connections are refused."""
        return self.admission.draining

    @property
    def ready(self) -> bool:
        """True once the reader has fetched from every wire partition, until draining."""
        return self.reader.caught_up and not self.draining

    async def start(self) -> None:
        """Start reading the wire."""
        await self.reader.start()
        self._heartbeats = asyncio.create_task(
            heartbeats(self.hub, self.settings), name="gateway-heartbeat"
        )

    async def stop(self) -> None:
        """Stop reading; open connections are closed by :meth:`drain` or the HTTP server."""
        tasks = [self._heartbeats] if self._heartbeats is not None else []
        await cancel_and_wait(*tasks, *self._session_tasks)
        self._heartbeats = None
        await self.endpoints.stop()
        await self.reader.stop()

    async def drain(self) -> None:
        """Stop accepting, then close every connection with 1012 in paced batches."""
        self.admission.draining = True
        conns = list(self.hub.conns)
        log.info("gateway.draining", connections=len(conns))
        batch = self.settings.drain_batch
        for i in range(0, len(conns), batch):
            if i:
                await asyncio.sleep(self.settings.drain_interval)
            for conn in conns[i : i + batch]:
                metrics.CLOSES.labels("drain").inc()
                conn.transport.close(CLOSE_RESTART, "server restarting: reconnect with your cursor")
        deadline = time.monotonic() + self.settings.slow_close_grace
        while self.hub.conns and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        log.info("gateway.drained", remaining=len(self.hub.conns))

    def open(self, endpoint: WebSocketEndpoint, request: Handshake) -> Handler:
        """The session of a new ``/v1/stream`` connection, or :class:`Refused` saying why not."""
        path, _, query_string = request.path.partition("?")
        if path != STREAM_PATH:
            raise Refused(404, f"no WebSocket endpoint at {path[:80]}: use {STREAM_PATH}")
        query = dict(parse_qsl(query_string, keep_blank_values=True))
        try:
            principal = self.admission.admit(request.headers, query)
        except AuthError as exc:
            raise Refused(exc.status, exc.message) from None
        return WebSocketSession(self.catchup, self.spawn, endpoint, principal, query)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a connection's request in a task the gateway owns (cancelled on stop)."""
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._session_tasks.add(task)
        task.add_done_callback(self._session_tasks.discard)
        return task
