"""The gateway's own hop at a paced rate, side by side with its peers, through Kafka.

For each load (``RATE:SUBSCRIBERS``, e.g. 5 events/s to 1,000 subscribers) and each server
(``floor``: a raw asyncio broadcast of the same frames; ``websockets``: that library's server and
``broadcast()``; ``telex``: ``telex gateway``), this script starts the server on a fresh wire
topic (pinned to core 0), opens the subscribers from this process (pinned to core 1), produces
600 B events at the rate for ``--seconds`` and measures:

- produce -> frame received, p50/p99, on 100 evenly spread connections;
- the Kafka hop alone: produce -> received by a plain consumer of the same topic in this
  process, p50/p99, in the same phase;
- the server's own hop as a client sees it ("net"): for each event and sampled connection,
  frame received - the same event received by that plain consumer (both in this process,
  on one clock and one event loop, so this process's own scheduling delays mostly cancel);
- the server's CPU time over the paced phase per delivery (idle work included: at a paced
  rate there is nothing to coalesce, and that is what is measured).

The clients, the server launcher and the baselines are ``bench/fanout.py``'s and
``bench/servers.py``'s. Run by hand::

    .venv/bin/python bench/gateway_paced.py --bootstrap HOST:PORT --runs 3
    .venv/bin/python bench/gateway_paced.py --loads 5:1000 1:10000 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fanout import (
    PARTITIONS,
    Client,
    connect,
    cpu_seconds,
    kafka,
    phase,
    raise_fd_limit,
    shutdown,
    start_server,
)
from telex.config import Config
from telex.kafka import Clients, TopicSpec, ensure_topics
from telex.kafka.embedded import free_port

SERVERS = ("floor", "websockets", "telex")
# event() is 367 bytes of JSON with no text: the text pads it to the payload size.
_EVENT_BASE = 367


def quantiles(values: list[float]) -> tuple[float, float]:
    """p50 and p99 in ms of latencies in seconds (nan when empty)."""
    if not values:
        return float("nan"), float("nan")
    ordered = sorted(values)
    return 1000 * ordered[len(ordered) // 2], 1000 * ordered[int(len(ordered) * 0.99)]


class PairingClient(Client):
    """fanout's client, keeping when each sampled frame's event arrived (by event id)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.arrivals: list[tuple[bytes, int]] = []

    def _parse(self, data: bytes) -> None:
        before = len(self.buf) + len(data)
        now = time.time_ns()
        text = bytes(self.buf) + data
        super()._parse(data)
        consumed = before - len(self.buf)
        at = 0
        while True:
            found = text.find(b'"id":"e_', at, consumed)
            if found < 0:
                break
            self.arrivals.append((text[found + 8 : found + 32], now))
            at = found + 8


async def kafka_hop(
    bootstrap: str, topic: str, seen: list[float], arrived: dict[bytes, int]
) -> None:
    """Produce -> consumed latency of every record of ``topic`` from its end, until cancelled;
    ``arrived``: when each event (by id) was consumed."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            now = time.time_ns()
            for records in batch.values():
                for record in records:
                    event = orjson.loads(record.value)
                    seen.append((now - event["data"]["sent_ns"]) / 1e9)
                    arrived[event["id"][2:].encode()] = now
    finally:
        await consumer.stop()


async def measure(
    kind: str, rate: float, n: int, bootstrap: str, args: argparse.Namespace, run: int
) -> dict[str, Any]:
    topic = f"paced.{kind}.{n}.{run}.{time.time_ns()}"
    await ensure_topics(Clients(Config(), bootstrap), [TopicSpec(topic, PARTITIONS)])
    port = free_port()
    proc = await start_server(kind, port, bootstrap, topic, n, args.pin)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=0)
    await producer.start()
    clients: list[PairingClient] = []
    hop: list[float] = []
    arrived: dict[bytes, int] = {}
    pad = max(0, args.payload - _EVENT_BASE)
    try:
        path = "/v1/stream?backlog=0" if kind == "telex" else "/v1/stream"
        clients: list[PairingClient] = await connect(n, port, path, PairingClient)
        await asyncio.sleep(2.0)
        warm, _ = await phase(clients, producer, topic, 3, None, "warmup", pad, 60)
        await asyncio.sleep(1.0)
        for client in clients:
            client.arrivals.clear()
        tail = asyncio.create_task(kafka_hop(bootstrap, topic, hop, arrived))
        await asyncio.sleep(1.0)  # the tail has its positions
        count = max(5, int(rate * args.seconds))
        cpu0 = cpu_seconds(proc.pid)
        state, _ = await phase(clients, producer, topic, count, rate, "paced", pad, 60)
        cpu = cpu_seconds(proc.pid) - cpu0
        tail.cancel()
        await asyncio.gather(tail, return_exceptions=True)
        received = sum(c.frames - c.base for c in clients)
        p50, p99 = quantiles(state.latencies)
        k50, k99 = quantiles(hop)
        net = [
            (at - arrived[ident]) / 1e9
            for client in clients
            for ident, at in client.arrivals
            if ident in arrived
        ]
        n50, n99 = quantiles(net)
        return {
            "server": kind,
            "rate": rate,
            "subscribers": n,
            "p50_ms": p50,
            "p99_ms": p99,
            "kafka_p50_ms": k50,
            "kafka_p99_ms": k99,
            "net_p50_ms": n50,
            "net_p99_ms": n99,
            "us_per_delivery": 1e6 * cpu / received if received else float("nan"),
            "complete": state.done == n and warm.done == n,
            "lost": count * n - received,
            "samples": len(state.latencies),
            "loadavg": os.getloadavg(),
        }
    finally:
        await shutdown(clients, producer, proc)


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| load | server | p50 ms | p99 ms | Kafka hop p50/p99 | net p50 / p99 | vs floor "
        "| CPU µs/delivery | vs floor | complete |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for rate, n in sorted({(r["rate"], r["subscribers"]) for r in rows}, key=lambda x: x[1]):
        med: dict[str, dict[str, float]] = {}
        for kind in SERVERS:
            rs = [r for r in rows if (r["rate"], r["subscribers"], r["server"]) == (rate, n, kind)]
            if rs:
                keys = (
                    "p50_ms",
                    "p99_ms",
                    "kafka_p50_ms",
                    "kafka_p99_ms",
                    "net_p50_ms",
                    "net_p99_ms",
                )
                med[kind] = {k: statistics.median(r[k] for r in rs) for k in keys}
                med[kind]["us"] = statistics.median(r["us_per_delivery"] for r in rs)
                med[kind]["complete"] = all(r["complete"] for r in rs)
        floor = med.get("floor")
        for kind, m in med.items():
            net = f"{m['net_p99_ms'] / floor['net_p99_ms']:.2f}" if floor else "-"
            cpu = f"{m['us'] / floor['us']:.2f}" if floor else "-"
            out.append(
                f"| {rate:g}/s to {n:,} | {kind} | {m['p50_ms']:.1f} | {m['p99_ms']:.1f} | "
                f"{m['kafka_p50_ms']:.1f} / {m['kafka_p99_ms']:.1f} | "
                f"{m['net_p50_ms']:.1f} / {m['net_p99_ms']:.1f} | "
                f"{net} | {m['us']:.1f} | {cpu} | {'yes' if m['complete'] else 'NO'} |"
            )
    return "\n".join(out)


async def main(args: argparse.Namespace) -> None:
    loads = [(float(r), int(n)) for r, n in (item.split(":") for item in args.loads)]
    raise_fd_limit(max(n for _, n in loads) + 1000)
    rows = []
    async with kafka(args.bootstrap, args.pin) as bootstrap:
        for run in range(args.runs):
            for rate, n in loads:
                for kind in args.servers:
                    row = await measure(kind, rate, n, bootstrap, args, run)
                    rows.append(row)
                    print(orjson.dumps(row).decode(), flush=True)
    print(table(rows))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loads", nargs="+", default=["5:1000", "1:10000"], help="RATE:SUBS")
    parser.add_argument("--servers", nargs="+", default=list(SERVERS), choices=SERVERS)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0, help="of paced events per load")
    parser.add_argument("--payload", type=int, default=600, help="bytes of JSON per event")
    parser.add_argument("--bootstrap", default="", help="Kafka to use (default: embedded)")
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="do not pin server and client to cores 0 and 1",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
