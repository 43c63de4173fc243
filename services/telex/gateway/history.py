"""Reading a range of the wire back from Kafka, for cursors older than the gateway's memory.

A read takes each partition from the cursor's offset up to (not including) a given end, with
its own group-less consumer, so any gateway can serve any cursor: the position lives in the
cursor, not in the gateway.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import OffsetOutOfRangeError

from telex.kafka import Clients, stop_quietly


class TooOld(Exception):
    """The broker no longer has the start of the range (retention removed it)."""


async def read_range(
    clients: Clients, topic: str, start: Mapping[int, int], end: Mapping[int, int], batch: int = 500
) -> AsyncIterator[list[Any]]:
    """Batches of records with ``start[p] <= offset < end[p]``, in offset order per partition."""
    wanted = {p: (start.get(p, 0), stop) for p, stop in end.items() if start.get(p, 0) < stop}
    if not wanted:
        return
    consumer = clients.reader(auto_offset_reset="none", max_poll_records=batch)
    await consumer.start()
    try:
        tps = {p: TopicPartition(topic, p) for p in wanted}
        consumer.assign(list(tps.values()))
        for p, (first, _) in wanted.items():
            consumer.seek(tps[p], first)
        remaining = set(wanted)
        while remaining:
            try:
                fetched = await consumer.getmany(*[tps[p] for p in remaining], timeout_ms=1000)
            except OffsetOutOfRangeError as exc:
                raise TooOld(str(exc)) from None
            out = []
            for tp, records in fetched.items():
                stop = wanted[tp.partition][1]
                for record in records:
                    if record.offset >= stop:
                        break
                    out.append(record)
                if records and (records[-1].offset + 1 >= stop):
                    remaining.discard(tp.partition)
            for p in list(remaining):
                # Offsets can have holes (compaction, transaction markers): stop at the end.
                if await consumer.position(tps[p]) >= wanted[p][1]:
                    remaining.discard(p)
            if out:
                yield out
    finally:
        await stop_quietly(consumer)
