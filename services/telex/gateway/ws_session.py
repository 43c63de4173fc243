"""One ``/v1/stream`` WebSocket connection: its requests, subscriptions and errors.

The client sends ``subscribe``, ``unsubscribe`` and ``ping`` frames (see
``schemas/gateway.asyncapi.yaml``); each gets an answer or an ``error`` frame, and the
connection stays open. A connection that asked for nothing usable in its URL, or floods, is
closed with :data:`~telex.gateway.closes.CLOSE_POLICY`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

import orjson

from telex import metrics
from telex.filters import Filter
from telex.gateway.auth import Principal
from telex.gateway.catchup import CatchUp
from telex.gateway.closes import CLOSE_INTERNAL, CLOSE_POLICY
from telex.gateway.endpoint import WebSocketEndpoint
from telex.gateway.frames import control, ws_frame
from telex.gateway.hub import Conn
from telex.gateway.requests import (
    SUBSCRIBE_FIELDS,
    RequestError,
    initial,
    parse_backlog,
    parse_cursor,
    sub_id,
    subscription_filter,
)
from telex.log import get_logger
from telex.ratelimit import TokenBucket

log = get_logger(__name__)

# Runs a connection's request in a task its owner cancels on stop.
Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]


class WebSocketSession:
    """One ``/v1/stream`` connection: its subscriptions, its cursor, its errors.

    Driven by its endpoint's callbacks; no task of its own while idle. A request that has to
    wait (a resume from a cursor) runs in a task and the client is not read until it is done,
    so requests are answered in order.
    """

    __slots__ = (
        "_pending",
        "_task",
        "bucket",
        "catchup",
        "conn",
        "endpoint",
        "principal",
        "query",
        "spawn",
    )

    def __init__(
        self,
        catchup: CatchUp,
        spawn: Spawn,
        endpoint: WebSocketEndpoint,
        principal: Principal,
        query: dict[str, str],
    ) -> None:
        self.catchup = catchup
        self.spawn = spawn
        self.endpoint = endpoint
        self.principal = principal
        self.query: dict[str, str] | None = query
        settings = catchup.settings
        self.conn = Conn("ws", settings.send_queue_bytes, endpoint)
        self.conn.principal = principal
        self.bucket = TokenBucket(settings.max_messages_per_second, settings.message_burst)
        self._task: asyncio.Task[None] | None = None
        self._pending: deque[str | bytes] | None = None

    def reply(self, type_: str, **fields: Any) -> None:
        """Send a control frame."""
        self.conn.write(ws_frame(control(type_, **fields)))

    def error(self, code: str, message: str, ref: Any = None) -> None:
        """Send an error frame; the connection stays open."""
        metrics.CLIENT_ERRORS.labels(code).inc()
        fields: dict[str, Any] = {"code": code, "error": message}
        if isinstance(ref, str):
            fields["id"] = ref
        self.reply("error", **fields)

    def close(self, code: int, reason: str) -> None:
        """Close the connection (from any task, without waiting)."""
        self.endpoint.close(code, reason)

    # Endpoint callbacks ----------------------------------------------------------------------

    def start(self) -> None:
        """The connection is open: take the subscription its query string asks for."""
        query, self.query = self.query or {}, None
        self.catchup.hub.attach(self.conn)
        try:
            filter_, cursor, backlog = initial(self.principal, query, self.catchup.settings)
        except RequestError as exc:
            self._refuse(exc)
            return
        if filter_ is not None:
            self._begin({"default": filter_}, cursor, backlog, None, initial=True)

    def closing(self) -> None:
        """Stop sending to this connection."""
        conn = self.conn
        if not conn.closing:
            conn.closing = True
            self.catchup.hub.go_offline(conn)

    def lost(self) -> None:
        """The connection is gone: forget it."""
        conn = self.conn
        metrics.SUBSCRIPTIONS.dec(len(conn.subs))
        conn.closing = True
        self.catchup.hub.detach(conn)
        if self._task is not None:
            self._task.cancel()

    def receive(self, message: str | bytes) -> None:
        """One client message."""
        if self.conn.closing:
            return
        if not self.bucket.take():
            metrics.CLOSES.labels("flood").inc()
            self.close(CLOSE_POLICY, "too many messages")
            return
        if self._task is not None:
            # Arrived with the request being served: answered after it, in order.
            if self._pending is None:
                self._pending = deque()
            self._pending.append(message)
            return
        self._dispatch(message)

    # Requests --------------------------------------------------------------------------------

    def _refuse(self, exc: RequestError) -> None:
        # Nothing usable was asked for: say what, and close (a retry would be the same).
        self.error(exc.code, exc.message)
        metrics.CLOSES.labels("bad_request").inc()
        self.close(CLOSE_POLICY, "bad request: see the error frame")

    def _dispatch(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self.error("bad_frame", "send JSON text frames, not binary")
            return
        try:
            data = orjson.loads(message)
        except orjson.JSONDecodeError as exc:
            self.error("bad_json", f"frame is not JSON: {exc}")
            return
        if not isinstance(data, dict):
            self.error("bad_frame", 'a frame must be a JSON object with an "op"')
            return
        try:
            self._handle(data)
        except RequestError as exc:
            self.error(exc.code, exc.message, data.get("id"))

    def _begin(
        self,
        subs: dict[str, Filter],
        cursor: dict[int, int] | None,
        backlog: int,
        ref: Any,
        initial: bool = False,
    ) -> None:
        metrics.SUBSCRIPTIONS.inc(len(subs) - len(self.conn.subs))
        self.conn.subs = subs
        if cursor is None:
            self.catchup.start_live(self.conn, backlog)
            return
        self.endpoint.pause()
        self._task = self.spawn(self._resume(cursor, ref, initial))
        self._task.add_done_callback(self._resumed)

    async def _resume(self, cursor: dict[int, int], ref: Any, initial: bool) -> None:
        try:
            await self.catchup.resume(self.conn, cursor)
        except RequestError as exc:
            if initial:
                self._refuse(exc)
            else:
                self.error(exc.code, exc.message, ref)

    def _resumed(self, task: asyncio.Task[None]) -> None:
        self._task = None
        if self.conn.closing:
            return
        if not task.cancelled() and task.exception() is not None:
            log.error("gateway.resume_failed", error=repr(task.exception()))
            self.close(CLOSE_INTERNAL, "internal error: reconnect with your cursor")
            return
        pending = self._pending
        while pending and self._task is None and not self.conn.closing:
            self._dispatch(pending.popleft())
        if self._task is None:
            self._pending = None
            self.endpoint.resume()

    def _handle(self, data: dict[str, Any]) -> None:
        op = data.get("op")
        if op == "subscribe":
            self._subscribe(data)
        elif op == "unsubscribe":
            self._unsubscribe(data)
        elif op == "ping":
            self.reply("pong", cursor=self.catchup.hub.head_cursor())
        elif op is None:
            raise RequestError("bad_frame", 'missing "op": use subscribe, unsubscribe or ping')
        else:
            raise RequestError(
                "unknown_op", f"unknown op {str(op)[:40]!r}: use subscribe, unsubscribe or ping"
            )

    def _subscribe(self, data: dict[str, Any]) -> None:
        extra = sorted(set(data) - SUBSCRIBE_FIELDS)
        if extra:
            raise RequestError("bad_frame", f"unknown field(s) {extra} in subscribe")
        sid = sub_id(data)
        filter_ = subscription_filter(self.principal, lambda: Filter.parse(data.get("filter")))
        cursor = parse_cursor(data.get("cursor"))
        settings = self.catchup.settings
        backlog = parse_backlog(data.get("backlog"), settings) if "backlog" in data else 0
        conn = self.conn
        if sid not in conn.subs and len(conn.subs) >= settings.max_subscriptions:
            raise RequestError(
                "too_many_subscriptions",
                f"at most {settings.max_subscriptions} subscriptions per connection",
            )
        subs = {**conn.subs, sid: filter_}
        shown = filter_.model_dump(exclude_defaults=True)
        self.reply("subscribed", id=sid, filter=shown)
        if cursor is not None or not conn.keys:
            self._begin(subs, cursor, backlog, data.get("id"))
        else:
            # Already live: the new filter applies from here on, with no gap and no repeat.
            metrics.SUBSCRIPTIONS.inc(len(subs) - len(conn.subs))
            conn.subs = subs
            self.catchup.hub.go_live(conn)

    def _unsubscribe(self, data: dict[str, Any]) -> None:
        sid = sub_id(data)
        conn = self.conn
        if sid not in conn.subs:
            raise RequestError("unknown_subscription", f"no subscription {sid!r}")
        conn.subs = {k: v for k, v in conn.subs.items() if k != sid}
        metrics.SUBSCRIPTIONS.dec()
        if conn.keys:
            self.catchup.hub.go_live(conn)
        if not conn.subs:
            conn.since = time.monotonic()
        self.reply("unsubscribed", id=sid)
