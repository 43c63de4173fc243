"""Fan-out benchmark: one gateway process against the floor and the naive loop, same run.

For each subscriber count and each server (``floor``: raw asyncio broadcast; ``naive``: the
FastAPI loop; ``telex``: ``telex gateway``), this script

1. starts the server on its own fresh wire topic, pinned to core 0 (``taskset``);
2. opens N WebSocket connections from this process, pinned to core 1, and measures the
   server's resident memory per idle, subscribed connection;
3. throughput: produces a burst of events and counts the frames every client receives until
   all have everything (deliveries per second);
4. latency: produces events at a fixed, moderate rate and measures produce -> frame received
   on 100 evenly spread connections (p50, p99).

Bounded: every phase has a timeout. Run by hand (not in ``make test``)::

    .venv/bin/python bench/fanout.py --subscribers 1000 10000 --runs 3

The client is deliberately lean (a raw asyncio protocol that walks frame headers), so that it
is not the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from telex.config import Config, load
from telex.kafka import Clients, TopicSpec, ensure_topics
from telex.kafka.embedded import EmbeddedBroker, free_port
from telex.testing import TELEX, child_environ

HERE = Path(__file__).resolve().parent
SERVERS = (
    "floor",
    "floor_batch",
    "naive",
    "telex_base",
    "telex_base_uvloop",
    "telex",
    "telex_uvloop",
)
# The telex servers: this checkout's gateway and the one of ``--base`` (another checkout, same
# environment, for before/after in one run), each on the stock loop and on uvloop.
TELEX_KINDS = ("telex", "telex_base", "telex_base_uvloop", "telex_uvloop")
_RUN_ON_UVLOOP = (
    "import asyncio, sys, uvloop; from telex.cli import main; sys.argv[0] = 'telex'; "
    "asyncio.set_event_loop_policy(uvloop.EventLoopPolicy()); sys.exit(main())"
)
SAMPLED = 100
PARTITIONS = 3


def raise_fd_limit(needed: int) -> int:
    """Raise the soft open-files limit to the hard one; children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < needed:
        raise SystemExit(f"ulimit -n is {soft} (hard {hard}); {needed} sockets need more")
    return soft


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass
class Phase:
    target: int = 0  # frames each client must receive
    done: int = 0
    clients: int = 0
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    latencies: list[float] = field(default_factory=list)


class Client(asyncio.Protocol):
    """A WebSocket client that counts frames by walking headers; sampled ones read payloads."""

    def __init__(self, path: str, port: int, sampled: bool, opened: asyncio.Future[None]) -> None:
        self.path = path
        self.port = port
        self.sampled = sampled
        self.opened = opened
        self.open = False
        self.buf = bytearray()
        self.skip = 0
        self.frames = 0
        self.base = 0
        self.phase: Phase | None = None
        self.transport: Any = None
        self.seen: set[bytes] = set()  # event ids, sampled clients only: duplicates show
        self.dupes = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(
            f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed during handshake: {exc}"))

    def data_received(self, data: bytes) -> None:
        if not self.open:
            self.buf += data
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if b" 101 " not in self.buf[: self.buf.find(b"\r\n")]:
                self.opened.set_exception(ConnectionError(bytes(self.buf[:200]).decode()))
                return
            self.open = True
            data = bytes(self.buf[end + 4 :])
            self.buf = bytearray()
            self.opened.set_result(None)
        if self.sampled:
            self._parse(data)
        else:
            self._count(data)
        phase = self.phase
        if phase is not None and self.frames - self.base >= phase.target:
            self.phase = None
            phase.done += 1
            if phase.done >= phase.clients:
                phase.finished.set()

    def _count(self, data: bytes) -> None:
        n = len(data)
        if self.skip >= n:
            self.skip -= n
            return
        if self.buf:
            data = bytes(self.buf) + data[self.skip :]
            self.buf = bytearray()
            i = 0
        else:
            i = self.skip
        n = len(data)
        self.skip = 0
        frames = 0
        while i < n:
            size = data[i + 1] & 127 if n - i >= 2 else 127
            head = 2 if size < 126 else 4 if size == 126 else 10
            if n - i < head:
                self.buf = bytearray(data[i:])  # a header split across reads
                break
            if size == 126:
                size = int.from_bytes(data[i + 2 : i + 4], "big")
            elif size == 127:
                size = int.from_bytes(data[i + 2 : i + 10], "big")
            if data[i] & 0x0F in (1, 2):  # text or binary: a protocol ping is no delivery
                frames += 1
            i += head + size
        self.frames += frames
        if i > n:
            self.skip = i - n

    def _parse(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        i = 0
        now = time.time_ns()
        while len(buf) - i >= 2:
            size = buf[i + 1] & 127
            head = 2 if size < 126 else 4 if size == 126 else 10
            if len(buf) - i < head:
                break
            if size == 126:
                size = int.from_bytes(buf[i + 2 : i + 4], "big")
            elif size == 127:
                size = int.from_bytes(buf[i + 2 : i + 10], "big")
            if len(buf) - i < head + size:
                break
            payload = bytes(buf[i + head : i + head + size])
            opcode = buf[i] & 0x0F
            i += head + size
            if opcode not in (1, 2):
                continue
            self.frames += 1
            start = payload.find(b'"id":"e_')
            if start >= 0:
                ident = payload[start + 8 : start + 32]
                if ident in self.seen:
                    self.dupes += 1
                self.seen.add(ident)
            at = payload.find(b'"sent_ns":')
            if at >= 0 and self.phase is not None:
                sent = int(payload[at + 10 : payload.find(b",", at)])
                self.phase.latencies.append((now - sent) / 1e9)
        del buf[:i]


_ids = itertools.count()


def event(n: int, run: str, pad: int) -> bytes:
    """A wire event of realistic size; ``sent_ns`` is read back by the sampled clients."""
    n = next(_ids)  # unique across phases, so that sampled clients can spot duplicates
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": f"e_{n:024x}",
            "source": "/telex/sources/bench",
            "type": "telex.update.created",
            "time": "2024-01-18T08:29:00Z",
            "subject": f"u_{n:020x}",
            "datacontenttype": "application/json",
            "data": {
                "sent_ns": time.time_ns(),
                "id": f"u_{n:020x}",
                "source_id": f"bench-{n % PARTITIONS}",
                "run": run,
                "text": "x" * pad,
                "tags": ["bench"],
                "language": "en",
            },
        }
    )


async def start_server(
    kind: str, port: int, bootstrap: str, topic: str, n: int, pin: bool, base: str = ""
) -> Any:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if kind in TELEX_KINDS:
        settings = {
            "TELEX_KAFKA_BOOTSTRAP": bootstrap,
            "TELEX_TOPICS_WIRE": topic,
            "TELEX_TOPICS_RAW": topic + ".raw",
            "TELEX_TOPICS_DLQ": topic + ".dlq",
            "TELEX_TOPICS_PARTITIONS": str(PARTITIONS),
            "TELEX_HTTP_PORT": str(port),
            "TELEX_GATEWAY_MAX_CONNECTIONS": str(n + 100),
            "TELEX_GATEWAY_BACKLOG": "0",
            "TELEX_GATEWAY_HEARTBEAT_INTERVAL": "600",
            "TELEX_GATEWAY_IDLE_TIMEOUT": "600",
            # The client does not answer protocol pings (nor do the baselines send any).
            "TELEX_GATEWAY_PING_INTERVAL": "3600",
            "TELEX_LOG_LEVEL": "warning",
        }
        # The servers here are spawned their own way (pinned, from a baseline checkout, on
        # uvloop): only telex's environment is the shared one.
        env = child_environ(load(None, settings), {"PYTHONUNBUFFERED": "1"})
        argv = [*TELEX, "gateway"]
        if kind.startswith("telex_base"):
            if not base:
                raise SystemExit(f"{kind} needs --base (a checkout of the baseline commit)")
            env["PYTHONPATH"] = str(Path(base) / "services")
            argv = [sys.executable, "-m", "telex.cli", "gateway"]
        if kind.endswith("uvloop"):
            argv = [sys.executable, "-c", _RUN_ON_UVLOOP, "gateway"]
        elif kind == "telex" and os.environ.get("BENCH_PROFILE"):
            argv = [sys.executable, os.environ["BENCH_PROFILE"]]
    else:
        argv = [sys.executable, str(HERE / "servers.py"), kind, str(port), bootstrap, topic]
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once per measurement, outside timing
        ["taskset", "-c", "0", *argv] if pin else argv,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} exited: {proc.stderr.read().decode()[-2000:]}")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await asyncio.sleep(1.0)  # the Kafka reader starts with the listener
            return proc
        await asyncio.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{kind} did not listen on {port}")


async def connect(
    n: int, port: int, path: str, client: Callable[..., Client] = Client
) -> list[Any]:
    """``n`` subscribers (every ``n // SAMPLED``-th sampled), 250 at a time; ``client`` makes
    each one's protocol from (path, port, sampled, opened)."""
    loop = asyncio.get_running_loop()
    step = max(1, n // SAMPLED)
    clients: list[Any] = []
    for start in range(0, n, 250):
        batch = []
        for i in range(start, min(n, start + 250)):
            opened: asyncio.Future[None] = loop.create_future()
            batch.append((opened, loop.create_connection(
                lambda o=opened, s=(i % step == 0): client(path, port, s, o), "127.0.0.1", port
            )))  # fmt: skip
        results = await asyncio.gather(*(c for _, c in batch))
        await asyncio.wait_for(asyncio.gather(*(o for o, _ in batch)), 60)
        clients.extend(protocol for _, protocol in results)
    return clients


async def phase(
    clients: list[Client], producer: AIOKafkaProducer, topic: str, count: int, rate: float | None,
    run: str, pad: int, timeout: float,
) -> tuple[Phase, float]:  # fmt: skip
    """Produce ``count`` events (a burst, or at ``rate``/s); elapsed until all received."""
    state = Phase(target=count, clients=len(clients))
    for client in clients:
        client.base = client.frames
        client.phase = state
    start = time.perf_counter()
    sends = []
    for i in range(count):
        if rate:
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        key = f"bench-{i % PARTITIONS}".encode()
        sends.append(await producer.send(topic, event(i, run, pad), key=key))
    await asyncio.gather(*sends)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(state.finished.wait(), timeout)
    elapsed = time.perf_counter() - start
    for client in clients:
        client.phase = None
    return state, elapsed


async def measure(
    kind: str, n: int, bootstrap: str, args: argparse.Namespace, run: int
) -> dict[str, Any]:
    topic = f"bench.{kind}.{n}.{run}.{time.time_ns()}"
    await ensure_topics(Clients(Config(), bootstrap), [TopicSpec(topic, PARTITIONS)])
    port = free_port()
    proc = await start_server(kind, port, bootstrap, topic, n, args.pin, args.base)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=5)
    await producer.start()
    clients: list[Client] = []
    try:
        rss0 = rss_bytes(proc.pid)
        path = "/v1/stream?backlog=0" if kind in TELEX_KINDS else "/v1/stream"
        clients = await connect(n, port, path)
        await asyncio.sleep(2.0)
        rss1 = rss_bytes(proc.pid)
        warm, _ = await phase(clients, producer, topic, 3, None, "warmup", args.pad, 60)
        await asyncio.sleep(0.5)  # nothing of the warm-up may be counted as throughput
        burst = max(20, args.deliveries // n)
        cpu0 = cpu_seconds(proc.pid)
        state, elapsed = await phase(clients, producer, topic, burst, None, "tp", args.pad, 90)
        cpu = cpu_seconds(proc.pid) - cpu0
        received = sum(c.frames - c.base for c in clients)
        count = max(5, int(args.latency_deliveries / n * args.latency_seconds))
        rate = count / args.latency_seconds
        lat, _ = await phase(clients, producer, topic, count, rate, "lat", args.pad, 60)
        sampled = sorted(lat.latencies)
        expected = count * sum(1 for c in clients if c.sampled)
        return {
            "server": kind,
            "subscribers": n,
            "deliveries_per_s": received / elapsed,
            "deliveries_per_cpu_s": received / cpu if cpu > 0 else float("nan"),
            "server_cpu_share": cpu / elapsed,
            "complete": state.done == n,
            "lost": burst * n - received,
            "warmup_complete": warm.done == n,
            "duplicates_seen": sum(c.dupes for c in clients),
            "p50_ms": 1000 * sampled[len(sampled) // 2] if sampled else float("nan"),
            "p99_ms": 1000 * sampled[int(len(sampled) * 0.99)] if sampled else float("nan"),
            "latency_rate": rate,
            "latency_samples": f"{len(sampled)}/{expected}",
            "kb_per_conn": (rss1 - rss0) / n / 1024,
        }
    finally:
        await shutdown(clients, producer, proc)


async def shutdown(clients: list[Any], producer: Any, proc: subprocess.Popen[bytes]) -> None:
    """Drop every subscriber, stop the producer, and stop the server's process group."""
    for client in clients:
        if client.transport is not None:
            client.transport.abort()
    await producer.stop()
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| subscribers | server | deliveries/s | vs floor | deliveries/CPU-s | vs floor "
        "| p50 ms | p99 ms | KB/conn |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in sorted({r["subscribers"] for r in rows}):
        group = {
            s: [r for r in rows if r["subscribers"] == n and r["server"] == s] for s in SERVERS
        }
        floor = cpu_floor = 0.0
        if group["floor"]:
            floor = statistics.median(r["deliveries_per_s"] for r in group["floor"])
            cpu_floor = statistics.median(r["deliveries_per_cpu_s"] for r in group["floor"])
        for server in SERVERS:
            rs = group[server]
            if not rs:
                continue
            keys = ("deliveries_per_s", "deliveries_per_cpu_s", "p50_ms", "p99_ms", "kb_per_conn")
            med = {k: statistics.median(r[k] for r in rs) for k in keys}
            ratio = f"{med['deliveries_per_s'] / floor:.0%}" if floor else "-"
            cpu = med["deliveries_per_cpu_s"]
            cpu_ratio = f"{cpu / cpu_floor:.0%}" if cpu_floor else "-"
            out.append(
                f"| {n:,} | {server} | {med['deliveries_per_s']:,.0f} | {ratio} | "
                f"{cpu:,.0f} | {cpu_ratio} | "
                f"{med['p50_ms']:.1f} | {med['p99_ms']:.1f} | {med['kb_per_conn']:.1f} |"
            )
    return "\n".join(out)


def versus_base(rows: list[dict[str, Any]]) -> str:
    """This checkout's gateway (both loops) against ``telex_base``: medians and ratios."""
    keys = ("deliveries_per_s", "deliveries_per_cpu_s", "us_per_delivery", "kb_per_conn")
    out = [
        "| subscribers | server | deliveries/s | ratio | deliveries/CPU-s | ratio "
        "| CPU µs/delivery | ratio | KB/conn | ratio |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in sorted({r["subscribers"] for r in rows}):
        med: dict[str, dict[str, float]] = {}
        for kind in TELEX_KINDS:
            rs = [r for r in rows if r["subscribers"] == n and r["server"] == kind]
            if rs:
                for r in rs:
                    r["us_per_delivery"] = 1e6 / r["deliveries_per_cpu_s"]
                med[kind] = {k: statistics.median(r[k] for r in rs) for k in keys}
        base = med.get("telex_base")
        if base is None:
            continue
        for kind in ("telex_base", "telex_base_uvloop", "telex", "telex_uvloop"):
            if kind not in med:
                continue
            m = med[kind]
            cells = [f"{n:,}", kind]
            for k, fmt in zip(keys, ("{:,.0f}", "{:,.0f}", "{:.2f}", "{:.1f}"), strict=True):
                cells += [fmt.format(m[k]), f"{m[k] / base[k]:.2f}"]
            out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


@contextlib.asynccontextmanager
async def kafka(bootstrap: str | None, pin: bool) -> AsyncIterator[str]:
    """The Kafka a run uses: ``bootstrap``, else an embedded broker for the run. With ``pin``,
    this process (the subscribers) and the embedded broker share core 1, the server has core 0."""
    if pin:
        os.sched_setaffinity(0, {1})
    if bootstrap:
        yield bootstrap
        return
    broker = EmbeddedBroker()
    await broker.start()
    try:
        if pin and broker.pid is not None:
            os.sched_setaffinity(broker.pid, {1})
        yield broker.bootstrap
    finally:
        await broker.stop()


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    raise_fd_limit(max(args.subscribers) + 1000)
    rows = []
    async with kafka(args.bootstrap, args.pin) as bootstrap:
        for run in range(args.runs):
            for n in args.subscribers:
                for kind in args.servers:
                    row = await measure(kind, n, bootstrap, args, run)
                    rows.append(row)
                    print(orjson.dumps(row).decode(), flush=True)
    print(table(rows))
    if any(r["server"] == "telex_base" for r in rows):
        print()
        print(versus_base(rows))
    return rows


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument(
        "--servers",
        nargs="+",
        default=["floor", "floor_batch", "naive", "telex"],
        choices=SERVERS,
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--deliveries", type=int, default=1_000_000, help="per throughput burst")
    parser.add_argument("--latency-deliveries", type=int, default=50_000, help="per second")
    parser.add_argument("--latency-seconds", type=float, default=4.0)
    parser.add_argument("--pad", type=int, default=400, help="bytes of text per event")
    parser.add_argument("--bootstrap", default="", help="Kafka to use (default: embedded)")
    parser.add_argument("--base", default="", help="checkout of the baseline for telex_base")
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="do not pin server and client to cores 0 and 1 (smoke test)",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    try:
        import uvloop  # the measuring client only: the servers run on plain asyncio

        uvloop.run(main(parse()))
    except ImportError:
        asyncio.run(main(parse()))
