"""In-process fan-out: each wire event is parsed and encoded once per wire format, each distinct
filter is evaluated once per event, and the same bytes go to every matching connection.

Connections are grouped by the canonical key of their filter. A connection with one
subscription (the common case) is a member of one group, and a batch of events is written to it
as one buffer that every member of the group shares. A connection with several subscriptions
receives the union of their matches, each event once, in wire order.

Frames are written straight to each connection's :class:`~telex.gateway.transport.Transport`
(for a WebSocket, its socket): its write buffer *is* the byte-limited send queue. A
connection whose buffer would pass its byte limit is marked slow, dropped from the hub and
closed with :data:`CLOSE_SLOW`; it can resume with its cursor. Nobody else waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from telex import metrics
from telex.filters import Filter, Matcher
from telex.gateway.closes import CLOSE_SLOW
from telex.gateway.cursor import encode_cursor
from telex.gateway.frames import event_payload, sse_message, ws_frame
from telex.gateway.transport import Transport

TRANSPORTS = {"ws": "websocket", "sse": "sse"}


class Entry:
    """One wire event as the gateway holds it: parsed once, encoded once per wire format."""

    __slots__ = (
        "_sse",
        "cursor",
        "detected_ms",
        "event",
        "offset",
        "partition",
        "payload",
        "positions",
        "received_ms",
        "seq",
        "timestamp_ms",
        "ws",
    )

    def __init__(
        self,
        seq: int,
        partition: int,
        offset: int,
        positions: tuple[int, ...],
        event: dict[str, Any],
        value: bytes,
        timestamp_ms: int,
    ) -> None:
        self.seq = seq
        self.partition = partition
        self.offset = offset
        self.positions = positions
        self.cursor = encode_cursor(dict(enumerate(positions)))
        self.event = event
        self.payload = event_payload(value, self.cursor)
        self.ws = ws_frame(self.payload)
        self.timestamp_ms = timestamp_ms
        # Live events only: when the poller saw it and when this gateway read it (0: unknown).
        self.detected_ms = 0
        self.received_ms = 0
        self._sse: bytes | None = None

    @property
    def sse(self) -> bytes:
        """The Server-Sent Events message of this event, built on first use."""
        if self._sse is None:
            self._sse = sse_message(self.payload, self.cursor)
        return self._sse


class Conn:
    """One connection as the hub sees it: its filters and the transport its frames go to.

    The transport's unsent bytes are the connection's send queue: there is no other.
    """

    __slots__ = (
        "__weakref__",
        "closing",
        "fmt",
        "keys",
        "last_seq",
        "limit",
        "principal",
        "since",
        "slow",
        "subs",
        "transport",
    )

    def __init__(self, fmt: str, limit: int, transport: Transport) -> None:
        self.fmt = fmt  # "ws" or "sse": which encoding of an entry this connection takes.
        self.limit = limit
        self.transport = transport
        self.subs: dict[str, Filter] = {}
        self.keys: tuple[str, ...] = ()
        self.last_seq = -1
        self.slow = False
        self.closing = False
        self.since = time.monotonic()
        self.principal: Any = None

    @property
    def session(self) -> Transport:
        """What closes the connection: its transport."""
        return self.transport

    # The send side ---------------------------------------------------------------------------

    def pending(self) -> int:
        """Bytes written but not yet sent to the peer."""
        return self.transport.buffered()

    def write(self, data: bytes) -> bool:
        """Queue one encoded message (WebSocket frame or SSE message); False once slow."""
        if self.slow or self.closing:
            return False
        self.transport.write(data)
        return True

    def over_limit(self, size: int) -> bool:
        """Whether this connection is over its limit: more than ``limit`` bytes still unsent.

        Checked before a write, so a connection holds at most its limit plus one batch.
        """
        return self.transport.buffered() > self.limit

    def encoded(self, entry: Entry) -> bytes:
        """The bytes of ``entry`` in this connection's wire format."""
        return entry.ws if self.fmt == "ws" else entry.sse

    async def wait_writable(self, low: int) -> None:
        """Wait until fewer than ``low`` bytes are pending (replays are flow-controlled)."""
        while self.pending() > low and not self.slow and not self.closing:
            await asyncio.sleep(0.005)

    def mark_slow(self) -> None:
        """Stop sending to this connection and have it closed as too slow."""
        if self.slow:
            return
        self.slow = True
        metrics.GATEWAY_SLOW.labels(self.fmt).inc()
        self.transport.close(CLOSE_SLOW, "too slow: reconnect with your last cursor")


class Group:
    """Connections with one subscription whose filters share a canonical key."""

    __slots__ = ("filter", "matcher", "members", "multi_refs")

    def __init__(self, filter_: Filter) -> None:
        self.filter = filter_
        self.matcher: Matcher | None = None if filter_.key == "{}" else filter_.compile()
        self.members: dict[Conn, None] = {}  # ordered set
        self.multi_refs = 0  # subscriptions of multi-subscription connections using this key


class Ring:
    """The recent events, oldest first, and how far back it covers each partition."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: deque[Entry] = deque()
        # floor[p]: every event at an offset >= floor[p] that the gateway read is in the ring.
        self.floor: dict[int, int] = {}

    def append(self, entry: Entry) -> None:
        """Keep ``entry``, forgetting the oldest one when full."""
        if self.size == 0:
            self.floor[entry.partition] = entry.offset + 1
            return
        self.entries.append(entry)
        while len(self.entries) > self.size:
            old = self.entries.popleft()
            self.floor[old.partition] = old.offset + 1

    def covers(self, positions: Mapping[int, int]) -> bool:
        """Whether everything after ``positions`` that the gateway read is in the ring."""
        return all(positions.get(p, 0) >= floor for p, floor in self.floor.items())

    def since(self, positions: Mapping[int, int]) -> list[Entry]:
        """The entries after ``positions``, in ring order."""
        return [e for e in self.entries if e.offset >= positions.get(e.partition, 0)]


class Hub:
    """The live connections, grouped by filter, and the ring of recent events."""

    def __init__(self, history_size: int) -> None:
        self.ring = Ring(history_size)
        self.groups: dict[str, Group] = {}
        self.multi: dict[Conn, None] = {}
        self.conns: dict[Conn, None] = {}  # every open connection, live or not
        # Next offset per partition: of what has been published, and of what has been read.
        self.positions: dict[int, int] = {}
        self.read_positions: dict[int, int] = {}
        self.seq = 0
        self._advanced = asyncio.Event()

    # Registration ----------------------------------------------------------------------------

    def attach(self, conn: Conn) -> None:
        """Count an open connection (live or not)."""
        self.conns[conn] = None
        metrics.GATEWAY_CONNECTIONS.labels(conn.fmt).inc()

    def detach(self, conn: Conn) -> None:
        """Forget a connection entirely."""
        self.go_offline(conn)
        if self.conns.pop(conn, False) is None:
            metrics.GATEWAY_CONNECTIONS.labels(conn.fmt).dec()

    def is_live(self, conn: Conn) -> bool:
        """Whether ``conn`` receives live events."""
        return bool(conn.keys) and (conn in self.multi or self._in_group(conn))

    def _in_group(self, conn: Conn) -> bool:
        group = self.groups.get(conn.keys[0]) if len(conn.keys) == 1 else None
        return group is not None and conn in group.members

    def go_live(self, conn: Conn) -> None:
        """Start delivering live events to ``conn`` for its current subscriptions.

        Synchronous: together with the caller's last catch-up write, no event can fall between
        what the connection was sent and what it will be sent live.
        """
        self.go_offline(conn)
        filters = {f.key: f for f in conn.subs.values()}
        conn.keys = tuple(filters)
        conn.last_seq = self.seq
        if not filters:
            return
        for key, filter_ in filters.items():
            group = self.groups.get(key)
            if group is None:
                group = self.groups[key] = Group(filter_)
            if len(filters) == 1:
                group.members[conn] = None
            else:
                group.multi_refs += 1
        if len(filters) > 1:
            self.multi[conn] = None

    def go_offline(self, conn: Conn) -> None:
        """Stop delivering live events to ``conn``."""
        multi = self.multi.pop(conn, False) is None
        for key in conn.keys:
            group = self.groups.get(key)
            if group is None:
                continue
            if multi:
                group.multi_refs -= 1
            else:
                group.members.pop(conn, None)
            if not group.members and group.multi_refs <= 0:
                del self.groups[key]
        conn.keys = ()

    def subscriptions(self) -> int:
        """Subscriptions of all live connections."""
        return sum(len(c.subs) for c in self.conns)

    # Positions -------------------------------------------------------------------------------

    def set_partitions(self, starts: Mapping[int, int]) -> None:
        """Where the reader starts on each partition."""
        self.positions = dict(starts)
        self.read_positions = dict(starts)
        self.ring.floor = dict(starts)

    def head(self) -> dict[int, int]:
        """The position after the last event published."""
        return dict(self.positions)

    def head_cursor(self) -> str:
        """The cursor of :meth:`head`."""
        return encode_cursor(self.positions)

    async def advanced(self, timeout: float) -> None:
        """Wait until the next publish (or ``timeout``)."""
        self._advanced.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._advanced.wait(), timeout)

    def make_entry(
        self, partition: int, offset: int, event: dict[str, Any], value: bytes, ts: int
    ) -> Entry:
        """An entry for a record read from the wire (published later by :meth:`publish`)."""
        self.read_positions[partition] = offset + 1
        self.seq += 1
        read = self.read_positions
        positions = tuple(read.get(p, 0) for p in range(len(read)))
        return Entry(self.seq, partition, offset, positions, event, value, ts)

    def skip(self, partition: int, offset: int) -> None:
        """Advance past a record that carries no event (tombstone or not JSON)."""
        self.read_positions[partition] = offset + 1

    def settle(self) -> None:
        """Everything read has been published: the head moves to the read position."""
        self.positions = dict(self.read_positions)
        self._advanced.set()

    # Fan-out ---------------------------------------------------------------------------------

    def publish(self, entries: Sequence[Entry]) -> None:
        """Hand ``entries`` to every connection whose filters match, in order."""
        for entry in entries:
            self.ring.append(entry)
        if entries:
            self._fan_out(entries)
            self.positions = dict(enumerate(entries[-1].positions))
        self._advanced.set()

    def _fan_out(self, entries: Sequence[Entry]) -> None:
        slow: list[Conn] = []
        frames = {"ws": 0, "sse": 0}
        # Per filter key, which entries match: kept only for multi-subscription connections.
        matched: dict[str, list[bool]] | None = {} if self.multi else None
        sent_bytes = 0
        for key, group in self.groups.items():
            matcher = group.matcher
            hits = (
                [True] * len(entries)
                if matcher is None
                else [matcher.matches(e.event) for e in entries]
            )
            if matched is not None:
                matched[key] = hits
            if group.members and any(hits):
                chosen = [e for e, hit in zip(entries, hits, strict=True) if hit]
                sent_bytes += _write_group(group, chosen, slow, frames)
        if matched is not None:
            sent_bytes += self._write_multi(entries, matched, slow, frames)
        for conn in slow:
            self.go_offline(conn)
            conn.mark_slow()
        for fmt, count in frames.items():
            if count:
                metrics.DELIVERED.labels(TRANSPORTS[fmt]).inc(count)
        if sent_bytes:
            metrics.GATEWAY_BYTES.inc(sent_bytes)
        _observe_latency(entries)

    def _write_multi(
        self,
        entries: Sequence[Entry],
        matched: dict[str, list[bool]],
        slow: list[Conn],
        frames: dict[str, int],
    ) -> int:
        """Each multi-subscription connection gets the union of its matches, in order."""
        sent_bytes = 0
        for conn in self.multi:
            for i, entry in enumerate(entries):
                if not any(matched[k][i] for k in conn.keys):
                    continue
                data = conn.encoded(entry)
                if conn.over_limit(len(data)) or not conn.write(data):
                    slow.append(conn)
                    break
                conn.last_seq = entry.seq
                frames[conn.fmt] += 1
                sent_bytes += len(data)
        return sent_bytes

    def broadcast(self, data_ws: bytes, data_sse: bytes, conns: Iterable[Conn]) -> None:
        """Send one control message (heartbeat) to ``conns``, encoded once per format."""
        slow = []
        for conn in conns:
            data = data_ws if conn.fmt == "ws" else data_sse
            if (conn.over_limit(len(data)) or not conn.write(data)) and not conn.closing:
                slow.append(conn)
        for conn in slow:
            self.go_offline(conn)
            conn.mark_slow()


def _write_group(
    group: Group, chosen: list[Entry], slow: list[Conn], frames: dict[str, int]
) -> int:
    """Write ``chosen`` to every member of ``group`` as one shared buffer; bytes sent.

    The buffer is joined once per wire format, the first time a member needs it.
    """
    ws_blob: bytes | None = None
    sse_blob: bytes | None = None
    last_seq = chosen[-1].seq
    sent_bytes = 0
    for conn in group.members:
        if conn.fmt == "ws":
            if ws_blob is None:
                ws_blob = b"".join(e.ws for e in chosen)
            blob = ws_blob
        else:
            if sse_blob is None:
                sse_blob = b"".join(e.sse for e in chosen)
            blob = sse_blob
        transport = conn.transport
        # The hot path: a socket write of bytes shared by the whole group.
        if transport.buffered() > conn.limit:
            slow.append(conn)
            continue
        transport.write(blob)
        conn.last_seq = last_seq
        frames[conn.fmt] += len(chosen)
        sent_bytes += len(blob)
    return sent_bytes


def _observe_latency(entries: Sequence[Entry]) -> None:
    """How long the published entries took to reach their subscribers, per hop."""
    now = time.time() * 1000
    fanout = metrics.HOP_SECONDS.labels("fanout")
    for entry in entries:
        if entry.timestamp_ms > 0:
            metrics.GATEWAY_LATENCY.observe(max(0.0, now - entry.timestamp_ms) / 1000)
        if entry.received_ms > 0:
            fanout.observe(max(0.0, now - entry.received_ms) / 1000)
        if entry.detected_ms > 0:
            metrics.END_TO_END.observe(max(0.0, now - entry.detected_ms) / 1000)
