"""Pages of recent updates, newest first, for ``/v1/updates``.

A page is filled from the gateway's memory first, then read back from the wire in Kafka,
newest first, at most ``HISTORY_SCAN`` records per request: a sparse filter may get a short
page, and its ``next`` cursor continues where the scan stopped. ``next`` is conservative: it
never points past an event not yet seen on any partition.
"""

from __future__ import annotations

import asyncio

import orjson

from telex.filters import Filter, Matcher
from telex.gateway.cursor import encode_cursor
from telex.gateway.frames import event_payload
from telex.gateway.history import read_range
from telex.gateway.hub import Hub
from telex.gateway.wire import WireReader, decode_event
from telex.kafka import Clients

HISTORY_WINDOW = 500  # records per partition read back at a time
HISTORY_SCAN = 5000  # records read back from Kafka per request at most

# A record read back: (timestamp, offset, partition, value), newest first when sorted reversed.
_Found = tuple[int, int, int, bytes]


class Pages:
    """Builds ``/v1/updates`` pages from the hub's ring and the wire."""

    def __init__(
        self,
        clients: Clients,
        topic: str,
        hub: Hub,
        reader: WireReader,
        replays: asyncio.Semaphore,
    ) -> None:
        self.clients = clients
        self.topic = topic
        self.hub = hub
        self.reader = reader
        self.replays = replays

    async def page(self, filter_: Filter, bound: dict[int, int], limit: int) -> bytes:
        """The JSON page of up to ``limit`` updates matching ``filter_`` below ``bound``."""
        matcher = filter_.compile()
        picked: list[bytes] = []
        hub = self.hub
        # edge[p]: everything on partition p at or above it has been scanned.
        edge = {p: min(bound.get(p, head), head) for p, head in hub.positions.items()}
        full = False
        for entry in reversed(hub.ring.entries):
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
            for p, floor in hub.ring.floor.items():
                edge[p] = min(edge[p], floor)
            full = await self._from_kafka(matcher, edge, limit, picked)
        log_start = self.reader.log_start
        more = full or any(o > log_start.get(p, 0) for p, o in edge.items())
        next_cursor = encode_cursor(edge) if more else None
        return b'{"updates":[' + b",".join(picked) + b'],"next":' + orjson.dumps(next_cursor) + b"}"

    async def _from_kafka(
        self, matcher: Matcher, edge: dict[int, int], limit: int, picked: list[bytes]
    ) -> bool:
        """Fill ``picked`` from Kafka below ``edge`` (moved down as read); True when full.

        Reads at most HISTORY_SCAN records per request; the caller's ``next`` continues.
        """
        scanned = 0
        log_start = self.reader.log_start
        while scanned < HISTORY_SCAN:
            start = {
                p: max(log_start.get(p, 0), o - HISTORY_WINDOW)
                for p, o in edge.items()
                if o > log_start.get(p, 0)
            }
            if not start:
                return False
            found: list[_Found] = []
            async with self.replays:
                async for records in read_range(
                    self.clients, self.topic, start, {p: edge[p] for p in start}
                ):
                    scanned += len(records)
                    for r in records:
                        event = decode_event(r.value, r.partition, r.offset)
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
                _lower_edge(edge, start, taken, found)
                return True
            edge.update(start)
        return False


def _lower_edge(
    edge: dict[int, int], start: dict[int, int], taken: list[_Found], found: list[_Found]
) -> None:
    """After a full page: move ``edge`` down to what was taken, per partition.

    A partition with events taken continues below the lowest one; a partition where nothing
    matched was scanned down to ``start``; one with matches not taken stays where it was.
    """
    lowest: dict[int, int] = {}
    for _, offset, partition, _ in taken:
        lowest[partition] = min(offset, lowest.get(partition, offset))
    matched = {partition for _, _, partition, _ in found}
    for p in start:
        if p in lowest:
            edge[p] = lowest[p]
        elif p not in matched:
            edge[p] = start[p]
