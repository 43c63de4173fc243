"""Soak benchmark: the whole pipeline as processes under a steady load, for minutes.

What runs, each in its own process, all on 127.0.0.1:

- the embedded broker (or ``--bootstrap``);
- ``telex poller``, ``telex processor`` (``--processors`` of them), ``telex gateway``,
  ``telex notifier``, configured by a TOML file and ``TELEX_*`` variables as an operator would;
- the sources: ``--sources`` JSON Feeds on one local HTTP server that gain entries at
  ``--rate`` per second in all, spread at random over the sources, each feed showing its
  latest entries (ETag, 304 when unchanged);
- ``--client-procs`` processes holding ``--subscribers`` WebSocket subscribers between them:
  a few (``--firehose``) take the whole wire, the others one of ``--views`` filtered views
  (1-5 sources each, popularity skewed): see "The subscriber mix" below;
- one process with ``--receivers`` webhook receivers, each subscribed through the notifier's
  API with a filter of 2 sources.

Every entry's id carries its source, its sequence number in that source and the moment it was
published, so that every subscriber and receiver checks, per source, that it got every entry of
its filter, in order (WebSocket), none twice, and measures latency: ``timings.detected_ms`` (the
poller saw it) to received, and published at the source to received (adds the poll interval).
Every 5 s the orchestrator samples RSS (``/proc/PID/status``) and CPU time of every process,
and the processor's consumer lag. At the end: warnings and errors in every telex log, and the
services' own counters (dead letters, resyncs, slow disconnects, retries).

The subscriber mix: 5,000 subscribers that all take the whole wire at 1,000 events/s would be
5 M frames/s to write and to parse, far beyond two cores (the gateway's fan-out benchmark
measures its ceiling instead). A newsroom audience is not like that: a few wire-desk screens
take everything, most people follow one live story, i.e. a few sources, and popular views are
shared by many (embedded live widgets, desk dashboards). The default is 2 % firehose and the
rest spread over 250 views with a Zipf popularity: about 1 + 5,000 x 3/200 ~= 100+75 frames per
event, and 250 distinct filters that the gateway evaluates per event.

Bounded: the run stops by itself (``--duration``, then at most ``--drain`` seconds for the
pipeline to deliver what was published), every child gets SIGKILL if this process dies
(``PR_SET_PDEATHSIG``), and Ctrl-C or SIGTERM stops everything. Writes a readable summary and a
JSON file; ``--check`` exits 1 on loss, duplicates, disorder or resyncs.

    .venv/bin/python bench/soak.py                      # 1,000/s, 5,000 subs, 50 hooks, 600 s
    .venv/bin/python bench/soak.py --duration 60 --rate 100 --check

Sizing: at 1,000 updates/s the processor alone needs about two cores (~600 enriched updates/s
per core), so give it ``--processors 3`` (the raw and wire topics get as many partitions); the
default mix is ~180 frames per update, ~180,000 frames/s for the subscriber processes to parse
at ~16 us each: ``--client-procs 4``. Measured on 2 shared cores, the whole run costs ~13 ms of
CPU per update (bench/RESULTS.md): plan for 12 or more cores at 1,000/s. "rate held" in the
summary means the processor's backlog stayed under two seconds of updates through the last
fifth of the run and everything arrived within ten seconds after the sources stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import math
import os
import platform
import random
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the other benchmarks' pieces, when run as a script

from fanout import cpu_seconds, raise_fd_limit, rss_bytes  # noqa: E402
from telex.config import load  # noqa: E402
from telex.testing import child_environ  # noqa: E402
from webhook_receivers import serve as serve_receivers  # noqa: E402

TELEX = str(Path(sys.executable).with_name("telex"))
ROLES = ("processor", "gateway", "notifier", "poller")
SAMPLE_EVERY = 5.0
MINUTE = 60.0
SETTINGS = (
    "duration", "rate", "sources", "subscribers", "receivers", "firehose", "views",
    "client_procs", "processors", "partitions", "poll_interval", "window", "seed",
)  # fmt: skip


# Shared by the children ----------------------------------------------------------------------


def source_id(index: int) -> str:
    return f"soak-s{index:03d}"


def entry_id(index: int, seq: int, published_ms: int) -> str:
    """``s<source>.<seq>.<published ms>``: what every checker needs, in the id itself."""
    return f"s{index}.{seq}.{published_ms}"


def parse_entry(text: bytes) -> tuple[int, int, int]:
    """(source index, seq, published ms) of an :func:`entry_id`."""
    src, seq, ms = text[1:].split(b".")
    return int(src), int(seq), int(ms)


def now_ms() -> float:
    return time.time_ns() / 1e6


async def commands() -> AsyncIterator[str]:
    """Lines from the orchestrator on stdin; ends at EOF (the orchestrator is gone)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        yield line.decode().strip()


def answer(payload: Any) -> None:
    sys.stdout.write(orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS).decode() + "\n")
    sys.stdout.flush()


class Latencies:
    """Whole-millisecond histograms per minute of the run: cheap to add to, exact to merge."""

    def __init__(self) -> None:
        self.t0_ms = 0.0
        self.detected: dict[int, Counter[int]] = {}
        self.published: dict[int, Counter[int]] = {}
        self.processed: dict[int, Counter[int]] = {}

    def add(self, now: float, detected_ms: int, published_ms: int, processed_ms: int) -> None:
        """One delivery received at ``now`` (unix ms): its age since the poller detected it,
        since the source published it, and since the processor emitted it."""
        minute = int((now - self.t0_ms) / 60_000)
        hist = self.detected.get(minute)
        if hist is None:
            hist = self.detected[minute] = Counter()
            self.published[minute] = Counter()
            self.processed[minute] = Counter()
        hist[max(0, int(now - detected_ms))] += 1
        self.published[minute][max(0, int(now - published_ms))] += 1
        self.processed[minute][max(0, int(now - processed_ms))] += 1

    def dump(self) -> dict[str, Any]:
        return {
            "detected": {m: dict(h) for m, h in self.detected.items()},
            "published": {m: dict(h) for m, h in self.published.items()},
            "processed": {m: dict(h) for m, h in self.processed.items()},
        }


# Child: the sources --------------------------------------------------------------------------


async def child_sources(args: argparse.Namespace) -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from telex.replay.seed import load_seed
    from telex.runtime import serve_http

    rng = random.Random(args.seed)
    paragraphs = [p for e in load_seed().entries for p in e.paragraphs]
    feeds: list[deque[dict[str, Any]]] = [deque(maxlen=args.window) for _ in range(args.sources)]
    counts = [0] * args.sources
    cache: dict[int, bytes] = {}
    per_minute: Counter[int] = Counter()
    state = {"t0": 0.0, "published": 0, "polls": 0, "not_modified": 0}

    def publish(index: int) -> None:
        seq = counts[index]
        counts[index] += 1
        ms = time.time_ns() // 1_000_000
        text = " ".join(rng.sample(paragraphs, 2)) + f" ({source_id(index)} #{seq})"
        feeds[index].appendleft(
            {
                "id": entry_id(index, seq, ms),
                "url": f"https://soak.example/{index}#{seq}",
                "content_text": text,
                "content_html": "<p>" + text.replace("\n\n", "</p><p>") + "</p>",
                "date_published": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000))
                + f".{ms % 1000:03d}Z",
            }
        )
        cache.pop(index, None)
        state["published"] += 1
        per_minute[int((time.monotonic() - state["t0"]) / MINUTE)] += 1

    async def feed(request: Request) -> Response:
        index = int(request.path_params["i"])
        state["polls"] += 1
        etag = f'"{index}-{counts[index]}"'
        if request.headers.get("if-none-match") == etag:
            state["not_modified"] += 1
            return Response(status_code=304, headers={"ETag": etag})
        body = cache.get(index)
        if body is None:
            body = cache[index] = orjson.dumps(
                {
                    "version": "https://jsonfeed.org/version/1.1",
                    "title": source_id(index),
                    "home_page_url": f"https://soak.example/{index}",
                    "items": list(feeds[index]),
                }
            )
        return Response(body, media_type="application/feed+json", headers={"ETag": etag})

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse(state)

    async def ticker(stop: asyncio.Event) -> None:
        # Entries are published at ``rate`` on average, each to a random source: per source a
        # Poisson-like trickle, in all a steady stream.
        start = time.monotonic()
        while not stop.is_set():
            due = int(args.rate * (time.monotonic() - start))
            while state["published"] < due:
                publish(rng.randrange(args.sources))
            await asyncio.sleep(0.01)

    app = Starlette(routes=[Route("/feed/{i:int}", feed), Route("/_stats", stats)])
    async with serve_http(app, "127.0.0.1", 0) as base:
        answer({"base": base})

        async def final() -> dict[str, Any]:
            return {
                "published": state["published"],
                "per_source": counts,
                "per_minute": dict(per_minute),
                "polls": state["polls"],
                "not_modified": state["not_modified"],
            }

        await serve_source_commands(state, ticker, final)


async def serve_source_commands(
    state: dict[str, Any],
    ticker: Callable[[asyncio.Event], Coroutine[Any, Any, None]],
    final: Callable[[], Awaitable[dict[str, Any]]],
) -> None:
    """Answer the parent's commands until it closes our stdin: ``start`` runs ``ticker`` (until
    its event is set), ``count`` says ``state["published"]``, ``stop`` ends the ticker and
    answers what ``final`` reports."""
    stop = asyncio.Event()
    task: asyncio.Task[None] | None = None
    try:
        async for line in commands():
            if line == "start":
                state["t0"] = time.monotonic()
                task = asyncio.create_task(ticker(stop))
                answer({"ok": True})
            elif line == "count":
                answer({"published": state["published"]})
            elif line == "stop":
                stop.set()
                if task is not None:
                    await task
                answer(await final())
    finally:
        stop.set()
        if task is not None:
            await task


# Child: the WebSocket subscribers ------------------------------------------------------------

_EVENT = b'{"type":"event","cursor":"'
_ENTRY = b'"entry_id":"'
_DETECTED = b'"detected_ms":'
_PROCESSED = b'"processed_ms":'


def _int_at(payload: bytes, key: bytes, start: int) -> int:
    at = payload.index(key, start) + len(key)
    return int(payload[at : at + 16].split(b",", 1)[0].split(b"}", 1)[0])


class Sub(asyncio.Protocol):
    """One WebSocket subscriber on a raw asyncio protocol (lean, so that 2,500 fit in one
    process): walks frames, answers pings, checks per-source order, resumes with its cursor."""

    def __init__(self, owner: Subscribers, number: int, sources: list[int] | None) -> None:
        self.owner = owner
        self.number = number
        self.sources = None if sources is None else frozenset(sources)
        self.query = "backlog=0" + (
            "" if sources is None else "&sources=" + ",".join(source_id(s) for s in sources)
        )
        self.cursor = owner.start_cursor
        self.last: dict[int, int] = {}
        self.received = 0
        self.duplicates = 0
        self.missing = 0
        self.unexpected = 0
        self.connects = 0
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] | None = None
        self.open = False
        self.buf = bytearray()

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        self.opened = loop.create_future()
        self.open = False
        self.buf = bytearray()
        await loop.create_connection(lambda: self, "127.0.0.1", self.owner.port)
        await asyncio.wait_for(self.opened, 60)
        self.connects += 1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        path = f"/v1/stream?{self.query}&cursor={self.cursor}"
        transport.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.owner.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.opened is not None and not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed during handshake: {exc}"))
        elif self.open and not self.owner.closing:
            self.open = False
            self.owner.drops += 1
            self.owner.reconnect(self)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.open and not self._handshake(buf):
            return
        i = 0
        n = len(buf)
        now = now_ms()
        while n - i >= 2:
            size = buf[i + 1] & 127
            head = 2 if size < 126 else 4 if size == 126 else 10
            if n - i < head:
                break
            if size == 126:
                size = int.from_bytes(buf[i + 2 : i + 4], "big")
            elif size == 127:
                size = int.from_bytes(buf[i + 2 : i + 10], "big")
            if n - i < head + size:
                break
            opcode = buf[i] & 0x0F
            payload = bytes(buf[i + head : i + head + size])
            i += head + size
            if not self._control(opcode, payload, now):
                break
        del buf[:i]

    def _handshake(self, buf: bytearray) -> bool:
        """Read the handshake response from ``buf``; True once the connection is open."""
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        status = bytes(buf[: buf.find(b"\r\n")])
        del buf[: end + 4]
        assert self.opened is not None
        if b" 101 " not in status:
            self.opened.set_exception(ConnectionError(status.decode(errors="replace")))
            return False
        self.open = True
        self.opened.set_result(None)
        return True

    def _control(self, opcode: int, payload: bytes, now: float) -> bool:
        """Handle one frame; False after a close frame (nothing more to read)."""
        if opcode == 1:
            self._frame(payload, now)
        elif opcode == 9 and self.transport is not None:
            # A client's frames are masked; a zero mask leaves the payload as it is.
            self.transport.write(bytes((0x8A, 0x80 | len(payload))) + b"\0\0\0\0" + payload)
        elif opcode == 8:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.owner.closes[code] += 1
            if self.transport is not None:
                self.transport.abort()
            return False
        return True

    def _frame(self, payload: bytes, now: float) -> None:
        owner = self.owner
        if payload.startswith(_EVENT):
            end = payload.index(b'"', 26)
            self.cursor = payload[26:end].decode()
            at = payload.index(_ENTRY, end) + 12
            index, seq, published = parse_entry(payload[at : payload.index(b'"', at)])
            detected = _int_at(payload, _DETECTED, end)
            processed = _int_at(payload, _PROCESSED, end)
            self.received += 1
            owner.per_minute[int((now - owner.latencies.t0_ms) / 60_000)] += 1
            if self.sources is not None and index not in self.sources:
                self.unexpected += 1
                return
            last = self.last.get(index, -1)
            if seq == last + 1:
                self.last[index] = seq
            elif seq <= last:
                self.duplicates += 1
                owner.anomaly(self, "repeat", index, last, seq, now)
                return
            else:
                self.missing += seq - last - 1
                self.last[index] = seq
                owner.anomaly(self, "gap", index, last, seq, now)
            owner.latencies.add(now, detected, published, processed)
            return
        frame = orjson.loads(payload)
        kind = frame.get("type")
        if isinstance(frame.get("cursor"), str):
            self.cursor = frame["cursor"]
        owner.controls[str(kind)] += 1
        if kind == "error":
            owner.errors.append(frame)

    def report(self, published: list[int]) -> dict[str, int]:
        wanted = range(len(published)) if self.sources is None else self.sources
        tail = sum(max(0, published[s] - self.last.get(s, -1) - 1) for s in wanted)
        expected = sum(published[s] for s in wanted)
        return {"expected": expected, "lost": self.missing + tail}


class Subscribers:
    def __init__(self, port: int, start_cursor: str, specs: list[list[int] | None]) -> None:
        self.port = port
        self.start_cursor = start_cursor
        self.subs = [Sub(self, n, spec) for n, spec in enumerate(specs)]
        self.latencies = Latencies()
        self.per_minute: Counter[int] = Counter()
        self.controls: Counter[str] = Counter()
        self.closes: Counter[int] = Counter()
        self.errors: list[Any] = []
        self.drops = 0
        self.reconnect_failures = 0
        self.closing = False
        self.tasks: set[asyncio.Task[None]] = set()
        self.anomalies: list[dict[str, Any]] = []

    def anomaly(self, sub: Sub, kind: str, source: int, last: int, seq: int, now: float) -> None:
        """The first few gaps and repeats, with enough context to chase them."""
        if len(self.anomalies) < 50:
            self.anomalies.append(
                {
                    "kind": kind,
                    "subscriber": sub.number,
                    "firehose": sub.sources is None,
                    "source": source,
                    "last": last,
                    "seq": seq,
                    "connects": sub.connects,
                    "t_s": round((now - self.latencies.t0_ms) / 1000, 3),
                }
            )

    def reconnect(self, sub: Sub) -> None:
        async def again() -> None:
            for attempt in range(60):
                await asyncio.sleep(0.2 + random.random() * min(2.0, 0.2 * attempt))
                if self.closing:
                    return
                try:
                    await sub.connect()
                    return
                except (OSError, ConnectionError, TimeoutError):
                    self.reconnect_failures += 1

        task = asyncio.create_task(again())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def connect_all(self) -> None:
        for start in range(0, len(self.subs), 200):
            await asyncio.gather(*(s.connect() for s in self.subs[start : start + 200]))

    def report(self, published: list[int]) -> dict[str, Any]:
        rows = [s.report(published) for s in self.subs]
        firehose = [s for s in self.subs if s.sources is None]
        return {
            "subscribers": len(self.subs),
            "received": sum(s.received for s in self.subs),
            "expected": sum(r["expected"] for r in rows),
            "lost": sum(r["lost"] for r in rows),
            "duplicates": sum(s.duplicates for s in self.subs),
            "unexpected": sum(s.unexpected for s in self.subs),
            "subscribers_with_loss": sum(1 for r in rows if r["lost"]),
            "connects": sum(s.connects for s in self.subs),
            "drops": self.drops,
            "reconnect_failures": self.reconnect_failures,
            "controls": dict(self.controls),
            "closes": {str(k): v for k, v in self.closes.items()},
            "errors": self.errors[:5],
            "anomalies": self.anomalies,
            "per_minute": dict(self.per_minute),
            "firehose": len(firehose),
            "latency": self.latencies.dump(),
        }


async def child_subscribers(args: argparse.Namespace, specs: list[list[int] | None]) -> None:
    subs = Subscribers(args.port, args.cursor, specs)
    await subs.connect_all()
    answer({"connected": len(subs.subs)})
    async for line in commands():
        command, _, rest = line.partition(" ")
        if command == "start":
            subs.latencies.t0_ms = float(rest)
            answer({"ok": True})
        elif command == "count":
            answer({"received": sum(s.received for s in subs.subs)})
        elif command == "report":
            answer(subs.report(orjson.loads(rest)))
        elif command == "close":
            subs.closing = True
            for sub in subs.subs:
                if sub.transport is not None:
                    sub.transport.close()
            answer({"ok": True})
    subs.closing = True


# Child: the webhook receivers ----------------------------------------------------------------


class Receivers:
    """Per receiver and source, which sequence numbers arrived (a bytearray of flags)."""

    def __init__(self, count: int) -> None:
        self.seen: list[dict[int, bytearray]] = [{} for _ in range(count)]
        self.hook_ids: list[set[bytes]] = [set() for _ in range(count)]
        self.deliveries = 0
        self.duplicates = 0
        self.redeliveries = 0  # the same webhook-id again: at-least-once retries
        self.bad = 0
        self.latencies = Latencies()
        self.per_minute: Counter[int] = Counter()

    def on_post(self, index: int, head: bytes, body: bytes) -> None:
        now = now_ms()
        self.deliveries += 1
        self.per_minute[int((now - self.latencies.t0_ms) / 60_000)] += 1
        try:
            data = orjson.loads(body)["data"]
            src, seq, published = parse_entry(data["entry_id"].encode())
            detected = int(data["timings"]["detected_ms"])
            processed = int(data["timings"]["processed_ms"])
            hook = head.lower().split(b"webhook-id:", 1)[1].split(b"\r\n", 1)[0].strip()
        except (ValueError, KeyError, IndexError, TypeError):
            self.bad += 1
            return
        if hook in self.hook_ids[index]:
            self.redeliveries += 1
        self.hook_ids[index].add(hook)
        flags = self.seen[index].setdefault(src, bytearray())
        if seq >= len(flags):
            flags.extend(bytes(seq + 1024 - len(flags)))
        if flags[seq]:
            self.duplicates += 1
            return
        flags[seq] = 1
        self.latencies.add(now, detected, published, processed)

    def report(self, published: list[int], filters: list[list[int]]) -> dict[str, Any]:
        expected = lost = unexpected = with_loss = 0
        for index, sources in enumerate(filters):
            seen = self.seen[index]
            unexpected += sum(sum(f) for s, f in seen.items() if s not in sources)
            missing = sum(published[s] - sum(seen.get(s, b"")[: published[s]]) for s in sources)
            expected += sum(published[s] for s in sources)
            lost += missing
            with_loss += bool(missing)
        return {
            "receivers": len(filters),
            "deliveries": self.deliveries,
            "expected": expected,
            "lost": lost,
            "duplicates": self.duplicates,
            "redeliveries": self.redeliveries,
            "unexpected": unexpected,
            "bad_bodies": self.bad,
            "receivers_with_loss": with_loss,
            "per_minute": dict(self.per_minute),
            "latency": self.latencies.dump(),
        }


async def child_receivers(args: argparse.Namespace) -> None:
    receivers = Receivers(args.count)
    servers = await serve_receivers(args.count, receivers.on_post)
    answer({"ports": [s.sockets[0].getsockname()[1] for s in servers[1:]]})
    async for line in commands():
        command, _, rest = line.partition(" ")
        if command == "start":
            receivers.latencies.t0_ms = float(rest)
            answer({"ok": True})
        elif command == "count":
            answer({"received": receivers.deliveries - receivers.duplicates})
        elif command == "report":
            published, filters = orjson.loads(rest)
            answer(receivers.report(published, filters))
    for server in servers:
        server.close()


# The orchestrator ----------------------------------------------------------------------------


def _die_with_parent() -> None:
    # SIGKILL this child when the orchestrator dies, however it dies: nothing outlives a run.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class Proc:
    name: str
    proc: asyncio.subprocess.Process
    log: Path
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def read(self, timeout: float) -> Any:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"{self.name} exited:\n{self.tail()}")
        return orjson.loads(line)

    async def ask(self, command: str, timeout: float = 60) -> Any:
        async with self.lock:
            assert self.proc.stdin is not None
            self.proc.stdin.write(command.encode() + b"\n")
            await self.proc.stdin.drain()
            return await self.read(timeout)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


class Run:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.procs: dict[str, Proc] = {}
        self.ports: dict[str, int] = {}
        self.samples: dict[str, list[tuple[float, int, float]]] = {}
        self.lag: list[tuple[float, float, float]] = []  # (t, lag records, wire events)
        self.t0 = 0.0
        self.rng = random.Random(args.seed)
        self.broker_bootstrap = ""
        self.hook_ports: list[int] = []
        self.hook_filters: list[list[int]] = []
        self.specs: list[list[int] | None] = []
        self.sub_procs: list[Proc] = []
        self.topics: dict[str, str] = {}
        self.prefix = ""  # of this run's topics and groups
        self.bootstrap = ""

    async def spawn(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, talks: bool = False
    ) -> Proc:
        """A child process that dies with this one; ``talks``: commands on its stdin, answers
        on its stdout (the bench's own children); otherwise both go to its log file."""
        log = self.workdir / f"{name}.log"
        out = log.open("wb")
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env=env or {**os.environ, "PYTHONUNBUFFERED": "1"},
            stdin=asyncio.subprocess.PIPE if talks else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if talks else out,
            stderr=out,
            preexec_fn=_die_with_parent,
            start_new_session=True,  # Ctrl-C reaches this process only, which stops the rest
            limit=64 * 1024 * 1024,
        )
        self.procs[name] = Proc(name, proc, log)
        return self.procs[name]

    async def child(self, name: str, *argv: str) -> Proc:
        return await self.spawn(name, [sys.executable, str(HERE / "soak.py"), *argv], talks=True)

    # Start-up ------------------------------------------------------------------------------

    def telex_env(self, bootstrap: str, config: Path) -> dict[str, str]:
        a = self.args
        p = self.prefix = f"soak{uuid.uuid4().hex[:8]}"
        self.topics = {"raw": f"{p}.raw", "wire": f"{p}.wire"}
        settings = {
            "TELEX_KAFKA_BOOTSTRAP": bootstrap,
            "TELEX_KAFKA_IDEMPOTENCE": a.idempotence or ("auto" if a.bootstrap else "off"),
            "TELEX_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "TELEX_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
            "TELEX_TOPICS_RAW": f"{p}.raw",
            "TELEX_TOPICS_WIRE": f"{p}.wire",
            "TELEX_TOPICS_DLQ": f"{p}.dlq",
            "TELEX_TOPICS_SOURCES": f"{p}.sources",
            "TELEX_TOPICS_PARTITIONS": str(a.partitions),
            "TELEX_POLLER_GROUP_ID": f"{p}.poller",
            "TELEX_PROCESSOR_GROUP_ID": f"{p}.processor",
            "TELEX_NOTIFIER_GROUP_ID": f"{p}.notifier",
            "TELEX_NOTIFIER_TOPIC_WEBHOOKS": f"{p}.webhooks",
            "TELEX_NOTIFIER_TOPIC_RETRY": f"{p}.webhooks.retry",
            "TELEX_NOTIFIER_TOPIC_DLQ": f"{p}.webhooks.dlq",
            "TELEX_NOTIFIER_TOPIC_ATTEMPTS": f"{p}.webhooks.attempts",
            # A fixed interval, so that the load on the sources is what the run says.
            "TELEX_POLLER_INTERVAL": str(a.poll_interval),
            "TELEX_POLLER_ADAPTIVE_MIN": "1",
            "TELEX_POLLER_ADAPTIVE_MAX": "1",
            # All sources are one local host here; in a newsroom they are as many hosts.
            "TELEX_POLLER_PER_HOST": "32",
            "TELEX_GATEWAY_MAX_CONNECTIONS": str(a.subscribers + 1000),
            "TELEX_LOG_LEVEL": "warning",
            "TELEX_LOG_FORMAT": "json",
        }
        # The sources (a thousand or more) stay in the file: too long for one variable.
        extra = {"TELEX_CONFIG": str(config), "PYTHONUNBUFFERED": "1"}
        return child_environ(load(None, settings), extra)

    async def start_broker(self) -> None:
        """The embedded broker, as ``telex run`` starts it, but as a child that dies with us."""
        from telex.kafka.connect import wait_for_broker
        from telex.kafka.embedded import EmbeddedBroker, free_port

        port = free_port()
        url = f"tcp://127.0.0.1:{port}"
        argv = [EmbeddedBroker.binary(), "broker", "--listener-url", url]
        broker = await self.spawn("broker", [*argv, "--advertised-listener-url", url])
        self.broker_bootstrap = f"127.0.0.1:{port}"
        await wait_for_broker(self.broker_bootstrap, timeout=30, proc=broker.proc)

    async def start(self) -> str:
        a = self.args
        sources = await self.child(
            "sources", "_sources", "--sources", str(a.sources), "--rate", str(a.rate),
            "--window", str(a.window), "--seed", str(a.seed),
        )  # fmt: skip
        base = (await sources.read(60))["base"]
        receivers = await self.child("receivers", "_receivers", "--count", str(a.receivers))
        self.hook_ports = (await receivers.read(60))["ports"]
        bootstrap = a.bootstrap or self.broker_bootstrap
        toml = self.workdir / "telex.toml"
        lines = [
            '[poller]\nallow_networks = ["127.0.0.0/8"]\n',
            '[notifier]\nallow_networks = ["127.0.0.0/8"]\n',
        ]
        for i in range(a.sources):
            lines.append(f'[[sources]]\nid = "{source_id(i)}"\nurl = "{base}/feed/{i}"\n')
            lines.append('kind = "jsonfeed"\n')
        toml.write_text("".join(lines))
        self.bootstrap = bootstrap
        env = self.telex_env(bootstrap, toml)
        roles = [r for r in ROLES if r != "processor"]
        roles[:0] = [f"processor{n}" if n else "processor" for n in range(a.processors)]
        from telex.kafka.embedded import free_port

        for role in roles:
            self.ports[role] = free_port()
            await self.spawn(
                role,
                [TELEX, role.rstrip("0123456789")],
                {**env, "TELEX_HTTP_PORT": str(self.ports[role])},
            )
        await self.wait_ready(roles)
        await self.subscribe_webhooks()
        await self.start_subscribers()
        return base

    async def wait_ready(self, roles: list[str], timeout: float = 180) -> None:
        async with httpx.AsyncClient(timeout=2) as client:
            for role in roles:
                deadline = time.monotonic() + timeout
                while True:
                    proc = self.procs[role]
                    if proc.proc.returncode is not None:
                        raise RuntimeError(f"{role} exited:\n{proc.tail()}")
                    with contextlib.suppress(httpx.TransportError):
                        r = await client.get(f"http://127.0.0.1:{self.ports[role]}/readyz")
                        if r.status_code == 200:
                            break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{role} not ready after {timeout}s:\n{proc.tail()}")
                    await asyncio.sleep(0.3)

    def popular(self, k: int) -> list[int]:
        """``k`` distinct sources, the low-numbered ones more often (Zipf)."""
        weights = [1 / (i + 1) for i in range(self.args.sources)]
        chosen: list[int] = []
        while len(chosen) < min(k, self.args.sources):
            (pick,) = self.rng.choices(range(self.args.sources), weights)
            if pick not in chosen:
                chosen.append(pick)
        return sorted(chosen)

    async def subscribe_webhooks(self) -> None:
        a = self.args
        self.hook_filters = [self.popular(2) for _ in range(a.receivers)]
        url = f"http://127.0.0.1:{self.ports['notifier']}"
        async with httpx.AsyncClient(base_url=url, timeout=30) as api:
            for port, sources in zip(self.hook_ports, self.hook_filters, strict=True):
                body = {
                    "url": f"http://127.0.0.1:{port}/hook",
                    "filter": {"sources": [source_id(s) for s in sources]},
                    "description": "soak receiver",
                }
                r = await api.post("/v1/webhooks", json=body)
                if r.status_code != 201:
                    raise RuntimeError(f"webhook not created: {r.status_code} {r.text}")
            # The notifier learns subscriptions from its compacted topic: wait until it has all.
            deadline = time.monotonic() + 60
            while await self.metric("notifier", "telex_notifier_subscriptions") < a.receivers:
                if time.monotonic() > deadline:
                    raise RuntimeError("the notifier did not load the webhook subscriptions")
                await asyncio.sleep(0.3)

    def subscriber_specs(self) -> list[list[int] | None]:
        a = self.args
        views = [self.popular(self.rng.randint(1, 5)) for _ in range(a.views)]
        weights = [1 / (i + 1) for i in range(len(views))]
        firehose = firehose_count(a)
        specs: list[list[int] | None] = [None] * firehose
        for _ in range(a.subscribers - firehose):
            specs.append(self.rng.choices(views, weights)[0] if views else self.popular(3))
        self.rng.shuffle(specs)
        return specs

    async def start_subscribers(self) -> None:
        from telex.gateway.cursor import encode_cursor

        a = self.args
        self.specs = self.subscriber_specs()
        cursor = encode_cursor(dict.fromkeys(range(a.partitions), 0))
        procs = max(1, min(a.client_procs, len(self.specs)))
        for n in range(procs):
            spec = self.workdir / f"subscribers{n}.json"
            spec.write_bytes(orjson.dumps(self.specs[n::procs]))
            proc = await self.child(
                f"subscribers{n}", "_subscribers", "--port", str(self.ports["gateway"]),
                "--cursor", cursor, "--spec", str(spec),
            )  # fmt: skip
            self.sub_procs.append(proc)
        for proc in self.sub_procs:
            await proc.read(300)

    # Measuring -----------------------------------------------------------------------------

    async def metrics(self, role: str) -> dict[str, float]:
        """Every sample of ``role``'s /metrics, label sets summed by metric name too."""
        async with httpx.AsyncClient(timeout=10) as client:
            text = (await client.get(f"http://127.0.0.1:{self.ports[role]}/metrics")).text
        out: dict[str, float] = Counter()
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            series, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[series] += float(value)
                if "{" in series:
                    out[series.split("{", 1)[0]] += float(value)
        return out

    async def metric(self, role: str, name: str) -> float:
        with contextlib.suppress(httpx.HTTPError):
            return (await self.metrics(role)).get(name, 0.0)
        return 0.0

    def pids(self) -> dict[str, int]:
        out = {name: p.pid for name, p in self.procs.items() if p.proc.returncode is None}
        out["orchestrator"] = os.getpid()
        return out

    async def sample(self) -> None:
        processors = [r for r in self.ports if r.startswith("processor")]
        while True:
            t = time.monotonic() - self.t0
            for name, pid in self.pids().items():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    self.samples.setdefault(name, []).append((t, rss_bytes(pid), cpu_seconds(pid)))
            lag = wire = 0.0
            for role in processors:
                with contextlib.suppress(httpx.HTTPError):
                    m = await self.metrics(role)
                    lag += m.get("telex_processor_consumer_lag_records", 0.0)
                    wire += m.get("telex_processor_events_produced_total", 0.0)
            self.lag.append((t, lag, wire))
            await asyncio.sleep(SAMPLE_EVERY)

    async def received(self) -> tuple[int, int]:
        subs = sum([(await p.ask("count"))["received"] for p in self.sub_procs])
        hooks = (await self.procs["receivers"].ask("count"))["received"]
        return subs, hooks

    def expected(self, per_source: list[int]) -> tuple[int, int]:
        total = sum(per_source)
        subs = sum(total if s is None else sum(per_source[i] for i in s) for s in self.specs)
        hooks = sum(sum(per_source[i] for i in f) for f in self.hook_filters)
        return subs, hooks

    async def soak(self) -> dict[str, Any]:
        a = self.args
        sources = self.procs["sources"]
        t0_ms = now_ms()
        self.t0 = time.monotonic()
        for proc in [*self.sub_procs, self.procs["receivers"]]:
            await proc.ask(f"start {t0_ms}")
        await sources.ask("start")
        sampler = asyncio.create_task(self.sample())
        try:
            while (elapsed := time.monotonic() - self.t0) < a.duration:
                await asyncio.sleep(min(a.progress, a.duration - elapsed))
                elapsed = time.monotonic() - self.t0
                produced = (await sources.ask("count"))["published"]
                subs, hooks = await self.received()
                lag = self.lag[-1][1] if self.lag else 0
                print(
                    f"  {elapsed:6.0f}s  published {produced:>8,} ({produced / elapsed:,.0f}/s)"
                    f"  processor lag {lag:>7,.0f}  subscriber deliveries {subs:>10,}"
                    f"  webhook deliveries {hooks:>8,}",
                    flush=True,
                )
            stop_at = time.monotonic() - self.t0
            published = await sources.ask("stop")
            lag_at_stop = self.lag[-1][1] if self.lag else 0.0
            # Drain: everything published must arrive; how long it takes says how far behind
            # the pipeline was when the sources stopped.
            want_subs, want_hooks = self.expected(published["per_source"])
            deadline = time.monotonic() + a.drain
            drained = None
            while time.monotonic() < deadline:
                subs, hooks = await self.received()
                if subs >= want_subs and hooks >= want_hooks:
                    drained = time.monotonic() - self.t0 - stop_at
                    break
                await asyncio.sleep(0.5)
            await asyncio.sleep(2.0)  # late duplicates would arrive now
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        per_source = published["per_source"]
        subscriber_reports = [
            await p.ask("report " + orjson.dumps(per_source).decode(), 120) for p in self.sub_procs
        ]
        receiver_report = await self.procs["receivers"].ask(
            "report " + orjson.dumps([per_source, self.hook_filters]).decode(), 120
        )
        topics = {name: await self.topic_order(t, per_source) for name, t in self.topics.items()}
        services = {}
        for role in self.ports:
            with contextlib.suppress(httpx.HTTPError):
                services[role] = await self.metrics(role)
        return {
            "stop_at": stop_at,
            "lag_at_stop": lag_at_stop,
            "drained_s": drained,
            "sources": published,
            "subscribers": subscriber_reports,
            "receivers": receiver_report,
            "services": services,
            "topics": topics,
        }

    async def topic_order(self, topic: str, published: list[int]) -> dict[str, Any]:
        """Per-source order of a topic as Kafka holds it: tells a reordering or a loss in the
        poller or processor (raw, wire) from one in the gateway or notifier."""
        from telex.config import Config
        from telex.kafka import Clients
        from telex.kafka.table import scan_topic

        last: dict[int, int] = {}
        seen: dict[int, set[int]] = {}
        counts = Counter[str]()
        examples: list[tuple[int, int, int]] = []
        # Where the time goes before the gateway and the notifier, from each wire event's own
        # timings: poller (detected -> produced to raw), raw topic + processor queue and work
        # (-> processed), processor batch and produce (-> the wire record's timestamp).
        stages: dict[str, Counter[int]] = {
            "poller": Counter(),
            "to_processed": Counter(),
            "to_wire": Counter(),
        }

        def apply(record: Any) -> None:
            value: bytes = record.value or b""
            at = value.find(_ENTRY)
            if at < 0:
                counts["other"] += 1
                return
            at += len(_ENTRY)
            index, seq, _ = parse_entry(value[at : value.index(b'"', at)])
            counts["records"] += 1
            if value.find(_PROCESSED) >= 0:
                detected = _int_at(value, _DETECTED, 0)
                produced = _int_at(value, b'"produced_ms":', 0)
                processed = _int_at(value, _PROCESSED, 0)
                stages["poller"][produced - detected] += 1
                stages["to_processed"][processed - produced] += 1
                stages["to_wire"][int(record.timestamp) - processed] += 1
            if seq in seen.setdefault(index, set()):
                counts["repeats"] += 1
            elif seq < last.get(index, -1):
                counts["late"] += 1  # first time, but after a later one: out of order
                if len(examples) < 10:
                    examples.append((index, last[index], seq))
            seen[index].add(seq)
            last[index] = max(seq, last.get(index, -1))

        try:
            async with asyncio.timeout(120):
                await scan_topic(Clients(Config(), self.bootstrap), topic, apply)
        except (TimeoutError, LookupError) as exc:
            counts["read_errors"] += 1
            print(f"soak: could not read {topic} to its end: {exc!r}", file=sys.stderr)
        missing = sum(published[i] - len(seen.get(i, ())) for i in range(len(published)))
        out: dict[str, Any] = {**counts, "missing": missing, "late_examples": examples}
        if stages["poller"]:
            out["stages_ms"] = {name: percentiles(hist) for name, hist in stages.items()}
        return out

    async def stop(self) -> dict[str, int | None]:
        """Subscribers first (so that they do not reconnect into a draining gateway), then the
        services (SIGTERM, then SIGKILL after 20 s), then the other children, the broker last."""
        codes: dict[str, int | None] = {}
        for proc in self.sub_procs:
            with contextlib.suppress(Exception):
                await proc.ask("close", 10)
        children = [n for n in self.procs if n not in self.ports and n != "broker"]
        order = [*reversed(self.ports), *children, "broker"]
        for name in order:
            if name not in self.procs:
                continue
            terminate = name in self.ports or name == "broker"
            codes[name] = await end_child(self.procs[name].proc, terminate)
        if self.args.bootstrap and self.prefix:
            await delete_topics(self.args.bootstrap, self.prefix)
        return codes


async def end_child(p: asyncio.subprocess.Process, terminate: bool) -> int | None:
    """End a child: SIGTERM when ``terminate``, else the end of its commands on stdin (it then
    exits by itself); killed after 20 s. Returns its exit code."""
    if p.returncode is None:
        if terminate:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        elif p.stdin is not None:
            p.stdin.close()
    try:
        await asyncio.wait_for(p.wait(), 20)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            p.kill()
        await p.wait()
    return p.returncode


async def delete_topics(bootstrap: str, prefix: str) -> None:
    """Delete the topics named ``prefix.*`` from a cluster that outlives the run.

    Left behind, every run's partitions stay replicated and cleaned by the brokers: after a
    few dozen runs the three brokers of ``tests/kafka_cluster.py`` took twice the CPU under the
    same load, and the later runs measured that instead of telex.
    """
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
        names = [t for t in await admin.list_topics() if t.startswith(prefix + ".")]
        if names:
            await admin.delete_topics(names)
    except Exception as exc:  # the measurement is done; say so and go on
        print(f"could not delete the run's topics {prefix}.*: {exc!r}", file=sys.stderr)
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


# The report ----------------------------------------------------------------------------------


def merge_hists(hists: list[dict[str, dict[str, int]]]) -> dict[int, Counter[int]]:
    out: dict[int, Counter[int]] = {}
    for hist in hists:
        for minute, counts in hist.items():
            target = out.setdefault(int(minute), Counter())
            for ms, n in counts.items():
                target[int(ms)] += n
    return out


def percentiles(hist: Counter[int]) -> dict[str, float | int]:
    total = sum(hist.values())
    if not total:
        return {"count": 0}
    out: dict[str, float | int] = {"count": total}
    marks = {"p50": 0.5, "p90": 0.9, "p99": 0.99, "p999": 0.999}
    running = 0
    keys = sorted(hist)
    pending = sorted(marks.items(), key=lambda kv: kv[1])
    for ms in keys:
        running += hist[ms]
        while pending and running >= pending[0][1] * total:
            out[pending.pop(0)[0]] = ms
    out["max"] = keys[-1]
    return out


def latency_block(hists: list[dict[str, dict[str, int]]]) -> dict[str, Any]:
    per_minute = merge_hists(hists)
    whole: Counter[int] = Counter()
    for counts in per_minute.values():
        whole.update(counts)
    return {
        "all": percentiles(whole),
        "per_minute": {m: percentiles(c) for m, c in sorted(per_minute.items())},
    }


def log_counts(path: Path) -> dict[str, Any]:
    levels: Counter[str] = Counter()
    events: Counter[str] = Counter()
    other = 0
    if path.exists():
        for line in path.read_bytes().splitlines():
            try:
                record = orjson.loads(line)
                level = str(record.get("level", "?"))
            except (orjson.JSONDecodeError, AttributeError):
                other += 1  # a traceback line, or a third party writing to stderr
                continue
            levels[level] += 1
            if level in ("warning", "error", "critical"):
                events[f"{level} {record.get('event')}"] += 1
    return {"levels": dict(levels), "top": events.most_common(5), "unstructured_lines": other}


def resources(run: Run, until: float) -> dict[str, Any]:
    """Per process: CPU share over the soak, RSS over time, and the growth between the early
    steady state (20-40 % of the run) and the end (last 20 %)."""
    out = {}
    for name, rows in run.samples.items():
        rows = [r for r in rows if r[0] <= until + SAMPLE_EVERY]
        if len(rows) < 2:
            continue
        (t_a, _, cpu_a), (t_b, _, cpu_b) = rows[0], rows[-1]
        early = [r[1] for r in rows if 0.2 * until <= r[0] <= 0.4 * until] or [rows[0][1]]
        late = [r[1] for r in rows if r[0] >= 0.8 * until] or [rows[-1][1]]
        mb = 1024 * 1024
        out[name] = {
            "cpu_percent": 100 * (cpu_b - cpu_a) / max(1e-9, t_b - t_a),
            "rss_mb_first": rows[0][1] / mb,
            "rss_mb_early": statistics.median(early) / mb,
            "rss_mb_late": statistics.median(late) / mb,
            "rss_mb_max": max(r[1] for r in rows) / mb,
            "rss_growth_mb": (statistics.median(late) - statistics.median(early)) / mb,
            "rss_mb_series": [[round(r[0]), round(r[1] / mb, 1)] for r in rows],
        }
    return out


def build_report(run: Run, result: dict[str, Any], codes: dict[str, int | None]) -> dict[str, Any]:
    a = run.args
    subs = result["subscribers"]
    hooks = result["receivers"]
    stop_at = result["stop_at"]
    published = result["sources"]["published"]

    def total(key: str) -> int:
        return sum(s[key] for s in subs)

    def minutes(rows: list[dict[str, int]]) -> dict[int, int]:
        out: Counter[int] = Counter()
        for row in rows:
            for m, n in row.items():
                out[int(m)] += n
        return dict(sorted(out.items()))

    produced = minutes([result["sources"]["per_minute"]])
    sub_minutes = minutes([s["per_minute"] for s in subs])
    hook_minutes = minutes([hooks["per_minute"]])
    wire = {}
    for t, _, events in run.lag:
        wire[int(t // MINUTE)] = events
    wire_minutes, prev = {}, 0.0
    for m in sorted(wire):
        wire_minutes[m] = wire[m] - prev
        prev = wire[m]
    controls: Counter[str] = Counter()
    closes: Counter[str] = Counter()
    for s in subs:
        controls.update(s["controls"])
        closes.update(s["closes"])
    svc = result["services"]

    def svc_sum(name: str) -> float:
        return sum(m.get(name, 0.0) for m in svc.values())

    logs = {name: log_counts(p.log) for name, p in run.procs.items()}
    warnings = sum(v["levels"].get("warning", 0) for n, v in logs.items() if n in run.ports)
    errors = sum(
        v["levels"].get("error", 0) + v["levels"].get("critical", 0)
        for n, v in logs.items()
        if n in run.ports
    )
    lags = [lag for t, lag, _ in run.lag if t <= stop_at]
    # Held: the processor's backlog stayed within two seconds of updates through the last
    # fifth of the run, and everything was delivered within ten seconds of the last update.
    tail_lag = max((lag for t, lag, _ in run.lag if 0.8 * stop_at <= t <= stop_at), default=0)
    drained = result["drained_s"]
    sustained = tail_lag <= 2 * a.rate and drained is not None and drained <= 10
    report = {
        "command": " ".join(sys.argv),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_at_end": os.getloadavg(),
        },
        "settings": {k: getattr(a, k) for k in SETTINGS},
        "published": published,
        "published_per_s": published / stop_at,
        "sources_polls": result["sources"]["polls"],
        "sources_not_modified": result["sources"]["not_modified"],
        "processor_lag_at_stop": result["lag_at_stop"],
        "processor_lag_max": max(lags, default=0.0),
        "processor_lag_last_fifth_max": tail_lag,
        "sustained": sustained,
        "drained_s": result["drained_s"],
        "throughput_per_minute": {
            "published": produced,
            "wire_events": wire_minutes,
            "subscriber_deliveries": sub_minutes,
            "webhook_deliveries": hook_minutes,
        },
        "subscribers": {
            "count": total("subscribers"),
            "firehose": total("firehose"),
            "expected": total("expected"),
            "received": total("received"),
            "lost": total("lost"),
            "duplicates": total("duplicates"),
            "unexpected": total("unexpected"),
            "with_loss": total("subscribers_with_loss"),
            "connects": total("connects"),
            "drops": total("drops"),
            "reconnect_failures": total("reconnect_failures"),
            "resyncs": controls.get("resync", 0),
            "error_frames": controls.get("error", 0),
            "controls": dict(controls),
            "anomalies": [a for s in subs for a in s["anomalies"]][:50],
            "closes": dict(closes),
            "latency_detected_ms": latency_block([s["latency"]["detected"] for s in subs]),
            "latency_published_ms": latency_block([s["latency"]["published"] for s in subs]),
            "latency_processed_ms": latency_block([s["latency"]["processed"] for s in subs]),
        },
        "receivers": {
            **{k: v for k, v in hooks.items() if k not in ("latency", "per_minute")},
            "latency_detected_ms": latency_block([hooks["latency"]["detected"]]),
            "latency_published_ms": latency_block([hooks["latency"]["published"]]),
            "latency_processed_ms": latency_block([hooks["latency"]["processed"]]),
        },
        "services": {
            "poller_updates_produced": svc_sum("telex_poller_updates_produced_total"),
            "poller_errors": svc_sum("telex_poller_errors_total"),
            "processor_consumed": svc_sum("telex_processor_records_consumed_total"),
            "processor_events": svc_sum("telex_processor_events_produced_total"),
            "processor_duplicates_dropped": svc_sum("telex_processor_duplicates_dropped_total"),
            "dead_letters": svc_sum("telex_dlq_records_total"),
            "enrich_failures": svc_sum("telex_processor_enrich_failures_total"),
            "gateway_slow_disconnects": svc_sum("telex_gateway_slow_disconnects_total"),
            "gateway_resyncs": svc_sum("telex_gateway_resyncs_total"),
            "gateway_frames_sent": svc_sum("telex_gateway_frames_sent_total"),
            "notifier_attempts": svc_sum("telex_notifier_attempts_total"),
            "notifier_retries": svc_sum("telex_notifier_retries_scheduled_total"),
            "notifier_dead_letters": svc_sum("telex_notifier_dead_letters_total"),
            "notifier_disabled": svc_sum("telex_notifier_subscriptions_disabled_total"),
            # The services' own view: wire record timestamp -> frames written (gateway), and
            # detected -> event on the wire (processor); means, from their histograms.
            "gateway_delivery_latency_mean_ms": mean_ms(svc, "telex_gateway_delivery_latency"),
            "end_to_end_latency_mean_ms": mean_ms(svc, "telex_end_to_end_latency"),
        },
        # telex_pipeline_hop_seconds of every process, p50/p99/mean ms per hop, whole run.
        "hops_ms": hop_table(svc),
        "log_warnings": warnings,
        "log_errors": errors,
        "logs": logs,
        "topics": result["topics"],
        "processes": resources(run, stop_at),
        "processor_lag_series": [[round(t), lag] for t, lag, _ in run.lag],
        "exit_codes": codes,
        "workdir": str(run.workdir),
    }
    report["problems"] = problems(report)
    return report


def hop_table(services: dict[str, dict[str, float]]) -> dict[str, dict[str, float | None]]:
    """Per hop (poller saw -> ... -> subscriber), from the services' own histograms."""
    from latency import hop_quantiles  # it imports this module: not at the top

    return hop_quantiles({}, services, "telex_pipeline_hop_seconds")


def mean_ms(services: dict[str, dict[str, float]], histogram: str) -> float | None:
    total = sum(m.get(f"{histogram}_seconds_sum", 0.0) for m in services.values())
    count = sum(m.get(f"{histogram}_seconds_count", 0.0) for m in services.values())
    return round(1000 * total / count, 1) if count else None


def problems(r: dict[str, Any]) -> list[str]:
    """What ``--check`` fails on: anything lost, doubled, out of order, or resynced."""
    out = []
    svc = r["services"]
    if r["published"] == 0:
        out.append("nothing was published")
    out += _subscriber_problems(r["subscribers"]) + _receiver_problems(r["receivers"])
    if svc["dead_letters"] or svc["notifier_dead_letters"]:
        out.append("dead letters were written")
    for name, topic in r.get("topics", {}).items():
        if topic.get("missing") or topic.get("late"):
            out.append(
                f"the {name} topic misses {topic.get('missing', 0)} entries and has "
                f"{topic.get('late', 0)} out of per-source order"
            )
    if r["drained_s"] is None:
        out.append("the pipeline did not deliver everything within --drain")
    return out


def _subscriber_problems(s: dict[str, Any]) -> list[str]:
    out = []
    if s["lost"]:
        out.append(f"{s['lost']} deliveries lost at {s['with_loss']} subscribers")
    if s["duplicates"]:
        out.append(f"{s['duplicates']} duplicate or out-of-order deliveries at subscribers")
    if s["unexpected"]:
        out.append(f"{s['unexpected']} deliveries outside a subscriber's filter")
    if s["resyncs"]:
        out.append(f"{s['resyncs']} resyncs at subscribers")
    return out


def _receiver_problems(h: dict[str, Any]) -> list[str]:
    out = []
    if h["lost"]:
        out.append(f"{h['lost']} webhook deliveries lost at {h['receivers_with_loss']} receivers")
    if h["duplicates"]:
        out.append(f"{h['duplicates']} duplicate webhook deliveries")
    if h["unexpected"] or h["bad_bodies"]:
        out.append(f"{h['unexpected']} unexpected and {h['bad_bodies']} unreadable webhooks")
    return out


def fmt_lat(block: dict[str, Any]) -> str:
    p = block["all"]
    if not p.get("count"):
        return "no samples"
    return f"p50 {p['p50']} ms, p99 {p['p99']} ms, p99.9 {p['p999']} ms, max {p['max']} ms"


def summary(r: dict[str, Any]) -> str:
    s, h, svc, st = r["subscribers"], r["receivers"], r["services"], r["settings"]
    lines = [
        f"soak: {st['duration']:.0f} s at {st['rate']:,.0f}/s over {st['sources']} sources, "
        f"{s['count']:,} WebSocket subscribers ({s['firehose']} firehose), "
        f"{h['receivers']} webhook receivers, {st['processors']} processor(s)",
        f"published {r['published']:,} ({r['published_per_s']:,.0f}/s); wire events "
        f"{svc['processor_events']:,.0f}; processor lag at stop {r['processor_lag_at_stop']:,.0f}"
        f" (max {r['processor_lag_max']:,.0f}); drained in "
        + (f"{r['drained_s']:.1f} s" if r["drained_s"] is not None else "NOT within --drain")
        + ("; rate held" if r["sustained"] else "; rate NOT held (backlog > 2 s or drain > 10 s)"),
        "",
        "latency, detected -> received (the target: p99 under 50 ms):",
        f"  WebSocket: {fmt_lat(s['latency_detected_ms'])}",
        f"  webhooks:  {fmt_lat(h['latency_detected_ms'])}",
        "latency, published at the source -> received (adds the poll interval):",
        f"  WebSocket: {fmt_lat(s['latency_published_ms'])}",
        f"  webhooks:  {fmt_lat(h['latency_published_ms'])}",
        "latency, emitted by the processor -> received (the wire, gateway or notifier):",
        f"  WebSocket: {fmt_lat(s['latency_processed_ms'])}",
        f"  webhooks:  {fmt_lat(h['latency_processed_ms'])}",
        "",
        f"subscribers: {s['received']:,} of {s['expected']:,} expected deliveries; lost "
        f"{s['lost']}, duplicates {s['duplicates']}, outside filter {s['unexpected']}; "
        f"dropped connections {s['drops']}, resyncs {s['resyncs']}, closes {s['closes']}",
        f"webhooks: {h['deliveries']:,} deliveries for {h['expected']:,} expected; lost "
        f"{h['lost']}, duplicates {h['duplicates']} (same webhook-id {h['redeliveries']}); "
        f"attempts {svc['notifier_attempts']:,.0f}, retries {svc['notifier_retries']:,.0f}, "
        f"dead letters {svc['notifier_dead_letters']:,.0f}",
        f"services: dead letters {svc['dead_letters']:,.0f}, poller errors "
        f"{svc['poller_errors']:,.0f}, slow disconnects {svc['gateway_slow_disconnects']:,.0f}, "
        f"gateway resyncs {svc['gateway_resyncs']:,.0f}; log lines: {r['log_warnings']} "
        f"warnings, {r['log_errors']} errors",
        "pipeline stages from the wire's timings (p50/p99 ms): "
        + ", ".join(
            f"{name} {p.get('p50')}/{p.get('p99')}"
            for name, p in r["topics"].get("wire", {}).get("stages_ms", {}).items()
        ),
        "per hop, telex_pipeline_hop_seconds (p50/p99/mean ms): "
        + ", ".join(
            f"{hop} {p.get('p50')}/{p.get('p99')}/{p.get('mean')}"
            for hop, p in r.get("hops_ms", {}).items()
        ),
        "topics (per-source order as Kafka holds it): "
        + "; ".join(
            f"{name} {t.get('records', 0):,} records, {t.get('repeats', 0)} repeats, "
            f"{t.get('late', 0)} out of order, {t.get('missing', 0)} missing"
            for name, t in r["topics"].items()
        ),
        "",
        "throughput per minute (published / wire events / subscriber deliveries / webhooks):",
    ]
    tp = r["throughput_per_minute"]
    for m in sorted(set().union(*(set(v) for v in tp.values()))):
        lines.append(
            f"  min {m}: {tp['published'].get(m, 0):>9,} / {tp['wire_events'].get(m, 0):>9,.0f}"
            f" / {tp['subscriber_deliveries'].get(m, 0):>11,} / "
            f"{tp['webhook_deliveries'].get(m, 0):>9,}"
        )
    lat = s["latency_detected_ms"]["per_minute"]
    if lat:
        lines.append("WebSocket p99 per minute (detected -> received): " + ", ".join(
            f"{m}: {p.get('p99', '-')} ms" for m, p in lat.items()
        ))  # fmt: skip
    cpu = sum(p["cpu_percent"] for p in r["processes"].values())
    lines += [
        "",
        f"CPU of all processes: {cpu:.0f} % of one core ({r['machine']['cpus']} cores); the "
        f"gateway's own mean delivery latency {svc['gateway_delivery_latency_mean_ms']} ms",
        "process          CPU %   RSS MB: first  early   late    max  growth",
    ]
    for name, p in sorted(r["processes"].items()):
        lines.append(
            f"  {name:<14}{p['cpu_percent']:6.0f}   {p['rss_mb_first']:12.0f}"
            f"{p['rss_mb_early']:7.0f}{p['rss_mb_late']:7.0f}{p['rss_mb_max']:7.0f}"
            f"{p['rss_growth_mb']:+8.1f}"
        )
    lines.append("")
    lines.append(
        "problems: " + ("; ".join(r["problems"]) if r["problems"] else "none (nothing lost, "
        "nothing twice, per-source order held at every subscriber)")
    )  # fmt: skip
    return "\n".join(lines)


def firehose_count(args: argparse.Namespace) -> int:
    """Subscribers taking the whole wire: at least one when the share is not zero."""
    if args.firehose <= 0 or not args.subscribers:
        return 0
    return min(args.subscribers, max(1, round(args.subscribers * args.firehose)))


def make_workdir(path: str) -> Path:
    workdir = Path(path or tempfile.mkdtemp(prefix="telex-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir


def write_json(path: Path, report: dict[str, Any]) -> Path:
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    return path


async def orchestrate(args: argparse.Namespace) -> int:
    raise_fd_limit(args.subscribers + 2000)
    workdir = make_workdir(args.workdir)
    run = Run(args, workdir)
    hooks = args.rate * args.receivers * 2 / args.sources
    print(f"soak: logs and the JSON in {workdir}; {hooks:,.0f} webhooks/s at full rate", flush=True)
    codes: dict[str, int | None] = {}
    try:
        if not args.bootstrap:
            await run.start_broker()
        await run.start()
        fanout = sum(args.sources if s is None else len(s) for s in run.specs) / args.sources
        print(
            f"soak: pipeline ready, {len(run.specs):,} subscribers connected ({fanout:,.1f} "
            f"frames per update: {fanout * args.rate:,.0f} frames/s at full rate); publishing",
            flush=True,
        )
        result = await run.soak()
    finally:
        codes = await run.stop()
    report = build_report(run, result, codes)
    out = write_json(Path(args.json or workdir / "soak.json"), report)
    print(summary(report))
    print(f"\nJSON: {out}")
    return 1 if args.check and report["problems"] else 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="role")
    p = sub.add_parser("_sources")
    p.add_argument("--sources", type=int, required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--window", type=int, required=True)
    p.add_argument("--seed", type=int, default=1)
    p = sub.add_parser("_subscribers")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cursor", required=True)
    p.add_argument("--spec", required=True)
    p = sub.add_parser("_receivers")
    p.add_argument("--count", type=int, required=True)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of publishing")
    parser.add_argument("--rate", type=float, default=1000.0, help="updates/s, all sources")
    parser.add_argument("--sources", type=int, default=200)
    parser.add_argument("--subscribers", type=int, default=5000)
    parser.add_argument("--receivers", type=int, default=50)
    parser.add_argument(
        "--firehose", type=float, default=0.02, help="share of subscribers taking everything"
    )
    parser.add_argument("--views", type=int, default=250, help="distinct filtered views")
    parser.add_argument("--client-procs", type=int, default=2, help="subscriber processes")
    parser.add_argument("--processors", type=int, default=1, help="telex processor processes")
    parser.add_argument("--partitions", type=int, default=0, help="default: max(3, processors)")
    parser.add_argument(
        "--poll-interval", type=float, default=2.0, help="seconds per source (telex's default)"
    )
    parser.add_argument("--window", type=int, default=0, help="entries per feed (default: auto)")
    parser.add_argument("--drain", type=float, default=120.0, help="most seconds to catch up")
    parser.add_argument("--progress", type=float, default=10.0, help="seconds between lines")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bootstrap", default="", help="Kafka to use (default: embedded)")
    parser.add_argument(
        "--idempotence",
        choices=("auto", "on", "off"),
        default="",
        help="TELEX_KAFKA_IDEMPOTENCE (default: off on the embedded broker, else auto)",
    )
    parser.add_argument("--workdir", default="", help="logs and specs (default: a temp dir)")
    parser.add_argument("--json", default="", help="where to write the JSON result")
    parser.add_argument("--check", action="store_true", help="exit 1 on loss or duplicates")
    args = parser.parse_args(argv)
    if args.role is None:
        args.partitions = args.partitions or max(3, args.processors)
        # A feed must show every entry published between two polls, with a margin for a late
        # poll: five intervals' worth, at least 20 (a live blog's page shows 20-50).
        per_source = args.rate / args.sources * args.poll_interval
        args.window = args.window or max(20, math.ceil(5 * per_source))
    return args


def main() -> None:
    args = parse()
    if args.role == "_sources":
        asyncio.run(child_sources(args))
        return
    if args.role == "_subscribers":
        asyncio.run(child_subscribers(args, orjson.loads(Path(args.spec).read_bytes())))
        return
    if args.role == "_receivers":
        asyncio.run(child_receivers(args))
        return

    run_orchestrator("soak", orchestrate(args))


def run_orchestrator(name: str, orchestration: Coroutine[Any, Any, int]) -> None:
    """Run a benchmark's orchestration and exit with its status; SIGTERM and Ctrl-C cancel it
    (which stops every child) and exit 130."""

    async def guarded() -> int:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await orchestration

    try:
        sys.exit(asyncio.run(guarded()))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(f"{name}: interrupted; every child stopped", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
