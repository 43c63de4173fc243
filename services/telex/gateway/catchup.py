"""Bringing a connection to the live stream: a backlog of recent events, or every matching
event after a cursor, then live, with no gap and no repeat.

A cursor within the gateway's memory (the ring) is replayed from memory; an older one is read
back from the wire in Kafka first (at most ``replay_concurrency`` reads at a time), then from
memory. Replays are flow-controlled: the next chunk waits until the connection has sent most
of the previous one. A cursor the gateway cannot honour (older than the broker retains, too
far behind, or ahead of the wire) gets a ``resync`` frame with the head cursor, then live.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import orjson

from telex import metrics
from telex.config import Config
from telex.filters import Matcher
from telex.gateway.cursor import advanced, encode_cursor
from telex.gateway.frames import control, event_payload, sse_message, ws_frame
from telex.gateway.history import TooOld, read_range
from telex.gateway.hub import Conn, Entry, Hub
from telex.gateway.requests import RequestError
from telex.gateway.wire import WireReader, decode_event
from telex.kafka import Clients

REPLAY_CHUNK = 200  # memory replay: entries written between checks of the write buffer
AHEAD_WAIT = 5.0  # seconds a cursor ahead of this gateway waits for the reader to get there


def matchers_of(conn: Conn) -> list[Matcher]:
    """One compiled matcher per distinct filter of ``conn``'s subscriptions."""
    return [f.compile() for f in {f.key: f for f in conn.subs.values()}.values()]


def encode_for(
    conn: Conn, payload: bytes, cursor: str | None = None, event: str | None = None
) -> bytes:
    """A JSON frame in ``conn``'s wire format (SSE: ``event`` names a control frame's type)."""
    if conn.fmt == "ws":
        return ws_frame(payload)
    if event is None and not payload.startswith(b'{"type":"event"'):
        event = orjson.loads(payload)["type"]
    return sse_message(payload, cursor, event)


def value_of(entry: Entry) -> bytes:
    """The event bytes inside an entry's shared payload."""
    # After '..."event":' and before the final '}'.
    start = len(b'{"type":"event","cursor":"') + len(entry.cursor) + len(b'","event":')
    return entry.payload[start:-1]


def _merge(a: Mapping[int, int], b: tuple[int, ...]) -> dict[int, int]:
    # advanced() for an entry's positions, a tuple indexed by partition: no dict per entry.
    return {p: max(o, b[p]) if p < len(b) else o for p, o in a.items()}


class Replay:
    """One connection's replay in progress: where it is and what it has sent."""

    __slots__ = ("conn", "low", "matchers", "pos", "replayed")

    def __init__(self, conn: Conn, pos: dict[int, int], low: int) -> None:
        self.conn = conn
        self.pos = pos
        self.low = low  # bytes pending below which the next chunk is written
        self.matchers = matchers_of(conn)
        self.replayed = 0

    @property
    def stopped(self) -> bool:
        """The connection is closing or too slow: nothing more to send."""
        return self.conn.closing or self.conn.slow

    def records(self, records: list[Any]) -> None:
        """Send the matching events of records read back from Kafka."""
        conn = self.conn
        pos = self.pos
        for record in records:
            partition, offset, value = record.partition, record.offset, record.value
            pos[partition] = offset + 1
            event = decode_event(value, partition, offset)
            if event is None or not any(m.matches(event) for m in self.matchers):
                continue
            cursor = encode_cursor(pos)
            conn.write(encode_for(conn, event_payload(value, cursor), cursor))
            self.replayed += 1
            metrics.REPLAYED.labels("kafka").inc()

    def entries(self, entries: list[Entry]) -> None:
        """Send the matching events of entries from memory."""
        conn = self.conn
        for entry in entries:
            self.pos = _merge(self.pos, entry.positions)
            if any(m.matches(entry.event) for m in self.matchers):
                cursor = encode_cursor(self.pos)
                if cursor == entry.cursor:
                    conn.write(conn.encoded(entry))
                else:
                    payload = event_payload(value_of(entry), cursor)
                    conn.write(encode_for(conn, payload, cursor))
                self.replayed += 1
                metrics.REPLAYED.labels("memory").inc()


class CatchUp:
    """Starts connections' streams: :meth:`start_live` with a backlog, :meth:`resume` from a
    cursor."""

    def __init__(self, config: Config, clients: Clients, hub: Hub, reader: WireReader) -> None:
        self.settings = config.gateway
        self.topic = config.topics.wire
        self.clients = clients
        self.hub = hub
        self.reader = reader
        self.replays = asyncio.Semaphore(config.gateway.replay_concurrency)

    def start_live(self, conn: Conn, backlog: int) -> None:
        """Send up to ``backlog`` recent matching events, then go live (one synchronous step)."""
        if backlog > 0:
            matchers = matchers_of(conn)
            picked: list[Entry] = []
            for entry in reversed(self.hub.ring.entries):
                if any(m.matches(entry.event) for m in matchers):
                    picked.append(entry)
                    if len(picked) >= backlog:
                        break
            for entry in reversed(picked):
                conn.write(conn.encoded(entry))
        self.hub.go_live(conn)

    async def resume(self, conn: Conn, cursor: dict[int, int]) -> None:
        """Replay every matching event after ``cursor`` in order, once, then go live."""
        hub = self.hub
        hub.go_offline(conn)
        unknown = sorted(set(cursor) - set(hub.positions))
        if unknown:
            raise RequestError("bad_cursor", f"cursor names partitions {unknown} the wire lacks")
        pos = {p: cursor.get(p, 0) for p in hub.positions}
        reason = await self._too_old(pos)
        if reason is not None:
            self._resync(conn, reason)
            return
        replay = Replay(conn, pos, self.settings.send_queue_bytes // 2)
        while not replay.stopped:
            if not hub.ring.covers(replay.pos):
                if not await self._from_kafka(replay):
                    return
            elif await self._from_memory(replay):
                return

    async def _from_kafka(self, replay: Replay) -> bool:
        """Replay what memory no longer holds, up to the head; False when the replay ends."""
        conn = replay.conn
        end = self.hub.head()
        try:
            async with self.replays:
                async for records in read_range(self.clients, self.topic, replay.pos, end):
                    replay.records(records)
                    await conn.wait_writable(replay.low)
                    if replay.stopped:
                        return False
        except TooOld as exc:
            self._resync(conn, f"cursor is older than the broker retains ({exc})")
            return False
        replay.pos = advanced(replay.pos, end)
        return True

    async def _from_memory(self, replay: Replay) -> bool:
        """Replay the next chunk from memory; True once the connection is live."""
        conn = replay.conn
        hub = self.hub
        entries = hub.ring.since(replay.pos)
        if len(entries) > REPLAY_CHUNK:
            replay.entries(entries[:REPLAY_CHUNK])
            await conn.wait_writable(replay.low)
            return False
        replay.entries(entries)
        pos = advanced(replay.pos, hub.head())
        hub.go_live(conn)
        cursor = encode_cursor(pos)
        conn.write(
            encode_for(conn, control("live", cursor=cursor, replayed=replay.replayed), cursor)
        )
        return True

    async def _too_old(self, pos: dict[int, int]) -> str | None:
        hub = self.hub
        log_start = self.reader.log_start
        for p, offset in pos.items():
            if offset < log_start.get(p, 0):
                return f"cursor is older than what the wire retains on partition {p}"
        # A cursor ahead of this gateway: wait for the reader to get there (another gateway
        # may simply be ahead), but not forever (the topic may have been recreated).
        deadline = time.monotonic() + AHEAD_WAIT
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

    def _resync(self, conn: Conn, reason: str) -> None:
        metrics.RESYNCS.inc()
        cursor = self.hub.head_cursor()
        conn.write(
            encode_for(conn, control("resync", reason=reason, cursor=cursor), cursor, "resync")
        )
        self.hub.go_live(conn)
