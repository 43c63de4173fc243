"""Processor throughput: records per second per core, telex vs a plain loop vs Quix Streams.

Three contenders read the same raw updates from the same embedded broker (Tansu) and write to
their own output topic, each in its own process:

- ``plain``: an aiokafka consume -> produce -> commit loop that passes records through
  untouched (no parsing, no enrichment): the ceiling.
- ``telex``: telex's real :class:`~telex.processor.service.Processor` (enrichment, dedup,
  revisions, stories, wire tail, explicit commits).
- ``quix``: the same enrichment, dedup, revisions and stories as a Quix Streams application:
  ``Stage.process`` in a stateful ``apply`` whose dedup state is Quix's own (RocksDB plus its
  changelog topic), the way a Quix user would keep it crash-safe.
- ``telex-batch<N>`` (optional): telex with ``[processor] max_batch = N``.
- ``telex-bare`` (optional): telex's processor with no enricher (dedup, revisions, stories,
  state and commits only): what telex's own machinery costs.
- ``quix-bare`` (optional): ``quix-memory`` with no enricher: Quix's machinery against
  ``telex-bare``'s, on the same dedup, revisions and stories.
- ``quix-memory`` (optional): the same, but with telex's in-memory partition state instead of
  Quix's store (not crash-safe): what is left is Quix's own per-record overhead.

Each child measures from its first consumed record to its last output acknowledged (start-up,
model loading and the group join are excluded), in wall time and in CPU time of the whole
process (all threads). Records per core = records / CPU seconds.

Run (Quix Streams is a bench-only dependency, kept out of telex's own):

    python -m venv .venv-bench && .venv-bench/bin/pip install -e . quixstreams
    .venv-bench/bin/python bench/processor_throughput.py --records 6000 --runs 3

``--bootstrap HOST:PORT`` runs it against a running cluster instead (``scripts/kafka-cluster.sh``
starts the test suite's three Apache Kafka nodes): topics get telex's replication (3 copies,
``min.insync.replicas=2`` on three brokers) and every contender's producer is idempotent, as
telex's is there; on the embedded broker, which cannot be, none is.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from telex.events import content_hash, update_id
from telex.kafka.embedded import EmbeddedBroker
from telex.replay.seed import load_seed

PARTITIONS = 3
SOURCES = [f"blog{n}" for n in range(12)]


def make_input(count: int, seed: int = 7) -> tuple[list[tuple[bytes, bytes]], int]:
    """Raw updates built from the seed blog's paragraphs: ~70% new, 20% re-sends, 10% edits.

    Returns the records and how many wire events they should produce.
    """
    rng = random.Random(seed)
    paragraphs = [p for e in load_seed().entries for p in e.paragraphs]
    current: dict[str, tuple[str, str, str]] = {}
    records: list[tuple[bytes, bytes]] = []
    expected = 0
    clock = 1_705_568_220_000
    for n in range(count):
        clock += 500
        roll = rng.random()
        if roll < 0.7 or len(current) < 10:
            source, entry = rng.choice(SOURCES), f"e{n}"
            text = " ".join(rng.sample(paragraphs, 2)) + f" ({n})"
            expected += 1
        else:
            uid = rng.choice(sorted(current))
            source, entry, text = current[uid]
            if roll >= 0.9:
                text = f"{text} {rng.choice(paragraphs)}"
                expected += 1
        uid = update_id(source, entry)
        current[uid] = (source, entry, text)
        record = {
            "v": 1, "kind": "upsert", "id": uid, "source_id": source,
            "source_url": f"https://{source}.example/live", "entry_id": entry,
            "url": f"https://{source}.example/live#{entry}", "title": None, "text": text,
            "html": "<p>" + text.replace("\n\n", "</p><p>") + "</p>", "time_raw": None,
            "published": None, "page_date": None, "page_tz": None,
            "content_hash": content_hash(None, text), "detected_ms": clock,
        }  # fmt: skip
        records.append((source.encode(), orjson.dumps(record)))
    return records, expected


# Children ------------------------------------------------------------------------------------


class Clock:
    """Wall and CPU time from the first record on."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def start(self) -> None:
        if not self.wall:
            self.wall, self.cpu = time.perf_counter(), time.process_time()

    def result(self, records: int) -> dict[str, Any]:
        return {
            "records": records,
            "wall_s": time.perf_counter() - self.wall,
            "cpu_s": time.process_time() - self.cpu,
        }


async def run_plain(args: argparse.Namespace) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(
        args.raw, bootstrap_servers=args.bootstrap, group_id=args.group,
        enable_auto_commit=False, auto_offset_reset="earliest",
        session_timeout_ms=6000, heartbeat_interval_ms=500, request_timeout_ms=10_000,
    )  # fmt: skip
    producer = AIOKafkaProducer(
        bootstrap_servers=args.bootstrap,
        acks="all",
        linger_ms=2,
        enable_idempotence=args.idempotence == "on",
    )
    await producer.start()
    await consumer.start()
    clock, seen = Clock(), 0
    try:
        while seen < args.records:
            batch = await consumer.getmany(timeout_ms=500, max_records=500)
            if not batch:
                continue
            clock.start()
            pending, offsets = [], {}
            for tp, items in batch.items():
                for record in items:
                    pending.append(
                        await producer.send(
                            args.out, record.value, key=record.key, partition=tp.partition
                        )
                    )
                    offsets[tp] = record.offset + 1
                seen += len(items)
            await asyncio.gather(*pending)
            await consumer.commit(offsets)
        return clock.result(seen)
    finally:
        await consumer.stop()
        await producer.stop()


async def run_telex(
    args: argparse.Namespace, enrich: bool = True, max_batch: int | None = None
) -> dict[str, Any]:
    from prometheus_client import REGISTRY

    from telex.config import load
    from telex.kafka import Clients
    from telex.processor.enrich import Pipeline
    from telex.processor.service import Processor
    from telex.processor.stage import Stage

    config = load(
        None,
        {
            "TELEX_KAFKA_BOOTSTRAP": args.bootstrap,
            "TELEX_KAFKA_IDEMPOTENCE": args.idempotence,
            "TELEX_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "TELEX_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
            "TELEX_TOPICS_RAW": args.raw,
            "TELEX_TOPICS_WIRE": args.out,
            "TELEX_TOPICS_DLQ": args.out + ".dlq",
            "TELEX_PROCESSOR_GROUP_ID": args.group,
            **({"TELEX_PROCESSOR_MAX_BATCH": str(max_batch)} if max_batch else {}),
        },
    )
    stage = Stage(config) if enrich else Stage(config, Pipeline([]))
    processor = Processor(config, Clients(config, args.bootstrap), stage)

    name = "telex_processor_records_consumed_total"
    # Only this metric is collected (all of them take milliseconds, on the measured loop).
    counter = REGISTRY.restricted_registry([name])

    def consumed() -> float:
        return sum(s.value for m in counter.collect() for s in m.samples if s.name == name)

    await processor.start()
    clock = Clock()
    try:
        while consumed() == 0:
            await asyncio.sleep(0.002)
        clock.start()
        while consumed() < args.records:
            await asyncio.sleep(0.005)
        async with processor._lock:  # the last batch is produced, acknowledged and committed
            return clock.result(int(consumed()))
    finally:
        await processor.stop()


def run_quix(args: argparse.Namespace, store: bool = True, enrich: bool = True) -> dict[str, Any]:
    """The same ``Stage.process`` as a Quix Streams application.

    ``store``: the dedup state in Quix's RocksDB store with its changelog topic, the way a Quix
    user keeps it crash-safe; otherwise telex's in-memory partition state (not crash-safe),
    which leaves Quix's own per-record overhead.
    """
    from quixstreams import Application
    from quixstreams.context import message_context

    from telex.config import Config
    from telex.events import decode_raw, encode, now_ms
    from telex.processor.enrich import Pipeline
    from telex.processor.stage import Stage
    from telex.processor.state import Known, PartitionState

    stage = Stage(Config()) if enrich else Stage(Config(), Pipeline([]))

    class QuixState(PartitionState):
        """Stage's partition state kept in Quix's RocksDB store (with its changelog)."""

        def __init__(self) -> None:
            super().__init__()
            self.state: Any = None

        def get(self, update_id: str) -> Known | None:
            value = self.state.get(update_id)
            return Known(**value) if value is not None else None

        def put(self, update_id: str, known: Known) -> None:
            self.state.set(update_id, known.__dict__)

    adapter = QuixState()
    states: dict[int, PartitionState] = {}
    clock, seen = Clock(), [0]
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=tempfile.mkdtemp(prefix="quix-state-"),
    )
    raw_topic = app.topic(args.raw, value_deserializer="bytes", key_deserializer="bytes")
    out_topic = app.topic(args.out, value_serializer="bytes", key_serializer="bytes")

    def process(value: bytes, state: PartitionState) -> bytes | None:
        clock.start()
        seen[0] += 1
        result = stage.process(decode_raw(value), state, now_ms())
        if seen[0] >= args.records:
            app.stop()
        return encode(result.event) if result.event is not None else None

    def in_store(value: bytes, state: Any) -> bytes | None:
        adapter.state = state
        return process(value, adapter)

    def in_memory(value: bytes) -> bytes | None:
        partition = message_context().partition
        state = states.get(partition)
        if state is None:
            state = states[partition] = stage.new_state()
        return process(value, state)

    sdf = app.dataframe(raw_topic)
    sdf = sdf.apply(in_store, stateful=True) if store else sdf.apply(in_memory)
    sdf = sdf.filter(lambda v: v is not None)
    sdf.to_topic(out_topic)
    app.run()
    return clock.result(seen[0])


def child(args: argparse.Namespace) -> None:
    if args.contender == "quix":
        result = run_quix(args)
    elif args.contender == "quix-memory":
        result = run_quix(args, store=False)
    elif args.contender == "quix-bare":
        result = run_quix(args, store=False, enrich=False)
    elif args.contender == "plain":
        result = asyncio.run(run_plain(args))
    elif args.contender == "telex-bare":
        result = asyncio.run(run_telex(args, enrich=False))
    elif args.contender.startswith("telex-batch"):
        # telex with another [processor] max_batch: "telex-batch500"
        result = asyncio.run(run_telex(args, max_batch=int(args.contender[len("telex-batch") :])))
    else:
        result = asyncio.run(run_telex(args))
    print("RESULT " + json.dumps(result), flush=True)


# Parent --------------------------------------------------------------------------------------


async def prepare(bootstrap: str, raw: str, out: str, records: list[tuple[bytes, bytes]]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from telex.config import TopicsConfig
    from telex.kafka.admin import replication

    # Explicit retention settings: Quix Streams derives its changelog topics' settings from
    # the input topic's retention.ms/retention.bytes, which Tansu reports only when they were
    # set at creation (it raises KeyError: 'retention.ms' otherwise).
    configs = {"retention.ms": "604800000", "retention.bytes": "-1"}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        brokers = len((await admin.describe_cluster())["brokers"])
        factor, in_sync = replication(TopicsConfig(), brokers)
        configs["min.insync.replicas"] = str(in_sync)
        await admin.create_topics(
            [
                NewTopic(raw, PARTITIONS, factor, topic_configs=configs),
                NewTopic(out, PARTITIONS, factor, topic_configs=configs),
                NewTopic(out + ".dlq", 1, factor, topic_configs=configs),
            ]
        )
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(raw, value, key=key) for key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def count_topic(bootstrap: str, topic: str) -> int:
    from aiokafka import TopicPartition

    from telex.kafka.scan import read_to_end

    async def ignore(batch: object) -> None:
        return None

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return await read_to_end(consumer, tps, ignore, max_records=10_000)
    finally:
        await consumer.stop()


async def parent(args: argparse.Namespace) -> None:
    records, expected = make_input(args.records)
    broker = None if args.bootstrap else EmbeddedBroker()
    if broker is not None:
        await broker.start()
    bootstrap = args.bootstrap or broker.bootstrap
    idempotence = "off" if broker is not None else "on"
    tag = uuid.uuid4().hex[:6]  # a cluster keeps the topics of earlier invocations
    results: dict[str, list[dict[str, Any]]] = {c: [] for c in args.contenders}
    try:
        for run in range(args.runs):
            for contender in args.contenders:
                raw, out = f"bench{tag}-{run}.{contender}.raw", f"bench{tag}-{run}.{contender}.out"
                await prepare(bootstrap, raw, out, records)
                cmd = [
                    sys.executable, __file__, "--child", contender, "--bootstrap",
                    bootstrap, "--raw", raw, "--out", out, "--group",
                    f"bench{tag}-{run}-{contender}", "--records", str(len(records)),
                    "--idempotence", idempotence,
                ]  # fmt: skip
                proc = await asyncio.create_subprocess_exec(
                    *cmd,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env={**os.environ, "TELEX_LOG_LEVEL": "warning"},
                )
                try:
                    stdout, stderr = await asyncio.wait_for(proc.communicate(), args.timeout)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
                    stdout, stderr = b"", b"timed out"
                line = next(
                    (x for x in stdout.decode().splitlines() if x.startswith("RESULT ")), None
                )
                if line is None:
                    print(f"{contender} run {run}: FAILED\n{stderr.decode()[-3000:]}")
                    results[contender].append({"failed": stderr.decode()[-3000:]})
                    continue
                result = json.loads(line[len("RESULT ") :])
                result["outputs"] = await count_topic(bootstrap, out)
                results[contender].append(result)
                print(
                    f"{contender:6} run {run}: {result['records']} records, "
                    f"{result['records'] / result['wall_s']:9.0f}/s wall, "
                    f"{result['records'] / result['cpu_s']:9.0f}/s per core, "
                    f"{result['outputs']} outputs (expected "
                    f"{len(records) if contender == 'plain' else expected})",
                    flush=True,
                )
    finally:
        if broker is not None:
            await broker.stop()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\nbroker: {args.bootstrap or 'embedded'} (idempotence {idempotence}); load {load}")
    report(results, len(records), expected, args.runs)


def report(
    results: dict[str, list[dict[str, Any]]], records: int, expected: int, run_count: int
) -> None:
    """Print the machine, the input and each contender's median, with the ratios."""
    python = platform.python_version()
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {python}")
    print(f"input: {records} raw updates -> {expected} wire events; median of {run_count} runs")
    medians: dict[str, float] = {}
    for contender, done in results.items():
        ok = [r for r in done if "failed" not in r]
        if not ok:
            print(f"  {contender:6} failed every run")
            continue
        medians[contender] = statistics.median(r["records"] / r["cpu_s"] for r in ok)
        wall = statistics.median(r["records"] / r["wall_s"] for r in ok)
        print(f"  {contender:6} {medians[contender]:9.0f} records/s per core  ({wall:.0f}/s wall)")
    if "telex" in medians:
        for other in ("plain", "quix", "quix-memory"):
            if other in medians:
                print(f"  telex / {other}: {medians['telex'] / medians[other]:.2f}")
    if "telex-bare" in medians:
        for other in ("plain", "quix-bare"):
            if other in medians:
                print(f"  telex-bare / {other}: {medians['telex-bare'] / medians[other]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=6000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--contenders", nargs="+", default=["plain", "telex", "quix"])
    parser.add_argument("--child", dest="contender", default=None)
    parser.add_argument("--bootstrap", help="a running cluster (default: the embedded broker)")
    parser.add_argument("--idempotence", choices=("on", "off"), default="off")
    parser.add_argument("--raw")
    parser.add_argument("--out")
    parser.add_argument("--group")
    args = parser.parse_args()
    if args.contender:
        child(args)
    else:
        asyncio.run(parent(args))


if __name__ == "__main__":
    main()
