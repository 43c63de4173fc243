"""Latency benchmark: poller-sees -> subscriber-receives through telex, against a floor pipeline.

One run has two phases on the same broker, with the same subscriber mix (soak's audience: 2 %
firehose, the rest over 250 filtered views of 1-5 sources with a Zipf popularity):

- **telex**: the whole pipeline as processes (``bench/soak.py``'s orchestration: JSON Feed
  sources, ``telex poller|processor|gateway|notifier``, WebSocket subscriber processes, webhook
  receivers). Measures ``timings.detected_ms`` (the poller saw the update) -> frame received
  by a subscriber and -> webhook received, p50/p99, and the per-hop table from the services'
  ``telex_pipeline_hop_seconds`` histograms (the difference between the end and the start of
  the phase, so start-up does not count), and each process's event loop lag.
- **floor**: three plain aiokafka hops doing no work. A producer stamps each record with the
  time it made it (its "poller saw") and produces it to a raw topic; a relay consumes raw and
  produces the same bytes to a wire topic, partition for partition; a gateway consumes the wire
  and writes each record, wrapped once in a WebSocket frame header, to every socket whose
  filter names the record's source (a dict lookup; the firehose sockets take all). The records
  are telex-shaped frames of ``--floor-bytes`` bytes, so the same subscriber code parses both.

The ratio telex p99 / floor p99 is the figure that holds on a noisy machine.
``--kafka-cluster`` starts a three-node Apache Kafka cluster on loopback for the benchmark
(``tests/kafka_cluster.py``'s cluster with its ``bench`` profile: every topic on three
replicas, ``min.insync.replicas=2``, the JVM's full compiler and Kafka's own segment timings)
and runs every phase against it, after three warm-up runs that are not counted (after one,
the first counted run's p99 was twice the next ones': a cluster just started is not yet
steady). ``--bootstrap``
runs both phases against an external cluster (``--set TELEX_KAFKA_FETCH_MAX_WAIT_MS=500`` and
the like set telex's settings for that broker; ``--floor-fetch-wait-ms`` the floor's).

    .venv/bin/python bench/latency.py --runs 3
    .venv/bin/python bench/latency.py --kafka-cluster --runs 3
    .venv/bin/python bench/latency.py --bootstrap kafka1:9092 --runs 3 \\
        --set TELEX_KAFKA_FETCH_MAX_WAIT_MS=500 --set TELEX_GATEWAY_FETCH_MAX_WAIT_MS=500 \\
        --floor-fetch-wait-ms 500
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import soak  # noqa: E402
from fanout import raise_fd_limit  # noqa: E402
from servers import FloorProtocol  # noqa: E402

SCRIPT = str(Path(__file__).resolve())
HOPS = ("poller", "raw_topic", "processor", "wire_gateway", "fanout")
WEBHOOK_HOPS = ("wire_notifier", "webhook")


# Floor children ------------------------------------------------------------------------------


def floor_payload(index: int, seq: int, ms: int, pad: int) -> bytes:
    """A record shaped like a telex event frame: what soak's subscribers parse."""
    head = (
        b'{"type":"event","cursor":"0","event":{"data":{"entry_id":"'
        + soak.entry_id(index, seq, ms).encode()
        + b'","timings":{"detected_ms":%d,"processed_ms":%d},"text":"' % (ms, ms)
    )
    tail = b'"}}}'
    return head + b"x" * max(0, pad - len(head) - len(tail)) + tail


async def child_floor_source(args: argparse.Namespace) -> None:
    """Produce ``rate`` records/s to the raw topic, stamped when made, until told to stop."""
    from aiokafka import AIOKafkaProducer

    rng = random.Random(args.seed)
    counts = [0] * args.sources
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, acks="all", linger_ms=0)
    await producer.start()
    state: dict[str, Any] = {"published": 0}

    async def ticker(stop: asyncio.Event) -> None:
        start = time.monotonic()
        while not stop.is_set():
            due = int(args.rate * (time.monotonic() - start))
            while state["published"] < due:
                index = rng.randrange(args.sources)
                seq = counts[index]
                counts[index] += 1
                ms = time.time_ns() // 1_000_000
                await producer.send(
                    args.topic,
                    floor_payload(index, seq, ms, args.pad),
                    key=soak.source_id(index).encode(),
                )
                state["published"] += 1
            await asyncio.sleep(0.01)

    async def final() -> dict[str, Any]:
        await producer.flush()
        return {"published": state["published"], "per_source": counts}

    soak.answer({"ready": True})
    try:
        await soak.serve_source_commands(state, ticker, final)
    finally:
        await producer.stop()


async def tail(args: argparse.Namespace, topic: str) -> Any:
    """A group-less consumer of every partition of ``topic`` from its end (positions known)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=args.bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=args.fetch_wait_ms,
    )
    await consumer.start()
    tps = [TopicPartition(topic, p) for p in range(args.partitions)]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    for tp in tps:
        await consumer.position(tp)
    return consumer


async def child_floor_relay(args: argparse.Namespace) -> None:
    """Consume raw, produce the same bytes to the wire partition of the same number."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, acks="all", linger_ms=0)
    await producer.start()
    consumer = await tail(args, args.raw)
    soak.answer({"ready": True})
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                for record in records:
                    await producer.send(
                        args.wire, record.value, key=record.key, partition=tp.partition
                    )
    finally:
        await consumer.stop()
        await producer.stop()


class FloorConn(FloorProtocol):
    """A subscriber socket of the floor: fanout's handshake, then joined by its filter."""

    def __init__(self, server: FloorGateway) -> None:
        super().__init__()
        self.server = server
        self.sources: list[int] | None = None

    def data_received(self, data: bytes) -> None:
        if self.open:
            return
        super().data_received(data)
        if not self.open:
            return
        assert self.transport is not None
        self.clients.discard(self.transport)  # fanout's broadcast set: not used here
        path = self.buffer.split(b" ", 2)[1].decode()
        query = parse_qs(urlsplit(path).query)
        if "sources" in query:
            self.sources = [int(s.rsplit("s", 1)[1]) for s in query["sources"][0].split(",")]
        self.server.join(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.leave(self)


class FloorGateway:
    """Sockets by source; each wire record framed once and written to its sockets."""

    def __init__(self, sources: int) -> None:
        self.by_source: list[list[asyncio.Transport]] = [[] for _ in range(sources)]
        self.firehose: list[asyncio.Transport] = []

    def join(self, conn: FloorConn) -> None:
        assert conn.transport is not None
        if conn.sources is None:
            self.firehose.append(conn.transport)
        else:
            for s in conn.sources:
                self.by_source[s].append(conn.transport)

    def leave(self, conn: FloorConn) -> None:
        if conn.transport is None or not conn.open:
            return
        for group in [self.firehose, *self.by_source]:
            with contextlib.suppress(ValueError):
                group.remove(conn.transport)

    def write(self, key: bytes, value: bytes) -> None:
        from telex.gateway.frames import ws_frame

        frame = ws_frame(value)
        for transport in self.by_source[int(key.rsplit(b"s", 1)[1])]:
            transport.write(frame)
        for transport in self.firehose:
            transport.write(frame)


async def child_floor_gateway(args: argparse.Namespace) -> None:
    gateway = FloorGateway(args.sources)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: FloorConn(gateway), "127.0.0.1", 0, backlog=4096)
    consumer = await tail(args, args.wire)
    soak.answer({"port": server.sockets[0].getsockname()[1]})
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    gateway.write(record.key, record.value)
    finally:
        await consumer.stop()
        server.close()


# The orchestrator ----------------------------------------------------------------------------


class TelexRun(soak.Run):
    """soak's pipeline with extra TELEX_* settings (the broker's fetch waits and the like)."""

    def telex_env(self, bootstrap: str, config: Path) -> dict[str, str]:
        env = super().telex_env(bootstrap, config)
        for item in self.args.set:
            key, _, value = item.partition("=")
            env[key] = value
        return env

    async def stop_all_but_broker(self) -> dict[str, int | None]:
        broker = self.procs.pop("broker", None)
        try:
            return await self.stop()
        finally:
            if broker is not None:
                self.procs["broker"] = broker


def hop_quantiles(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], metric: str
) -> dict[str, dict[str, float | None]]:
    """p50/p99/mean per label value of ``metric``'s histogram, over the phase only, from the
    bucket counts (interpolated within a bucket, as Prometheus does)."""
    buckets: dict[str, dict[float, float]] = {}
    sums: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    by_hop = metric == "telex_pipeline_hop_seconds"
    for role, series in after.items():
        prior = before.get(role, {})
        for name, value in series.items():
            if not name.startswith(metric + "_"):
                continue
            if by_hop and 'hop="' not in name:
                continue  # the sum over every hop of the process
            delta = value - prior.get(name, 0.0)
            label = name.split('hop="', 1)[1].split('"', 1)[0] if by_hop else role
            if name.startswith(metric + "_bucket{"):
                le = name.split('le="', 1)[1].split('"', 1)[0]
                bound = float("inf") if le == "+Inf" else float(le)
                target = buckets.setdefault(label, {})
                target[bound] = target.get(bound, 0.0) + delta
            elif name.startswith(metric + "_sum"):
                sums[label] += delta
            elif name.startswith(metric + "_count"):
                counts[label] += delta
    out: dict[str, dict[str, float | None]] = {}
    for label, cumulative in buckets.items():
        total = counts[label]
        row: dict[str, float | None] = {"count": total}
        for name, q in (("p50", 0.5), ("p99", 0.99)):
            row[name] = _quantile(sorted(cumulative.items()), q, total)
        row["mean"] = round(1000 * sums[label] / total, 2) if total else None
        out[label] = row
    return out


def _quantile(cumulative: list[tuple[float, float]], q: float, total: float) -> float | None:
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in cumulative:
        if count >= rank:
            if bound == float("inf"):
                return round(1000 * lower, 2)
            share = (rank - below) / max(1e-9, count - below)
            return round(1000 * (lower + (bound - lower) * share), 2)
        lower, below = bound, count
    return None


async def telex_phase(args: argparse.Namespace, run: TelexRun) -> dict[str, Any]:
    await run.start()
    before = {role: await run.metrics(role) for role in run.ports}
    result = await run.soak()
    codes = await run.stop_all_but_broker()
    report = soak.build_report(run, result, codes)
    after = result["services"]
    cpu = {name: round(p["cpu_percent"]) for name, p in report["processes"].items()}
    return {
        "ws": report["subscribers"]["latency_detected_ms"]["all"],
        "webhooks": report["receivers"]["latency_detected_ms"]["all"],
        "hops": hop_quantiles(before, after, "telex_pipeline_hop_seconds"),
        "loop_lag": hop_quantiles(before, after, "telex_event_loop_lag_seconds"),
        "problems": report["problems"],
        "cpu_percent": cpu,
        "published": report["published"],
        "deliveries": report["subscribers"]["received"],
        "frame_bytes": round(
            soak_sum(after, "telex_gateway_sent_bytes_total")
            / max(1.0, soak_sum(after, "telex_gateway_frames_sent_total"))
        ),
    }


def soak_sum(services: dict[str, dict[str, float]], name: str) -> float:
    return sum(m.get(name, 0.0) for m in services.values())


async def floor_phase(args: argparse.Namespace, run: TelexRun) -> dict[str, Any]:
    prefix = f"floor{uuid.uuid4().hex[:8]}"
    raw, wire = f"{prefix}.raw", f"{prefix}.wire"
    from telex.config import Config
    from telex.kafka import Clients, TopicSpec, ensure_topics
    from telex.kafka.settings import fetch_max_wait_ms

    config = Config()
    clients = await Clients.connect(config, run.bootstrap)
    specs = [TopicSpec(raw, args.partitions), TopicSpec(wire, args.partitions)]
    await ensure_topics(clients, specs)
    if not args.floor_fetch_wait_ms:
        # The wait telex's own consumers use on this broker.
        args.floor_fetch_wait_ms = fetch_max_wait_ms(config.kafka, clients.capabilities.memory_only)
    script = [sys.executable, SCRIPT]
    common = ["--bootstrap", run.bootstrap, "--partitions", str(args.partitions)]
    wait = ["--fetch-wait-ms", str(args.floor_fetch_wait_ms)]
    gateway = await run.spawn(
        "floor_gateway",
        [*script, "_floor_gateway", *common, *wait, "--wire", wire, "--sources", str(args.sources)],
        talks=True,
    )
    port = (await gateway.read(60))["port"]
    relay = await run.spawn(
        "floor_relay", [*script, "_floor_relay", *common, *wait, "--raw", raw, "--wire", wire],
        talks=True,
    )  # fmt: skip
    await relay.read(60)
    source = await run.spawn(
        "floor_source",
        [*script, "_floor_source", *common, "--topic", raw, "--rate", str(args.rate),
         "--sources", str(args.sources), "--pad", str(args.floor_bytes), "--seed", str(args.seed)],
        talks=True,
    )  # fmt: skip
    await source.read(60)
    subs = []
    procs = max(1, min(args.client_procs, len(run.specs)))
    for n in range(procs):
        spec = run.workdir / f"floor_subscribers{n}.json"
        spec.write_bytes(orjson.dumps(run.specs[n::procs]))
        argv = ["_subscribers", "--port", str(port), "--cursor", "x", "--spec", str(spec)]
        subs.append(await run.child(f"floor_subscribers{n}", *argv))
    for proc in subs:
        await proc.read(300)
    t0_ms = soak.now_ms()
    for proc in subs:
        await proc.ask(f"start {t0_ms}")
    await source.ask("start")
    await asyncio.sleep(args.duration)
    published = await source.ask("stop")
    per_source = published["per_source"]
    want = sum(sum(per_source) if s is None else sum(per_source[i] for i in s) for s in run.specs)
    deadline = time.monotonic() + args.drain
    while time.monotonic() < deadline:
        got = sum([(await p.ask("count"))["received"] for p in subs])
        if got >= want:
            break
        await asyncio.sleep(0.5)
    reports = [await p.ask("report " + orjson.dumps(per_source).decode(), 120) for p in subs]
    for proc in subs:
        with contextlib.suppress(Exception):
            await proc.ask("close", 10)
    lost = sum(r["lost"] for r in reports)
    block = soak.latency_block([r["latency"]["detected"] for r in reports])
    for name in ["floor_source", "floor_relay", "floor_gateway", *(p.name for p in subs)]:
        # The source and the subscribers end with their commands; the others on SIGTERM.
        await soak.end_child(
            run.procs.pop(name).proc, not name.startswith(("floor_source", "floor_subscribers"))
        )
    if args.bootstrap:
        await soak.delete_topics(args.bootstrap, prefix)
    return {
        "ws": block["all"],
        "published": published["published"],
        "deliveries": sum(r["received"] for r in reports),
        "lost": lost,
        "duplicates": sum(r["duplicates"] for r in reports),
    }


async def one_run(args: argparse.Namespace, number: int) -> dict[str, Any]:
    workdir = soak.make_workdir(f"{args.workdir}/run{number}" if args.workdir else "")
    run = TelexRun(args, workdir)
    load_before = os.getloadavg()
    try:
        if not args.bootstrap:
            await run.start_broker()
        telex = await telex_phase(args, run)
        floor = await floor_phase(args, run)
    finally:
        await run.stop()
    tp99, fp99 = telex["ws"].get("p99"), floor["ws"].get("p99")
    return {
        "run": number,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "telex": telex,
        "floor": floor,
        "ratio_p99": round(tp99 / fp99, 2) if tp99 and fp99 else None,
        "workdir": str(workdir),
    }


def median(values: list[Any]) -> Any:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def broker_name(args: argparse.Namespace) -> str:
    if args.kafka_cluster:
        return f"3-node Apache Kafka cluster on loopback ({args.bootstrap})"
    return args.bootstrap or "embedded"


def summary(args: argparse.Namespace, runs: list[dict[str, Any]]) -> str:
    lines = [
        f"latency: {args.rate:g} updates/s over {args.sources} sources, {args.subscribers:,} "
        f"WebSocket subscribers ({args.firehose:.0%} firehose, {args.views} views), "
        f"{args.receivers} webhook receivers, {args.duration:g} s per phase, "
        f"broker {broker_name(args)}; settings {' '.join(args.set) or '(defaults)'}",
        "",
        "run | telex WS p50/p99 ms | webhooks p50/p99 | floor WS p50/p99 | telex/floor p99 "
        "| load before/after | problems",
    ]
    for r in runs:
        t, f = r["telex"], r["floor"]
        lines.append(
            f"{r['run']} | {t['ws'].get('p50')} / {t['ws'].get('p99')} | "
            f"{t['webhooks'].get('p50')} / {t['webhooks'].get('p99')} | "
            f"{f['ws'].get('p50')} / {f['ws'].get('p99')} | {r['ratio_p99']} | "
            f"{r['loadavg_before'][0]:.1f} / {r['loadavg_after'][0]:.1f} | "
            f"{'; '.join(t['problems']) or 'none'}; floor lost {f['lost']}"
        )
    lines.append(
        f"median | {median([r['telex']['ws'].get('p50') for r in runs])} / "
        f"{median([r['telex']['ws'].get('p99') for r in runs])} | "
        f"{median([r['telex']['webhooks'].get('p50') for r in runs])} / "
        f"{median([r['telex']['webhooks'].get('p99') for r in runs])} | "
        f"{median([r['floor']['ws'].get('p50') for r in runs])} / "
        f"{median([r['floor']['ws'].get('p99') for r in runs])} | "
        f"{median([r['ratio_p99'] for r in runs])} | |"
    )
    lines += ["", "per hop (telex_pipeline_hop_seconds, ms, median of runs): hop | p50 | p99"]
    for hop in (*HOPS, *WEBHOOK_HOPS):
        rows = [r["telex"]["hops"].get(hop, {}) for r in runs]
        lines.append(
            f"  {hop} | {median([x.get('p50') for x in rows])} | "
            f"{median([x.get('p99') for x in rows])} | {median([x.get('mean') for x in rows])}"
        )
    lines += ["", "event loop lag (ms, median of runs): process | p50 | p99 | mean"]
    for proc in sorted({k for r in runs for k in r["telex"]["loop_lag"]}):
        rows = [r["telex"]["loop_lag"].get(proc, {}) for r in runs]
        lines.append(
            f"  {proc} | {median([x.get('p50') for x in rows])} | "
            f"{median([x.get('p99') for x in rows])} | {median([x.get('mean') for x in rows])}"
        )
    cpu = runs[-1]["telex"]["cpu_percent"]
    lines.append("")
    lines.append("CPU % of one core, telex phase of the last run: " + ", ".join(
        f"{k} {v}" for k, v in sorted(cpu.items())
    ))  # fmt: skip
    lines.append(f"telex frame size: {runs[-1]['telex']['frame_bytes']} B on average")
    return "\n".join(lines)


@contextlib.asynccontextmanager
async def kafka_cluster(args: argparse.Namespace) -> AsyncIterator[None]:
    """With ``--kafka-cluster``: a three-node Apache Kafka cluster for the whole benchmark,
    ``args.bootstrap`` pointing at it; otherwise nothing."""
    if not args.kafka_cluster:
        yield
        return
    sys.path.insert(0, str(HERE.parent))
    from tests.kafka_cluster import KafkaCluster

    root = Path(tempfile.mkdtemp(prefix="telex-latency-kafka-"))
    # The brokers as they run in production (the JVM as Kafka's scripts start it, Kafka's
    # segment timings), not the test suite's fast-starting ones: those spend twice the CPU per
    # request on the cores telex is measured on.
    cluster = KafkaCluster(root, profile="bench")
    try:
        await cluster.astart()
        args.bootstrap = cluster.bootstrap
        print(f"latency: Apache Kafka cluster of 3 nodes at {cluster.bootstrap}", flush=True)
        yield
    finally:
        await asyncio.to_thread(cluster.stop)
        shutil.rmtree(root, ignore_errors=True)


async def orchestrate(args: argparse.Namespace) -> int:
    async with kafka_cluster(args):
        return await measure(args)


async def measure(args: argparse.Namespace) -> int:
    raise_fd_limit(2 * args.subscribers + 2000)
    runs = []
    for _ in range(args.warmup_runs):
        # A broker's JIT compiles for its first minute under load: not what is measured.
        print("latency: warm-up run (not counted)", flush=True)
        await one_run(args, 0)
    for number in range(1, args.runs + 1):
        print(f"latency: run {number} of {args.runs}", flush=True)
        runs.append(await one_run(args, number))
        r = runs[-1]
        print(
            f"  telex WS p50/p99 {r['telex']['ws'].get('p50')}/{r['telex']['ws'].get('p99')} ms,"
            f" floor {r['floor']['ws'].get('p50')}/{r['floor']['ws'].get('p99')} ms, "
            f"ratio {r['ratio_p99']}",
            flush=True,
        )
    report = {
        "command": " ".join(sys.argv),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "runs": runs,
    }
    out = soak.write_json(Path(args.json or "/tmp/telex-latency.json"), report)
    print(summary(args, runs))
    print(f"\nJSON: {out}")
    problems = [p for r in runs for p in r["telex"]["problems"]]
    return 1 if args.check and (problems or any(r["floor"]["lost"] for r in runs)) else 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0].startswith("_floor"):
        p = argparse.ArgumentParser()
        p.add_argument("role")
        p.add_argument("--bootstrap", required=True)
        p.add_argument("--partitions", type=int, required=True)
        p.add_argument("--fetch-wait-ms", type=int, default=10)
        p.add_argument("--raw", default="")
        p.add_argument("--wire", default="")
        p.add_argument("--topic", default="")
        p.add_argument("--rate", type=float, default=100)
        p.add_argument("--sources", type=int, default=200)
        p.add_argument("--pad", type=int, default=1500)
        p.add_argument("--seed", type=int, default=1)
        return p.parse_args(argv)
    # Everything soak takes (with this benchmark's defaults), and the floor's settings.
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--runs", type=int, default=3)
    own.add_argument(
        "--set", action="append", default=[], help="TELEX_X=value for telex's processes"
    )
    own.add_argument(
        "--kafka-cluster",
        action="store_true",
        help="start a 3-node Apache Kafka cluster on loopback and run against it",
    )
    own.add_argument(
        "--warmup-runs",
        type=int,
        default=None,
        help="runs done first and not counted (default: 3 with --kafka-cluster, else 0)",
    )
    own.add_argument("--floor-bytes", type=int, default=1500, help="floor record size")
    own.add_argument(
        "--floor-fetch-wait-ms",
        type=int,
        default=0,
        help="the floor consumers' fetch_max_wait_ms (default: telex's on this broker)",
    )
    mine, rest = own.parse_known_args(argv)
    defaults = ["--duration", "60", "--rate", "100", "--subscribers", "1000", "--drain", "60"]
    args = soak.parse([*defaults, *rest])
    for key, value in vars(mine).items():
        setattr(args, key, value)
    if args.warmup_runs is None:
        args.warmup_runs = 3 if args.kafka_cluster else 0
    args.role = None
    return args


def main() -> None:
    args = parse()
    if getattr(args, "role", None) == "_floor_source":
        asyncio.run(child_floor_source(args))
        return
    if getattr(args, "role", None) == "_floor_relay":
        asyncio.run(child_floor_relay(args))
        return
    if getattr(args, "role", None) == "_floor_gateway":
        asyncio.run(child_floor_gateway(args))
        return

    soak.run_orchestrator("latency", orchestrate(args))


if __name__ == "__main__":
    main()
