"""How long a consumer-group member's share of the work stalls when it is SIGKILLed and
restarted at once: dynamic against static membership (``[kafka] group_instance_id``).

Two members of one group (telex's own consumer settings, from ``telex.kafka``) share a topic's
partitions. One is killed with SIGKILL and started again straight away; the stall is the time
from the kill until every partition the dead member held is assigned to a live member again.

    .venv/bin/python bench/restart_stall.py                      # embedded broker
    .venv/bin/python bench/restart_stall.py --bootstrap host:9092 --runs 5
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
    args = parser.parse_args()
    if args.role == "_member":
        asyncio.run(member(args))
    else:
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
