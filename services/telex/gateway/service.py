"""The gateway: reads the whole wire and serves it as filtered live subscriptions.

Every gateway reads every partition of the wire with no consumer group (gateways share
nothing), from the start of what the broker retains, so a new gateway knows recent history and
any gateway can resume any client's cursor. Surfaces (the protocol is in
``schemas/gateway.asyncapi.yaml``):

- ``/v1/stream``: WebSocket; subscribe/unsubscribe with filters and cursors;
- ``/v1/events``: the same feed as Server-Sent Events, resumable with ``Last-Event-ID``;
- ``/v1/updates``: recent history, newest first, with the same filters.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from websockets.http11 import Request as Handshake

from telex import metrics
from telex.config import Config
from telex.events import now_ms
from telex.filters import Filter, FilterError
from telex.gateway.auth import Authenticator, AuthError, Principal
from telex.gateway.endpoint import Endpoints, Handler, Limits, Refused, WebSocketEndpoint
from telex.gateway.frames import control, event_payload, sse_message, ws_frame
from telex.gateway.history import TooOld, read_range
from telex.gateway.hub import Conn, CursorError, Entry, Hub, decode_cursor, encode_cursor
from telex.kafka import Batch, Clients, fetch_forever, stop_quietly
from telex.kafka.scan import partitions_of, seek_to_log_start
from telex.log import get_logger
from telex.ratelimit import TokenBucket
from telex.tasks import cancel_and_wait

log = get_logger(__name__)

CLOSE_RESTART = 1012  # "service restart": reconnect, elsewhere if need be, with your cursor
CLOSE_POLICY = 1008  # floods and unusable connection requests
CLOSE_IDLE = 4000  # no subscription for too long
REPLAY_CHUNK = 200  # memory replay: entries written between checks of the write buffer
PUBLISH_CHUNK = 64  # events per fan-out step: bounds one write per connection
HISTORY_WINDOW = 500  # records per partition read back at a time for /v1/updates
HISTORY_SCAN = 5000  # records read back from Kafka per /v1/updates request at most
SUB_ID_MAX = 64
STREAM_PATH = "/v1/stream"
_SUBSCRIBE_FIELDS = frozenset({"op", "id", "filter", "cursor", "backlog"})


class RequestError(Exception):
    """A client request the gateway cannot serve: ``code`` names the problem."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _parse_cursor(token: Any) -> dict[int, int] | None:
    if token is None or token == "":
        return None
    if not isinstance(token, str):
        raise RequestError("bad_cursor", "cursor must be a string")
    try:
        return decode_cursor(token)
    except CursorError as exc:
        raise RequestError("bad_cursor", str(exc)) from None


_FILTERS: dict[str, Filter] = {}


def shared(filter_: Filter) -> Filter:
    """One instance per distinct filter: thousands of dashboards ask for the same few."""
    key = filter_.key
    known = _FILTERS.get(key)
    if known is not None:
        return known
    if len(_FILTERS) >= 10_000:
        _FILTERS.clear()
    _FILTERS[key] = filter_
    return filter_


def _merge(a: Mapping[int, int], b: tuple[int, ...]) -> dict[int, int]:
    return {p: max(o, b[p]) if p < len(b) else o for p, o in a.items()}


class Gateway:
    """Wire reader, subscription hub and the HTTP/WebSocket surfaces."""

    def __init__(self, config: Config, clients: Clients) -> None:
        self.config = config
        self.settings = config.gateway
        self.clients = clients
        self.hub = Hub(config.gateway.history_size)
        self.auth = Authenticator(config.gateway)
        self.draining = False
        self._consumer: AIOKafkaConsumer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._log_start: dict[int, int] = {}
        self._live_from: dict[int, int] = {}
        self._caught_up = False
        self._wire_recreated = False
        self._replays = asyncio.Semaphore(config.gateway.replay_concurrency)
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
        self.router = self._build_router()
        clients.reset.on_reset(self._start_over)

    @property
    def ready(self) -> bool:
        """True once the reader has fetched from every wire partition, until draining."""
        return self._caught_up and not self.draining

    # Reading the wire --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start reading the wire."""
        topic = self.config.topics.wire
        wait = self.settings.fetch_max_wait_ms
        consumer = self.clients.consumer(
            group_id=None, **({} if wait is None else {"fetch_max_wait_ms": wait})
        )
        await consumer.start()
        tps = await partitions_of(consumer, topic)
        if not tps:
            await stop_quietly(consumer)
            raise RuntimeError(f"wire topic {topic} does not exist")
        self._log_start = await seek_to_log_start(consumer, tps)
        self.hub.set_partitions(self._log_start)
        self._consumer = consumer
        self._tasks = [
            asyncio.create_task(
                fetch_forever(
                    consumer, self._on_wire, name="gateway-wire", timeout_ms=200, max_records=2000
                ),
                name="gateway-wire",
            ),
            asyncio.create_task(self._heartbeats(), name="gateway-heartbeat"),
        ]
        log.info("gateway.started", partitions=len(tps))

    async def stop(self) -> None:
        """Stop reading; open connections are closed by :meth:`drain` or the HTTP server."""
        await cancel_and_wait(*self._tasks, *self._session_tasks)
        await self.endpoints.stop()
        self._tasks = []
        await stop_quietly(self._consumer)
        self._consumer = None

    async def drain(self) -> None:
        """Stop accepting, then close every connection with 1012 in paced batches."""
        self.draining = True
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

    async def _on_wire(self, batch: Batch) -> None:
        """Publish a batch of wire events to the hub (one round of the wire reader)."""
        consumer = self._consumer
        assert consumer is not None
        hub = self.hub
        if self._wire_recreated:
            # The batch may hold either wire's records: read the new one from its start.
            await self._restart_wire()
            return
        if any(
            records and records[0].offset < hub.read_positions.get(tp.partition, 0)
            for tp, records in batch.items()
        ):
            # Offsets went back: the wire is a new topic (the client reset its position
            # after the old one vanished) even if the reset signal has not said so yet.
            self._wire_recreated = True
            return
        if not self._caught_up:
            for tp in consumer.assignment():
                high = consumer.highwater(tp)
                if high is not None:
                    self._live_from.setdefault(tp.partition, high)
            self._caught_up = len(self._live_from) == len(hub.read_positions)
        entries: list[Entry] = []
        now = now_ms()
        for tp, records in batch.items():
            for record in records:
                event = self._decode(record.value, tp.partition, record.offset)
                if event is None:
                    hub.skip(tp.partition, record.offset)
                    continue
                metrics.WIRE_CONSUMED.inc()
                live = record.offset >= self._live_from.get(tp.partition, 1 << 62)
                entry = hub.make_entry(
                    tp.partition,
                    record.offset,
                    event,
                    record.value,
                    record.timestamp if live else 0,
                )
                entries.append(entry)
                if live:
                    entry.received_ms = now
                    entry.detected_ms = self._observe_latency(event, record.timestamp, now)
        for i in range(0, len(entries), PUBLISH_CHUNK):
            hub.publish(entries[i : i + PUBLISH_CHUNK])
            await asyncio.sleep(0)  # let connections read and write between chunks
        hub.settle()

    async def _start_over(self) -> None:
        """The broker lost its data: the reader starts over on the new wire at its next round."""
        self._wire_recreated = True

    async def _restart_wire(self) -> None:
        """Read the new wire from its start and tell every client so.

        The old wire's offsets mean nothing on the new one, so no cursor can be honoured
        across: live clients get a ``resync`` frame with the new wire's start as their cursor
        (what follows is the new wire, which the pollers fill again with what their sources
        show); clients that were catching up are closed to reconnect, and a cursor of the
        old wire gets a resync then (it is ahead of the new one).
        """
        consumer = self._consumer
        assert consumer is not None
        self._wire_recreated = False
        tps = sorted(consumer.assignment())
        try:
            starts = await seek_to_log_start(consumer, tps)
        except KafkaError as exc:
            log.warning("gateway.wire_restart_failed", error=repr(exc))
            self._wire_recreated = True
            await asyncio.sleep(1.0)
            return
        hub = self.hub
        self._log_start = dict(starts)
        self._live_from = dict(starts)
        hub.ring.entries.clear()
        hub.set_partitions(starts)
        cursor = hub.head_cursor()
        payload = control(
            "resync",
            reason="the wire was recreated (the broker lost its data): events continue from "
            "its new start",
            cursor=cursor,
        )
        live = [conn for conn in hub.conns if hub.is_live(conn)]
        metrics.RESYNCS.inc(len(live))
        hub.broadcast(ws_frame(payload), sse_message(payload, cursor, "resync"), live)
        for conn in list(hub.conns):
            if conn not in live and conn.session is not None and not conn.closing:
                conn.session.close(CLOSE_RESTART, "the wire was recreated: reconnect")
        log.warning("gateway.wire_recreated", resynced=len(live))

    @staticmethod
    def _decode(value: bytes | None, partition: int, offset: int) -> dict[str, Any] | None:
        if value is None:
            return None
        try:
            event = orjson.loads(value)
        except orjson.JSONDecodeError:
            event = None
        if not isinstance(event, dict):
            log.warning("gateway.bad_record", partition=partition, offset=offset)
            return None
        return event

    @staticmethod
    def _observe_latency(event: dict[str, Any], produced: int, now: int) -> int:
        """Observe the wire hop (the record's timestamp is when the processor produced it);
        return when the poller saw the update, 0 when the event does not say."""
        if produced > 0:
            metrics.HOP_SECONDS.labels("wire_gateway").observe(max(0, now - produced) / 1000)
        try:
            return int(event["data"]["timings"]["detected_ms"])
        except (KeyError, TypeError, ValueError):
            return 0  # not a telex event: nothing to measure.

    async def _heartbeats(self) -> None:
        interval = self.settings.heartbeat_interval
        while True:
            await asyncio.sleep(min(interval, self.settings.idle_timeout) / 2)
            now = time.monotonic()
            cursor = self.hub.head_cursor()
            payload = control("heartbeat", cursor=cursor)
            due = []
            for conn in list(self.hub.conns):
                if conn.closing:
                    continue
                if not conn.subs and now - conn.since > self.settings.idle_timeout:
                    metrics.CLOSES.labels("idle").inc()
                    conn.transport.close(CLOSE_IDLE, "idle: no subscription")
                elif conn.keys and now - conn.since >= interval:
                    due.append(conn)
                    conn.since = now
            if due:
                self.hub.broadcast(
                    ws_frame(payload), sse_message(payload, cursor, "heartbeat"), due
                )

    # Admission -------------------------------------------------------------------------------

    def admit(self, headers: Mapping[str, str], query: Mapping[str, str]) -> Principal:
        """The principal of a new connection, or :class:`AuthError` saying why not."""
        if self.draining:
            metrics.REFUSED.labels("draining").inc()
            raise AuthError(503, "this gateway is shutting down: connect to another")
        try:
            self.auth.check_origin(headers.get("origin"))
        except AuthError:
            metrics.REFUSED.labels("forbidden_origin").inc()
            raise
        try:
            principal = self.auth.authenticate(headers, query)
        except AuthError:
            metrics.REFUSED.labels("unauthorized").inc()
            raise
        if len(self.hub.conns) >= self.settings.max_connections:
            metrics.REFUSED.labels("limit").inc()
            raise AuthError(503, "connection limit reached: try again later")
        return principal

    def open(self, endpoint: WebSocketEndpoint, request: Handshake) -> Handler:
        """The session of a new ``/v1/stream`` connection, or :class:`Refused` saying why not."""
        path, _, query_string = request.path.partition("?")
        if path != STREAM_PATH:
            raise Refused(404, f"no WebSocket endpoint at {path[:80]}: use {STREAM_PATH}")
        query = dict(parse_qsl(query_string, keep_blank_values=True))
        try:
            principal = self.admit(request.headers, query)
        except AuthError as exc:
            raise Refused(exc.status, exc.message) from None
        return WebSocketSession(self, endpoint, principal, query)

    def spawn(self, coro: Any) -> asyncio.Task[None]:
        """Run a connection's request in a task the gateway owns (cancelled on stop)."""
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._session_tasks.add(task)
        task.add_done_callback(self._session_tasks.discard)
        return task

    def initial(
        self, principal: Principal, query: Mapping[str, str], last_event_id: str | None = None
    ) -> tuple[Filter | None, dict[int, int] | None, int]:
        """The subscription a connection asks for in its query string."""
        if query.get("subscribe", "").lower() in ("none", "false", "0"):
            return None, None, 0
        try:
            filter_ = shared(principal.restrict(Filter.from_query(query)))
        except FilterError as exc:
            code = exc.code
            raise RequestError(code, str(exc)) from None
        cursor = _parse_cursor(last_event_id or query.get("cursor"))
        return filter_, cursor, self._backlog(query.get("backlog"))

    @staticmethod
    def _restricted(principal: Principal, filter_: Filter) -> Filter:
        try:
            return shared(principal.restrict(filter_))
        except FilterError as exc:
            code = exc.code
            raise RequestError(code, str(exc)) from None

    def _backlog(self, value: Any) -> int:
        if value is None:
            return min(self.settings.backlog, self.settings.history_size)
        try:
            count = int(value)
        except (TypeError, ValueError):
            raise RequestError("bad_request", "backlog must be an integer") from None
        if count < 0 or isinstance(value, bool):
            raise RequestError("bad_request", "backlog must not be negative")
        return min(count, self.settings.history_size)

    # Starting a connection's stream ----------------------------------------------------------

    def start_live(self, conn: Conn, backlog: int, send: Any) -> None:
        """Send up to ``backlog`` recent matching events, then go live (one synchronous step)."""
        if backlog > 0:
            matchers = [f.compile() for f in {f.key: f for f in conn.subs.values()}.values()]
            picked: list[Entry] = []
            for entry in reversed(self.hub.ring.entries):
                if any(m.matches(entry.event) for m in matchers):
                    picked.append(entry)
                    if len(picked) >= backlog:
                        break
            for entry in reversed(picked):
                send(conn.encoded(entry))
        self.hub.go_live(conn)

    async def resume(self, conn: Conn, cursor: dict[int, int], send: Any) -> None:
        """Replay every matching event after ``cursor`` in order, once, then go live."""
        hub = self.hub
        hub.go_offline(conn)
        unknown = sorted(set(cursor) - set(hub.positions))
        if unknown:
            raise RequestError("bad_cursor", f"cursor names partitions {unknown} the wire lacks")
        pos = {p: cursor.get(p, 0) for p in hub.positions}
        reason = await self._too_old(pos)
        if reason is not None:
            self._resync(conn, reason, send)
            return
        matchers = [f.compile() for f in {f.key: f for f in conn.subs.values()}.values()]
        low = self.settings.send_queue_bytes // 2
        replayed = 0
        while True:
            if conn.closing or conn.slow:
                return
            if not hub.ring.covers(pos):
                end = hub.head()
                try:
                    async with self._replays:
                        async for records in read_range(
                            self.clients, self.config.topics.wire, pos, end
                        ):
                            for record in records:
                                pos[record.partition] = record.offset + 1
                                event = self._decode(record.value, record.partition, record.offset)
                                if event is None or not any(m.matches(event) for m in matchers):
                                    continue
                                payload = event_payload(record.value, encode_cursor(pos))
                                send(self._encode(conn, payload, encode_cursor(pos)))
                                replayed += 1
                                metrics.REPLAYED.labels("kafka").inc()
                            await conn.wait_writable(low)
                            if conn.closing or conn.slow:
                                return
                except TooOld as exc:
                    self._resync(conn, f"cursor is older than the broker retains ({exc})", send)
                    return
                pos = {p: max(o, end.get(p, 0)) for p, o in pos.items()}
                continue
            entries = hub.ring.since(pos)
            final = len(entries) <= REPLAY_CHUNK
            for entry in entries if final else entries[:REPLAY_CHUNK]:
                pos = _merge(pos, entry.positions)
                if any(m.matches(entry.event) for m in matchers):
                    cursor_text = encode_cursor(pos)
                    if cursor_text == entry.cursor:
                        send(conn.encoded(entry))
                    else:
                        payload = event_payload(_value_of(entry), cursor_text)
                        send(self._encode(conn, payload, cursor_text))
                    replayed += 1
                    metrics.REPLAYED.labels("memory").inc()
            if not final:
                await conn.wait_writable(low)
                continue
            head = hub.head()
            pos = {p: max(o, head.get(p, 0)) for p, o in pos.items()}
            hub.go_live(conn)
            cursor_text = encode_cursor(pos)
            send(
                self._encode(
                    conn, control("live", cursor=cursor_text, replayed=replayed), cursor_text
                )
            )
            return

    async def _too_old(self, pos: dict[int, int]) -> str | None:
        hub = self.hub
        for p, offset in pos.items():
            if offset < self._log_start.get(p, 0):
                return f"cursor is older than what the wire retains on partition {p}"
        # A cursor ahead of this gateway: wait for the reader to get there (another gateway
        # may simply be ahead), but not forever (the topic may have been recreated).
        deadline = time.monotonic() + 5.0
        while any(o > hub.positions.get(p, 0) for p, o in pos.items()):
            if time.monotonic() > deadline:
                return "cursor is ahead of the wire (was the topic recreated?)"
            await hub.advanced(0.2)
        behind = sum(max(0, hub.positions[p] - o) for p, o in pos.items())
        if behind > self.settings.max_replay_events:
            return (
                f"cursor is {behind} events behind; at most "
                f"{self.settings.max_replay_events} are replayed"
            )
        return None

    def _resync(self, conn: Conn, reason: str, send: Any) -> None:
        metrics.RESYNCS.inc()
        cursor = self.hub.head_cursor()
        send(self._encode(conn, control("resync", reason=reason, cursor=cursor), cursor, "resync"))
        self.hub.go_live(conn)

    @staticmethod
    def _encode(
        conn: Conn, payload: bytes, cursor: str | None = None, event: str | None = None
    ) -> bytes:
        if conn.fmt == "ws":
            return ws_frame(payload)
        if event is None and not payload.startswith(b'{"type":"event"'):
            event = orjson.loads(payload)["type"]
        return sse_message(payload, cursor, event)

    # HTTP surfaces ---------------------------------------------------------------------------

    def _build_router(self) -> APIRouter:
        router = APIRouter()

        # /v1/stream is not an ASGI route: WebSocket upgrades go to ``self.endpoints``.

        @router.get("/v1/events", tags=["gateway"])
        async def events(request: Request) -> Response:
            """The live wire as Server-Sent Events; resumable with ``Last-Event-ID``.

            Query: the filter fields (``sources``, ``terms``, ``entities``, ``tags``,
            ``languages``, ``types``; comma-separated), ``cursor``, ``backlog``, ``token``.
            """
            query = dict(request.query_params)
            try:
                principal = self.admit(request.headers, query)
                filter_, cursor, backlog = self.initial(
                    principal, query, request.headers.get("last-event-id")
                )
                if filter_ is None:
                    # subscribe=none means nothing on a stream that cannot subscribe later:
                    # the whole view of this principal, never more (it used to be the whole
                    # wire, whatever sources the credential was limited to).
                    filter_ = self._restricted(principal, Filter())
            except AuthError as exc:
                return JSONResponse({"error": exc.message}, status_code=exc.status)
            except RequestError as exc:
                metrics.CLIENT_ERRORS.labels(exc.code).inc()
                return JSONResponse({"error": exc.message, "code": exc.code}, status_code=400)
            session = SseSession(self, principal)
            return StreamingResponse(
                session.stream(filter_, cursor, backlog),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )

        @router.get("/v1/updates", tags=["gateway"])
        async def updates(
            request: Request,
            limit: int = Query(50, ge=1, le=500),
            before: str | None = Query(None, description="the `next` of a previous page"),
        ) -> Response:
            """Recent updates, newest first, with the same filters as the stream.

            Newest first from the gateway's memory, then read back from the wire; ``next``
            (pass it as ``before``) is null on the last page. A page may hold fewer than
            ``limit`` updates when a sparse filter meets a long stretch of the wire.
            """
            query = dict(request.query_params)
            try:
                principal = self.admit(request.headers, query)
                filter_ = principal.restrict(Filter.from_query(query))
                bound = _parse_cursor(before) or {}
            except AuthError as exc:
                return JSONResponse({"error": exc.message}, status_code=exc.status)
            except FilterError as exc:
                return JSONResponse({"error": str(exc), "code": "bad_filter"}, status_code=400)
            except RequestError as exc:
                return JSONResponse({"error": exc.message, "code": exc.code}, status_code=400)
            page = await self._history(filter_, bound, limit)
            return Response(page, media_type="application/json")

        return router

    async def _history(self, filter_: Filter, bound: dict[int, int], limit: int) -> bytes:
        matcher = filter_.compile()
        picked: list[bytes] = []
        # edge[p]: everything on partition p at or above it has been scanned.
        edge = {p: min(bound.get(p, head), head) for p, head in self.hub.positions.items()}
        full = False
        for entry in reversed(self.hub.ring.entries):
            if entry.offset >= edge[entry.partition]:
                continue
            if len(picked) >= limit:
                full = True
                break
            edge[entry.partition] = entry.offset
            if matcher.matches(entry.event):
                picked.append(entry.payload)
        if not full:
            # Memory exhausted: older events are read back from the wire, newest first.
            for p, floor in self.hub.ring.floor.items():
                edge[p] = min(edge[p], floor)
            full = await self._history_from_kafka(matcher, edge, limit, picked)
        more = full or any(o > self._log_start.get(p, 0) for p, o in edge.items())
        next_cursor = encode_cursor(edge) if more else None
        return b'{"updates":[' + b",".join(picked) + b'],"next":' + orjson.dumps(next_cursor) + b"}"

    async def _history_from_kafka(
        self, matcher: Any, edge: dict[int, int], limit: int, picked: list[bytes]
    ) -> bool:
        """Fill ``picked`` from Kafka below ``edge`` (moved down as read); True when full.

        Reads at most HISTORY_SCAN records per request; the caller's ``next`` continues.
        """
        scanned = 0
        while scanned < HISTORY_SCAN:
            start = {
                p: max(self._log_start.get(p, 0), o - HISTORY_WINDOW)
                for p, o in edge.items()
                if o > self._log_start.get(p, 0)
            }
            if not start:
                return False
            found: list[tuple[int, int, int, bytes]] = []
            async with self._replays:
                async for records in read_range(
                    self.clients, self.config.topics.wire, start, {p: edge[p] for p in start}
                ):
                    scanned += len(records)
                    for r in records:
                        event = self._decode(r.value, r.partition, r.offset)
                        if event is not None and matcher.matches(event):
                            found.append((r.timestamp, r.offset, r.partition, r.value))
            found.sort(reverse=True)
            room = limit - len(picked)
            taken = found[:room]
            # A conservative cursor (never past an event not yet seen on any partition).
            base = {**edge, **start}
            for _, offset, partition, value in taken:
                cursor = encode_cursor({**base, partition: offset + 1})
                picked.append(event_payload(value, cursor))
            if len(found) > room:
                lowest: dict[int, int] = {}
                for _, offset, partition, _ in taken:
                    lowest[partition] = min(offset, lowest.get(partition, offset))
                matched = {partition for _, _, partition, _ in found}
                for p in start:
                    if p in lowest:
                        edge[p] = lowest[p]
                    elif p not in matched:
                        edge[p] = start[p]
                return True
            edge.update(start)
        return False


def _value_of(entry: Entry) -> bytes:
    # The event bytes inside the shared payload: after '..."event":' and before the final '}'.
    start = len(b'{"type":"event","cursor":"') + len(entry.cursor) + len(b'","event":')
    return entry.payload[start:-1]


class WebSocketSession:
    """One ``/v1/stream`` connection: its subscriptions, its cursor, its errors.

    Driven by its endpoint's callbacks; no task of its own while idle. A request that has to
    wait (a resume from a cursor) runs in a task and the client is not read until it is done,
    so requests are answered in order.
    """

    __slots__ = ("_pending", "_task", "bucket", "conn", "endpoint", "gw", "principal", "query")

    def __init__(
        self,
        gateway: Gateway,
        endpoint: WebSocketEndpoint,
        principal: Principal,
        query: dict[str, str],
    ) -> None:
        self.gw = gateway
        self.endpoint = endpoint
        self.principal = principal
        self.query: dict[str, str] | None = query
        settings = gateway.settings
        self.conn = Conn("ws", settings.send_queue_bytes, endpoint)
        self.conn.principal = principal
        self.bucket = TokenBucket(settings.max_messages_per_second, settings.message_burst)
        self._task: asyncio.Task[None] | None = None
        self._pending: deque[str | bytes] | None = None

    def send(self, data: bytes) -> None:
        """Queue one complete WebSocket frame."""
        self.conn.write(data)

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
        gw = self.gw
        query, self.query = self.query or {}, None
        gw.hub.attach(self.conn)
        try:
            filter_, cursor, backlog = gw.initial(self.principal, query)
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
            self.gw.hub.go_offline(conn)

    def lost(self) -> None:
        """The connection is gone: forget it."""
        conn = self.conn
        metrics.SUBSCRIPTIONS.dec(len(conn.subs))
        conn.closing = True
        self.gw.hub.detach(conn)
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
            self.gw.start_live(self.conn, backlog, self.send)
            return
        self.endpoint.pause()
        self._task = self.gw.spawn(self._resume(cursor, ref, initial))
        self._task.add_done_callback(self._resumed)

    async def _resume(self, cursor: dict[int, int], ref: Any, initial: bool) -> None:
        try:
            await self.gw.resume(self.conn, cursor, self.send)
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
            self.close(1011, "internal error: reconnect with your cursor")
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
            self.reply("pong", cursor=self.gw.hub.head_cursor())
        elif op is None:
            raise RequestError("bad_frame", 'missing "op": use subscribe, unsubscribe or ping')
        else:
            raise RequestError(
                "unknown_op", f"unknown op {str(op)[:40]!r}: use subscribe, unsubscribe or ping"
            )

    @staticmethod
    def _sub_id(data: dict[str, Any]) -> str:
        sid = data.get("id", "default")
        if not isinstance(sid, str) or not 1 <= len(sid) <= SUB_ID_MAX:
            raise RequestError("bad_frame", f"id must be a string of 1-{SUB_ID_MAX} characters")
        return sid

    def _subscribe(self, data: dict[str, Any]) -> None:
        extra = sorted(set(data) - _SUBSCRIBE_FIELDS)
        if extra:
            raise RequestError("bad_frame", f"unknown field(s) {extra} in subscribe")
        sid = self._sub_id(data)
        try:
            filter_ = shared(self.principal.restrict(Filter.parse(data.get("filter"))))
        except FilterError as exc:
            code = exc.code
            raise RequestError(code, str(exc)) from None
        cursor = _parse_cursor(data.get("cursor"))
        backlog = self.gw._backlog(data.get("backlog")) if "backlog" in data else 0
        conn = self.conn
        if sid not in conn.subs and len(conn.subs) >= self.gw.settings.max_subscriptions:
            raise RequestError(
                "too_many_subscriptions",
                f"at most {self.gw.settings.max_subscriptions} subscriptions per connection",
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
            self.gw.hub.go_live(conn)

    def _unsubscribe(self, data: dict[str, Any]) -> None:
        sid = self._sub_id(data)
        conn = self.conn
        if sid not in conn.subs:
            raise RequestError("unknown_subscription", f"no subscription {sid!r}")
        conn.subs = {k: v for k, v in conn.subs.items() if k != sid}
        metrics.SUBSCRIPTIONS.dec()
        if conn.keys:
            self.gw.hub.go_live(conn)
        if not conn.subs:
            conn.since = time.monotonic()
        self.reply("unsubscribed", id=sid)


class SseSession:
    """One ``/v1/events`` stream; its own transport: a queue its response drains."""

    def __init__(self, gateway: Gateway, principal: Principal) -> None:
        self.gw = gateway
        settings = gateway.settings
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
        self.gw.hub.go_offline(conn)
        self.ready.set()

    async def stream(
        self, filter_: Filter, cursor: dict[int, int] | None, backlog: int
    ) -> AsyncIterator[bytes]:
        """The bytes of the response body."""
        gw = self.gw
        conn = self.conn
        ready = self.ready
        gw.hub.attach(conn)
        conn.subs = {"default": filter_}
        metrics.SUBSCRIPTIONS.inc()
        starter: asyncio.Task[None] | None = None
        try:
            yield b"retry: 2000\n\n"
            if cursor is not None:
                starter = asyncio.create_task(gw.resume(conn, cursor, conn.write))
                starter.add_done_callback(lambda _: ready.set())
            else:
                gw.start_live(conn, backlog, conn.write)
            while True:
                await ready.wait()
                ready.clear()
                if self.queue:
                    chunk = b"".join(self.queue)
                    self.queue.clear()
                    self.queued_bytes = 0
                    yield chunk
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
            gw.hub.detach(conn)
            if starter is not None:
                starter.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await starter
