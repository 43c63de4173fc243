"""Two real processor processes, one SIGKILLed mid-stream and restarted, 10,000 raw updates.

The input holds new entries, exact re-sends (a restarted poller), edits (revisions), poison
records and cross-source near-duplicates. At the end the wire must hold every expected event
exactly once, with the story links the input implies, and every poison record must be in the
dead-letter topic.

Near-duplicate second reports are produced in a second phase, after the first reports are on
the wire: story linking across processes is as fresh as the wire (see processor.service), and
this test asserts links, not a race.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from jsonschema import Draft202012Validator

from telex.config import Config
from telex.events import content_hash, update_id
from telex.kafka import Clients, TopicSpec, ensure_topics
from telex.testing import TelexProcess
from tests.conftest import Broker

PARTITIONS = 3
TOTAL = 10_000
SOURCES = [f"blog{n}" for n in range(9)]
PAIRS = 300  # cross-source near-duplicate pairs
POISON = 20
# One last raw record per partition, after all the input: once each is on the wire, all that
# came before it in its partition is too (Kafka keeps a partition's order, the processor
# keeps raw partition p's order on wire partition p).
SENTINEL = "sentinel"

_rng = random.Random(20240118)
_WORDS = (
    "lavrov said the ministry would respond to sanctions while officials in moscow kyiv "
    "brussels washington ankara beijing delhi tehran discussed grain exports energy "
    "prices missile strikes ceasefire talks refugees elections parliament budget "
    "pipeline drones border troops convoy hospital power outage negotiators summit "
    "delegation embassy spokesperson minister president envoy treaty alliance shipment "
    "inflation currency bonds markets shares harvest drought flooding evacuation "
    "aid agency court verdict appeal protest strike union railway port airport "
    "satellite launch cyber attack hackers vaccine outbreak clinic school teachers"
)
_VOCAB = sorted(set(_WORDS.split()))


def sentence(words: int) -> str:
    return " ".join(_rng.choice(_VOCAB) for _ in range(words)).capitalize() + "."


def raw(source: str, entry: str, text: str, detected_ms: int) -> dict[str, Any]:
    return {
        "v": 1,
        "kind": "upsert",
        "id": update_id(source, entry),
        "source_id": source,
        "source_url": f"http://{source}.example/live",
        "entry_id": entry,
        "url": f"http://{source}.example/live#{entry}",
        "title": None,
        "text": text,
        "html": None,
        "time_raw": None,
        "published": None,
        "page_date": None,
        "page_tz": None,
        "content_hash": content_hash(None, text),
        "detected_ms": detected_ms,
    }


class Input:
    """The raw records of both phases and what the wire must hold afterwards."""

    def __init__(self) -> None:
        self.phase1: list[tuple[str, bytes]] = []
        self.phase2: list[tuple[str, bytes]] = []
        self.expected: Counter[tuple[str, str, str]] = Counter()  # (type, id, hash)
        self.pairs: list[tuple[str, str]] = []  # (first report id, near-duplicate id)
        self.poison = 0
        current: dict[str, tuple[str, str, str]] = {}  # id -> (source, entry, text)
        hashes: dict[str, str] = {}
        clock = 1_705_568_220_000

        def emit(batch: list[tuple[str, bytes]], record: dict[str, Any]) -> None:
            batch.append((record["source_id"], orjson.dumps(record)))
            uid, digest = record["id"], record["content_hash"]
            if uid not in hashes:
                self.expected[("telex.update.created", uid, digest)] += 1
            elif hashes[uid] != digest:
                self.expected[("telex.update.revised", uid, digest)] += 1
            hashes[uid] = digest

        firsts: list[str] = []
        n = 0
        phase1_size = TOTAL - PAIRS - 200
        while len(self.phase1) < phase1_size:
            clock += 1000
            roll = _rng.random()
            if roll < 0.003 and self.poison < POISON:
                self.poison += 1
                self.phase1.append((_rng.choice(SOURCES), b"{not json" + str(n).encode()))
            elif roll < 0.62 or not current:
                source, entry = _rng.choice(SOURCES), f"e{n}"
                n += 1
                text = " ".join(sentence(12) for _ in range(3))
                record = raw(source, entry, text, clock)
                current[record["id"]] = (source, entry, text)
                firsts.append(record["id"])
                emit(self.phase1, record)
            elif roll < 0.85:  # an exact re-send of an entry's current content
                uid = _rng.choice(firsts)
                source, entry, text = current[uid]
                emit(self.phase1, raw(source, entry, text, clock))
            else:  # an edit: one sentence added
                uid = _rng.choice(firsts)
                source, entry, text = current[uid]
                text = f"{text} {sentence(10)}"
                current[uid] = (source, entry, text)
                emit(self.phase1, raw(source, entry, text, clock))
        while self.poison < POISON:
            self.poison += 1
            self.phase1.append((_rng.choice(SOURCES), b"[]"))
        # Phase 2: near-duplicates of first reports from another source, and more re-sends.
        for uid in _rng.sample(firsts, PAIRS):
            clock += 1000
            source, _, text = current[uid]
            other = _rng.choice([s for s in SOURCES if s != source])
            words = text.split()
            words[3] = "reportedly"
            near = "UPDATE: " + " ".join(words)
            record = raw(other, f"near-{uid}", near, clock)
            self.pairs.append((uid, record["id"]))
            emit(self.phase2, record)
        while len(self.phase1) + len(self.phase2) < TOTAL:
            uid = _rng.choice(firsts)
            source, entry, text = current[uid]
            emit(self.phase2, raw(source, entry, text, clock))

    @property
    def phase1_events(self) -> int:
        return sum(1 for _ in self._events(self.phase1))

    @staticmethod
    def _events(batch: list[tuple[str, bytes]]) -> list[bytes]:
        return [value for _, value in batch if value.startswith(b'{"v"')]


class WireTail:
    """Every wire record so far, read by a group-less consumer; the sentinels apart."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.topic = topic
        self.records: list[Any] = []
        self.sentinels: list[Any] = []

    async def start(self) -> None:
        await self.consumer.start()
        tps = [TopicPartition(self.topic, p) for p in range(PARTITIONS)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)

    async def poll(self) -> int:
        batch = await self.consumer.getmany(timeout_ms=200, max_records=5000)
        for items in batch.values():
            for record in items:
                (self.sentinels if record.key == SENTINEL.encode() else self.records).append(record)
        return len(self.records)

    async def wait_for(self, count: int, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while await self.poll() < count:
                pass

    async def wait_for_sentinels(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while {r.partition for r in self.sentinels} != set(range(PARTITIONS)):
                await self.poll()


def processor(config: Config, log: Path) -> TelexProcess:
    """A processor process; ready once it has partitions assigned."""
    return TelexProcess("processor", config, log=log, ready="processor.assigned")


async def produce(bootstrap: str, topic: str, records: list[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key.encode()) for key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def produce_sentinels(bootstrap: str, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for p in range(PARTITIONS):
            # Fewer words than a story needs: a sentinel is never linked to anything.
            record = raw(SENTINEL, f"end-{p}", f"End of input {p}.", 1_705_600_000_000)
            await producer.send_and_wait(topic, orjson.dumps(record), SENTINEL.encode(), p)
    finally:
        await producer.stop()


async def test_two_processors_one_killed_every_event_exactly_once(
    broker: Broker,
    config_factory: Callable[..., Config],
    wire_schema: Draft202012Validator,
    tmp_path: Path,
) -> None:
    config = config_factory(
        broker.bootstrap,
        TELEX_TOPICS_PARTITIONS=PARTITIONS,
        TELEX_KAFKA_IDEMPOTENCE="off",
        TELEX_KAFKA_SESSION_TIMEOUT_MS=4000,
        TELEX_PROCESSOR_MAX_BATCH=200,
        TELEX_LOG_FORMAT="json",
    )
    data = Input()
    assert len(data.phase1) + len(data.phase2) == TOTAL
    await ensure_topics(
        Clients(config, broker.bootstrap),
        [
            TopicSpec(config.topics.raw, PARTITIONS),
            TopicSpec(config.topics.wire, PARTITIONS),
            TopicSpec(config.topics.dlq, 1),
        ],
    )
    procs = [processor(config, tmp_path / name).start() for name in ("a.log", "b.log")]
    tail = WireTail(broker.bootstrap, config.topics.wire)
    await tail.start()
    try:
        for proc in procs:
            await proc.wait_ready(timeout=40)
        phase1_total = sum(
            n for key, n in data.expected.items() if key[1] not in {b for _, b in data.pairs}
        )
        await produce(broker.bootstrap, config.topics.raw, data.phase1)

        # Kill one processor once a fifth of phase 1 is on the wire, and restart it.
        await tail.wait_for(phase1_total // 5, timeout=60)
        await procs[0].kill()
        on_wire_at_kill = len(tail.records)
        assert on_wire_at_kill < phase1_total, "the kill must land mid-stream"
        procs[0].start()

        await tail.wait_for(phase1_total, timeout=90)
        await procs[0].wait_ready(timeout=40)
        # Let both tails index phase 1 before its near-duplicates arrive.
        await asyncio.sleep(1.0)
        await produce(broker.bootstrap, config.topics.raw, data.phase2)
        await tail.wait_for(sum(data.expected.values()), timeout=60)
        # A duplicate of anything would come before the sentinel of its partition.
        await produce_sentinels(broker.bootstrap, config.topics.raw)
        await tail.wait_for_sentinels(timeout=60)
    finally:
        for proc in procs:
            await proc.stop(timeout=10)
        await tail.consumer.stop()

    assert sorted(r.partition for r in tail.sentinels) == list(range(PARTITIONS))

    events = [orjson.loads(r.value) for r in tail.records]
    seen = Counter((e["type"], e["data"]["id"], e["data"]["content_hash"]) for e in events)
    duplicates = {k: n for k, n in seen.items() if n > 1}
    assert not duplicates, f"{len(duplicates)} events on the wire more than once"
    assert seen == data.expected
    for event in events[:: max(1, len(events) // 200)]:
        wire_schema.validate(event)
    # Events of raw partition p are on wire partition p, in order per update.
    by_id: dict[str, list[Any]] = {}
    for record, event in zip(tail.records, events, strict=True):
        by_id.setdefault(event["data"]["id"], []).append((record, event))
    for versions in by_id.values():
        assert len({r.partition for r, _ in versions}) == 1
        assert versions[0][1]["type"] == "telex.update.created"
        assert all(e["type"] == "telex.update.revised" for _, e in versions[1:])

    # Stories: every near-duplicate shares its first report's story; nothing else is linked.
    story = {e["data"]["id"]: e["data"]["story_id"] for e in events}
    for first, near in data.pairs:
        assert story[near] == story[first], f"{near} not linked to {first}"
    linked = {near for _, near in data.pairs}
    assert len({story[u] for u in story if u not in linked}) == len(story) - len(linked)

    dlq = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    await dlq.start()
    try:
        tp = TopicPartition(config.topics.dlq, 0)
        dlq.assign([tp])
        await dlq.seek_to_beginning(tp)
        dead: set[tuple[int, int]] = set()
        async with asyncio.timeout(20):
            while len(dead) < data.poison:
                for items in (await dlq.getmany(timeout_ms=200)).values():
                    for record in items:
                        headers = dict(record.headers)
                        assert headers["telex-topic"].decode() == config.topics.raw
                        assert headers["telex-reason"]
                        dead.add((int(headers["telex-partition"]), int(headers["telex-offset"])))
    finally:
        await dlq.stop()
    assert len(dead) == data.poison
