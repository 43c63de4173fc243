"""How long a consumer-group member's share of the work stalls when it is SIGKILLed and
restarted at once: dynamic against static membership (``[kafka] group_instance_id``).

Two members of one group (telex's own consumer settings, from ``telex.kafka``) share a topic's
partitions. One is killed with SIGKILL and started again straight away; the stall is the time
from the kill until every partition the dead member held is assigned to a live member again.

    .venv/bin/python bench/restart_stall.py                      # embedded broker
    .venv/bin/python bench/restart_stall.py --bootstrap host:9092 --runs 5

``--stage processor`` measures it end to end instead: two ``telex processor`` processes share
the raw topic while updates are produced to it at ``--rate`` per second; one is SIGKILLed and
started again at once, and a consumer of the wire measures how late each update comes out
(wire received - produced). The figure is the latest update produced after the kill, and
the time from the kill until updates come out within a second again. Each run also gives the
restarted process's phases, from its log: connected, started, assigned, ready (restored), its
first update out, caught up. ``--stage poller`` and ``--stage notifier`` kill an idle one of
two and give the same phases, ready being its ``/readyz`` answering 200 again.

    .venv/bin/python bench/restart_stall.py --stage processor --runs 3 [--bootstrap ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

SCRIPT = os.path.abspath(__file__)


async def member(args: argparse.Namespace) -> None:
    """A group member that prints its assignment (one JSON line) at each rebalance."""
    from telex.config import load
    from telex.kafka import Clients, GroupConsumer

    config = load(None, dict(os.environ))
    clients = await Clients.connect(config, args.bootstrap)

    async def assigned(partitions: list[Any]) -> None:
        line = {"t": time.time(), "assigned": sorted(tp.partition for tp in partitions)}
        print(json.dumps(line), flush=True)

    async def ignore(_: Any) -> None:
        return None

    group = GroupConsumer(
        clients, [args.topic], args.group, ignore, name="member", on_assigned=assigned
    )
    await group.start()
    try:
        await asyncio.Event().wait()
    finally:
        await group.stop()


@dataclass
class Member:
    """A member process and the assignments it printed."""

    proc: asyncio.subprocess.Process
    assignments: list[tuple[float, set[int]]] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            line = json.loads(raw)
            self.assignments.append((line["t"], set(line["assigned"])))

    def holds(self) -> set[int]:
        return self.assignments[-1][1] if self.assignments else set()


async def spawn(args: argparse.Namespace, group: str, instance: str) -> Member:
    from telex.config import load
    from telex.testing import child_environ

    settings = {
        "TELEX_KAFKA_BOOTSTRAP": args.bootstrap,
        "TELEX_KAFKA_IDEMPOTENCE": "off",
        "TELEX_KAFKA_GROUP_INSTANCE_ID": instance,
        "TELEX_LOG_LEVEL": "warning",
    }
    if args.session_timeout_ms:
        settings["TELEX_KAFKA_SESSION_TIMEOUT_MS"] = str(args.session_timeout_ms)
    env = child_environ(load(None, settings))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        SCRIPT,
        "_member",
        "--bootstrap",
        args.bootstrap,
        "--topic",
        args.topic,
        "--group",
        group,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    m = Member(proc)
    m.reader = asyncio.create_task(m.read())
    return m


async def stop(m: Member) -> None:
    if m.proc.returncode is None:
        m.proc.send_signal(signal.SIGKILL)
        await m.proc.wait()
    if m.reader is not None:
        m.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await m.reader


async def one_run(args: argparse.Namespace, static: bool) -> float:
    """Seconds from SIGKILL until the dead member's partitions are held by a live one."""
    group = f"stall-{uuid.uuid4().hex[:8]}"
    killed = 0.0
    ids = (f"{group}-a", f"{group}-b") if static else ("", "")
    a = await spawn(args, group, ids[0])
    b = await spawn(args, group, ids[1])
    members = [a, b]
    try:
        async with asyncio.timeout(120):
            # Settled: both hold partitions and together all of them.
            while not (a.holds() and b.holds() and len(a.holds() | b.holds()) == args.partitions):
                await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        killed = time.time()
        b.proc.send_signal(signal.SIGKILL)
        await b.proc.wait()
        restarted = await spawn(args, group, ids[1])
        members.append(restarted)
        async with asyncio.timeout(args.give_up):
            while True:
                # Work stalls until every partition is held by a live member again (the
                # kept member's own partitions too: a rebalance revokes them all).
                moved = restarted.assignments or a.assignments[-1][0] > killed
                if moved and len(a.holds() | restarted.holds()) == args.partitions:
                    latest = max(t for m in (a, restarted) for t, _ in m.assignments[-1:])
                    return max(0.0, latest - killed)
                await asyncio.sleep(0.02)
    finally:
        if args.verbose:
            for name, m in (("kept", a), ("restarted", members[-1])):
                seen = [(round(t - killed, 2), sorted(p)) for t, p in m.assignments if t > killed]
                print(json.dumps({name: seen}), file=sys.stderr, flush=True)
        for m in members:
            await stop(m)


def raw_update(n: int, sources: int) -> tuple[bytes, bytes]:
    """The key and value of the ``n``-th raw update, as the poller writes it."""
    from telex.events import content_hash, now_ms, update_id

    source, entry, text = f"s{n % sources}", f"e{n}", f"Update number {n} of the stall bench."
    at = now_ms()
    value = {
        "v": 1, "kind": "upsert", "id": update_id(source, entry), "source_id": source,
        "source_url": f"https://{source}.example/live", "entry_id": entry, "url": None,
        "title": None, "text": text, "html": None, "time_raw": None, "published": None,
        "page_date": None, "page_tz": None, "content_hash": content_hash(None, text),
        "detected_ms": at, "produced_ms": at,
    }  # fmt: skip
    return source.encode(), json.dumps(value).encode()


@dataclass
class StageProcess:
    """A ``telex <stage>`` process and, when watched, the log events it wrote (JSON lines)."""

    proc: asyncio.subprocess.Process
    port: int
    spawned: float
    events: list[dict[str, Any]] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            with contextlib.suppress(ValueError):
                line = json.loads(raw)
                if isinstance(line, dict) and "event" in line:
                    self.events.append(line)

    def first(self, event: str) -> dict[str, Any] | None:
        return next((e for e in self.events if e["event"] == event), None)


def log_time(line: dict[str, Any]) -> float:
    """The wall-clock time of a log line (its ``ts``, ms resolution, UTC)."""
    from datetime import datetime

    return datetime.fromisoformat(line["ts"].replace("Z", "+00:00")).timestamp()


async def spawn_stage(
    args: argparse.Namespace, env: dict[str, str], name: str, watched: bool = False
) -> StageProcess:
    """Start ``telex <stage>``; a watched one logs at info level and its lines are kept."""
    from telex.kafka.embedded import free_port

    port = free_port()
    extra = {"TELEX_HTTP_PORT": str(port), "TELEX_KAFKA_GROUP_INSTANCE_ID": name}
    if watched:
        extra |= {"TELEX_LOG_LEVEL": "info", "TELEX_LOG_FORMAT": "json"}
    spawned = time.time()
    proc = await asyncio.create_subprocess_exec(
        str(os.path.join(os.path.dirname(sys.executable), "telex")),
        args.stage,
        env={**env, **extra},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE if watched else asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    p = StageProcess(proc, port, spawned)
    if watched:
        p.reader = asyncio.create_task(p.read())
    return p


async def wait_ready(port: int, timeout: float = 120) -> None:
    import httpx

    async with httpx.AsyncClient(timeout=2) as client, asyncio.timeout(timeout):
        while True:
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.2)


async def read_wire(wire: Any, late: list[tuple[float, float, int]]) -> None:
    """(produced, seconds late, partition) of every wire event, until cancelled."""
    while True:
        batch = await wire.getmany(timeout_ms=200)
        now = time.time()
        for tp, records in batch.items():
            for record in records:
                at = json.loads(record.value)["data"]["timings"]["detected_ms"] / 1000
                late.append((at, now - at, tp.partition))


async def produce(args: argparse.Namespace, producer: Any, topic: str) -> None:
    """Raw updates at ``args.rate`` per second, over four sources per partition."""
    n, start = 0, time.monotonic()
    while True:
        while n < args.rate * (time.monotonic() - start):
            key, value = raw_update(n, 4 * args.partitions)
            await producer.send(topic, value, key=key)
            n += 1
        await asyncio.sleep(0.01)


# The phases of a restart, from the restarted process's log (seconds after the kill).
PHASES = ("spawned", "connected", "started", "assigned", "ready")


def phases(restarted: StageProcess, killed: float, stage: str) -> dict[str, float | None]:
    """When the restarted process reached each start-up phase, in seconds after the kill.

    connected: ``kafka.connected`` (imports done, cluster reached, capabilities probed);
    started: ``<stage>.started`` (its own start-up done: for the processor, enrichers loaded
    and clients connected, the group join going on meanwhile);
    assigned: the group gave it partitions (the ``<stage>.assigned`` line minus the seconds it
    took and waited for the start-up); ready: that line (its partitions' state restored).
    """
    out: dict[str, float | None] = dict.fromkeys(PHASES)
    out["spawned"] = restarted.spawned - killed
    for phase, event in (
        ("connected", "kafka.connected"),
        ("started", f"{stage}.started"),
    ):
        line = restarted.first(event)
        out[phase] = log_time(line) - killed if line else None
    assigned = [
        e for e in restarted.events if e["event"] == f"{stage}.assigned" and e.get("partitions")
    ]
    if assigned:
        ready = log_time(assigned[0]) - killed
        out["ready"] = ready
        took = float(assigned[0].get("seconds", 0.0))
        out["assigned"] = ready - took - float(assigned[0].get("waited_for_start_s", 0.0))
    return {k: round(v, 2) if v is not None else None for k, v in out.items()}


async def stage_run(args: argparse.Namespace, static: bool) -> dict[str, Any]:
    """One SIGKILL + restart of a processor under load; its start-up phases and the lateness
    of the updates around it."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    p = f"stall{uuid.uuid4().hex[:8]}"
    env = stage_env(args, p)
    names = (f"{p}-a", f"{p}-b") if static else ("", "")
    procs = [await spawn_stage(args, env, name) for name in names]
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, acks="all", linger_ms=0)
    wire = AIOKafkaConsumer(bootstrap_servers=args.bootstrap, enable_auto_commit=False)
    late: list[tuple[float, float, int]] = []  # (produced s, seconds late, wire partition)
    try:
        for proc in procs:
            await wait_ready(proc.port)
        await producer.start()
        await wire.start()
        tps = [TopicPartition(f"{p}.wire", n) for n in range(args.partitions)]
        wire.assign(tps)
        await wire.seek_to_end(*tps)

        tasks = [
            asyncio.create_task(read_wire(wire, late)),
            asyncio.create_task(produce(args, producer, f"{p}.raw")),
        ]
        try:
            await asyncio.sleep(5.0)
            killed = time.time()
            victim = procs[1].proc
            victim.send_signal(signal.SIGKILL)
            await victim.wait()
            procs[1] = restarted = await spawn_stage(args, env, names[1], watched=True)
            await asyncio.sleep(args.after)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        row: dict[str, Any] = phases(restarted, killed, args.stage)
        # The restarted process's partitions (raw p -> wire p): its first update out.
        mine: set[int] = set()
        for e in restarted.events:
            if e["event"] == f"{args.stage}.assigned" and e.get("partitions"):
                mine = {int(n) for n in str(e["partitions"]).split(",")}
                break
        since = killed + (row["assigned"] or 0.0)
        outs = [at + lag for at, lag, part in late if part in mine and at + lag >= since]
        row["first_out"] = round(min(outs) - killed, 2) if outs else None
        before = sorted(lag for at, lag, _ in late if at < killed)
        after = [(at, lag) for at, lag, _ in late if at >= killed]
        slow = [(at, lag) for at, lag, _ in late if at + lag >= killed and lag > 1.0]
        # Caught up: the last update more than a second late came out then (0: none was).
        row["caught_up"] = round(max(at + lag for at, lag in slow) - killed, 2) if slow else 0.0
        row |= {
            "worst_late_s": round(max((lag for _, lag in after), default=float("nan")), 2),
            "updates_after_kill": len(after),
            # How late updates were before the kill: on a loaded machine, the baseline.
            "before_kill_p99_s": round(before[int(0.99 * len(before))], 2) if before else 0.0,
            "load": round(os.getloadavg()[0], 1),
        }
        return row
    finally:
        await producer.stop()
        await wire.stop()
        await kill_all(procs)


def stage_env(args: argparse.Namespace, p: str) -> dict[str, str]:
    """The environment of the stage processes of one run: topics and groups of their own."""
    env = {
        **os.environ,
        "TELEX_KAFKA_BOOTSTRAP": args.bootstrap,
        "TELEX_TOPICS_RAW": f"{p}.raw",
        "TELEX_TOPICS_WIRE": f"{p}.wire",
        "TELEX_TOPICS_DLQ": f"{p}.dlq",
        "TELEX_TOPICS_SOURCES": f"{p}.sources",
        "TELEX_TOPICS_PARTITIONS": str(args.partitions),
        "TELEX_TOPICS_SOURCES_PARTITIONS": str(args.partitions),
        "TELEX_PROCESSOR_GROUP_ID": f"{p}.processor",
        "TELEX_POLLER_GROUP_ID": f"{p}.poller",
        "TELEX_NOTIFIER_GROUP_ID": f"{p}.notifier",
        "TELEX_NOTIFIER_TOPIC_WEBHOOKS": f"{p}.webhooks",
        "TELEX_NOTIFIER_TOPIC_RETRY": f"{p}.webhooks.retry",
        "TELEX_NOTIFIER_TOPIC_DLQ": f"{p}.webhooks.dlq",
        "TELEX_NOTIFIER_TOPIC_ATTEMPTS": f"{p}.webhooks.attempts",
        "TELEX_LOG_LEVEL": "warning",
    }
    if args.session_timeout_ms:
        env["TELEX_KAFKA_SESSION_TIMEOUT_MS"] = str(args.session_timeout_ms)
    return env


async def startup_run(args: argparse.Namespace, static: bool) -> dict[str, Any]:
    """One SIGKILL + restart of an idle poller or notifier: its start-up phases, and when its
    ``/readyz`` answers 200 again (nothing flows through it: the figure is the hand-over)."""
    import httpx

    p = f"stall{uuid.uuid4().hex[:8]}"
    env = stage_env(args, p)
    names = (f"{p}-a", f"{p}-b") if static else ("", "")
    procs = [await spawn_stage(args, env, name) for name in names]
    try:
        for proc in procs:
            await wait_ready(proc.port)
        await asyncio.sleep(2.0)
        killed = time.time()
        procs[1].proc.send_signal(signal.SIGKILL)
        await procs[1].proc.wait()
        procs[1] = restarted = await spawn_stage(args, env, names[1], watched=True)
        url = f"http://127.0.0.1:{restarted.port}/readyz"
        readyz: float | None = None
        async with httpx.AsyncClient(timeout=1) as client:
            while readyz is None and time.time() - killed < args.after:
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(url)).status_code == 200:
                        readyz = time.time() - killed
                await asyncio.sleep(0.05)
        row: dict[str, Any] = phases(restarted, killed, args.stage)
        row["ready"] = round(readyz, 2) if readyz is not None else None
        row["load"] = round(os.getloadavg()[0], 1)
        return row
    finally:
        await kill_all(procs)


async def kill_all(procs: list[StageProcess]) -> None:
    """SIGKILL every stage process of a run still alive, and stop reading their logs."""
    for proc in procs:
        if proc.proc.returncode is None:
            proc.proc.send_signal(signal.SIGKILL)
            await proc.proc.wait()
        if proc.reader is not None:
            await cancel_reader(proc.reader)


async def cancel_reader(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def stage_main(args: argparse.Namespace) -> None:
    results: dict[str, list[dict[str, Any]]] = {}
    for mode in args.modes.split(","):
        for _ in range(args.runs):
            run = stage_run if args.stage == "processor" else startup_run
            row = await run(args, mode == "static")
            results.setdefault(mode, []).append(row)
            print(json.dumps({"mode": mode, **row}), flush=True)
    summary: dict[str, Any] = {"broker": args.bootstrap, "stage": args.stage}
    for mode, rows in results.items():
        for key in (*PHASES, "first_out", "caught_up", "worst_late_s"):
            values = [r[key] for r in rows if r.get(key) is not None]
            summary[f"{mode}_{key}_median"] = statistics.median(values) if values else None
    print(json.dumps(summary), flush=True)


async def main_async(args: argparse.Namespace) -> None:
    from telex.config import Config, load
    from telex.kafka import Clients, TopicSpec, ensure_topics
    from telex.kafka.embedded import EmbeddedBroker
    from telex.kafka.settings import session_timeout_ms

    broker = None
    if not args.bootstrap:
        broker = EmbeddedBroker()
        await broker.start()
        args.bootstrap = broker.bootstrap
    if args.stage:
        try:
            await stage_main(args)
        finally:
            if broker is not None:
                await broker.stop()
        return
    try:
        clients = await Clients.connect(Config(), args.bootstrap)
        args.topic = f"stall-{uuid.uuid4().hex[:8]}"
        await ensure_topics(clients, [TopicSpec(args.topic, args.partitions)])
        results: dict[str, list[float]] = {}
        for mode in args.modes.split(","):
            for _ in range(args.runs):
                stall = await one_run(args, mode == "static")
                results.setdefault(mode, []).append(round(stall, 2))
                print(json.dumps({"mode": mode, "stall_s": round(stall, 2)}), flush=True)
        summary = {
            "broker": "embedded" if broker else args.bootstrap,
            "memory_only": clients.capabilities.memory_only,
            "session_timeout_ms": session_timeout_ms(
                load(None, dict(os.environ)).kafka, clients.capabilities.memory_only
            )
            if not args.session_timeout_ms
            else args.session_timeout_ms,
            **{f"{m}_median_s": statistics.median(v) for m, v in results.items()},
            **{f"{m}_runs_s": v for m, v in results.items()},
        }
        print(json.dumps(summary), flush=True)
    finally:
        if broker is not None:
            await broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", nargs="?", default="", help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", default="", help="Kafka to use (default: embedded)")
    parser.add_argument("--topic", default="", help=argparse.SUPPRESS)
    parser.add_argument("--group", default="", help=argparse.SUPPRESS)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--session-timeout-ms", type=int, default=0, help="default: telex's")
    parser.add_argument("--modes", default="dynamic,static", help="dynamic,static")
    parser.add_argument("--verbose", action="store_true", help="assignments after the kill")
    parser.add_argument("--give-up", type=float, default=90.0, help="seconds per run")
    parser.add_argument(
        "--stage",
        choices=["processor", "poller", "notifier"],
        help="kill a telex stage (the processor under load; a poller or notifier idle)",
    )
    parser.add_argument("--rate", type=float, default=20.0, help="updates/s (with --stage)")
    parser.add_argument("--after", type=float, default=30.0, help="seconds watched after kill")
    args = parser.parse_args()
    if args.role == "_member":
        asyncio.run(member(args))
    else:
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
