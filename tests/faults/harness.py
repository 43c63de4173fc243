"""The whole pipeline as separate processes, fed by local sources, watched by a recording
WebSocket subscriber and a recording webhook receiver.

Each service runs as ``telex <role>`` (``telex.testing.TelexProcess``) on the session's broker,
with its own topics and groups (``make_config``), on a fixed port so that a restarted process is
found where the killed one was. The sources are JSON Feeds on a local HTTP server whose items
grow over time; every item has a known id, so the test knows exactly which updates must arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import websockets
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from telex.config import Config, load
from telex.events import update_id
from telex.gateway.cursor import encode_cursor
from telex.runtime import serve_http
from telex.testing import TelexProcess
from tests.integration.webhook_receivers import Received, Receiver

ROLES = ("poller", "processor", "gateway", "notifier")


@dataclass
class Sources:
    """JSON Feeds at ``/feed/<source>``; a source can be switched to a failure ``mode``:
    ``500``, ``hang`` (no answer until the mode changes), ``garbage`` (200 with bytes that are
    no feed)."""

    names: list[str]
    items: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    mode: dict[str, str] = field(default_factory=dict)
    base: str = ""
    published: list[tuple[str, str]] = field(default_factory=list)  # (source, entry id)

    def url(self, source: str) -> str:
        return f"{self.base}/feed/{source}"

    def publish(self, source: str) -> None:
        """A new entry at the top of ``source``'s feed."""
        items = self.items.setdefault(source, [])
        n = len(items)
        entry = f"{source}-e{n:04d}"
        items.insert(
            0,
            {
                "id": entry,
                "content_text": f"Dispatch {n} from {source}: item {entry} was filed.",
                "date_published": f"2026-11-27T10:{n // 60:02d}:{n % 60:02d}Z",
            },
        )
        self.published.append((source, entry))

    def expected(self) -> dict[str, tuple[str, int]]:
        """Update id -> (source, rank in its source) of every entry published so far."""
        out: dict[str, tuple[str, int]] = {}
        rank: Counter[str] = Counter()
        for source, entry in self.published:
            out[update_id(source, entry)] = (source, rank[source])
            rank[source] += 1
        return out

    async def handle(self, request: Request) -> Response:
        source = request.path_params["source"]
        mode = self.mode.get(source, "ok")
        if mode == "500":
            return Response("upstream broke", status_code=500)
        if mode == "hang":
            # Until the test heals the source (bounded, so a forgotten hang cannot block
            # the server's shutdown for long).
            for _ in range(600):
                if self.mode.get(source) != "hang":
                    break
                await asyncio.sleep(0.1)
        if mode == "garbage":
            return Response(b"\x00\xff{not json <html", media_type="application/feed+json")
        feed = {
            "version": "https://jsonfeed.org/version/1.1",
            "title": source,
            "items": self.items.get(source, []),
        }
        return Response(orjson.dumps(feed), media_type="application/feed+json")


@contextlib.asynccontextmanager
async def serving_sources(names: list[str]) -> AsyncIterator[Sources]:
    sources = Sources(names)
    app = Starlette(routes=[Route("/feed/{source}", sources.handle)])
    async with serve_http(app, "127.0.0.1", 0) as base:
        sources.base = base
        yield sources


@dataclass
class Subscriber:
    """A WebSocket client that records every event and, whenever its connection drops,
    reconnects with the last cursor it was given, as a client is told to."""

    url: str
    cursor: str
    events: list[dict[str, Any]] = field(default_factory=list)
    resyncs: list[dict[str, Any]] = field(default_factory=list)
    resync_at: list[int] = field(default_factory=list)  # len(events) at each resync
    connects: int = 0

    async def run(self) -> None:
        while True:
            try:
                async with websockets.connect(
                    f"{self.url}/v1/stream?cursor={self.cursor}", open_timeout=5
                ) as ws:
                    self.connects += 1
                    async for message in ws:
                        frame = orjson.loads(message)
                        if "cursor" in frame:
                            self.cursor = frame["cursor"]
                        if frame["type"] == "event":
                            self.events.append(frame["event"])
                        elif frame["type"] == "resync":
                            self.resyncs.append(frame)
                            self.resync_at.append(len(self.events))
            except (OSError, TimeoutError, websockets.WebSocketException):
                pass
            await asyncio.sleep(0.2)

    def update_ids(self) -> list[str]:
        return [e["data"]["id"] for e in self.events]


def received_updates(receiver: Receiver, hook: HookFaults | None = None) -> list[tuple[str, str]]:
    """(webhook-id, update id) of every request the receiver got (with ``hook``: of every
    request it acknowledged with a 2xx)."""
    out = []
    for request in receiver.requests if hook is None else hook.accepted(receiver):
        try:
            body = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            # A request cut off by the SIGKILL of the notifier sending it (seen as an empty
            # body): the notifier never had an answer and sends the update again.
            continue
        out.append((request.headers["webhook-id"], body["data"]["id"]))
    return out


@dataclass
class HookFaults:
    """How the recording webhook receiver answers, switched by the test: ``ok`` (204),
    ``500``, ``hang`` (holds the request ``hang_seconds``, longer than the notifier's timeout,
    then answers 504 to a client that has long gone), ``429`` (with ``Retry-After:
    retry_after``). ``answers[n]`` is what request ``n`` (1-based, as the receiver counts)
    was answered: the status, or ``None`` for a hang."""

    mode: str = "ok"
    hang_seconds: float = 3.0
    retry_after: int = 2
    answers: dict[int, int | None] = field(default_factory=dict)

    async def respond(self, n: int, _: Received) -> tuple[int, dict[str, str]]:
        mode = self.mode
        if mode == "hang":
            self.answers[n] = None
            await asyncio.sleep(self.hang_seconds)
            return 504, {}
        status, headers = {
            "ok": (204, {}),
            "500": (500, {}),
            "429": (429, {"retry-after": str(self.retry_after)}),
        }[mode]
        self.answers[n] = status
        return status, headers

    def accepted(self, receiver: Receiver) -> list[Received]:
        """The requests answered 2xx: the deliveries the receiver acknowledged."""
        return [
            request
            for n, request in enumerate(receiver.requests, 1)
            if (status := self.answers.get(n, 200)) is not None and 200 <= status < 300
        ]


class Pipeline:
    """poller, processor, gateway and notifier as ``telex <role>`` processes."""

    def __init__(
        self, config: Config, sources: Sources, tmp: Path, env: dict[str, str] | None = None
    ) -> None:
        jsonfeeds = [{"id": n, "url": sources.url(n), "kind": "jsonfeed"} for n in sources.names]
        settings = {
            "TELEX_SOURCES": orjson.dumps(jsonfeeds).decode(),
            "TELEX_POLLER_ALLOW_NETWORKS": "127.0.0.0/8",
            "TELEX_NOTIFIER_ALLOW_NETWORKS": "127.0.0.0/8",
            # Short enough that a fault heals within the test's bounds.
            "TELEX_NOTIFIER_RETRY_SCHEDULE": "0.5,1,2,2,2,2,2,2",
            "TELEX_NOTIFIER_TIMEOUT": "5",
            "TELEX_POLLER_INTERVAL": "0.3",
            "TELEX_POLLER_ADAPTIVE_MAX": "1",
            "TELEX_POLLER_BACKOFF_MAX": "1.5",
            "TELEX_POLLER_TIMEOUT": "2",
            "TELEX_GATEWAY_HEARTBEAT_INTERVAL": "1",
            "TELEX_KAFKA_TOPIC_CHECK_INTERVAL_S": "1",
            "TELEX_LOG_LEVEL": "info",
            **(env or {}),
        }
        self.config = load(None, {**config.to_environ(), **settings})
        self.sources = sources
        # Each on a port of its own, kept across restarts: a restarted process is found
        # where the killed one was.
        self.procs = {
            role: TelexProcess(role, self.config, log=tmp / f"{role}.log") for role in ROLES
        }
        self.kills: list[tuple[str, float]] = []  # (role, time.monotonic() of the SIGKILL)

    @property
    def starts(self) -> Counter[str]:
        """How many times each role was started."""
        return Counter({role: p.starts for role, p in self.procs.items() if p.starts})

    @property
    def gateway_url(self) -> str:
        return self.api("gateway").replace("http", "ws", 1)

    def api(self, role: str) -> str:
        return self.procs[role].url

    def start_cursor(self) -> str:
        """The very beginning of the wire: the subscriber must see all of it."""
        return encode_cursor(dict.fromkeys(range(self.config.topics.partitions), 0))

    async def start(self, role: str) -> None:
        self.procs[role].start()

    async def kill(self, role: str) -> None:
        self.kills.append((role, time.monotonic()))
        await self.procs[role].kill()

    def rss_mib(self) -> dict[str, float]:
        """Resident memory of each running process, in MiB (VmRSS from /proc)."""
        out: dict[str, float] = {}
        for role, proc in self.procs.items():
            if not proc.running:
                continue
            status = Path(f"/proc/{proc.pid}/status").read_text()
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    out[role] = int(line.split()[1]) / 1024  # kB
        return out

    def logs(self, role: str) -> str:
        return self.procs[role].log_text()[-6000:]

    async def wait_ready(self, timeout: float = 60, roles: tuple[str, ...] = ROLES) -> None:
        """Every process answers /readyz with 200 (within ``timeout`` seconds each)."""
        for role in roles:
            await self.procs[role].wait_ready(timeout)
            assert self.procs[role].running, self.logs(role)

    async def stop(self) -> dict[str, int | None]:
        """SIGTERM every process; their exit codes."""
        codes = await asyncio.gather(*(p.stop() for p in self.procs.values()))
        return dict(zip(self.procs, codes, strict=True))


async def feed(sources: Sources, rng: random.Random, until: asyncio.Event, tail: int) -> None:
    """Entries on random sources, about ten a second, until ``until`` is set; then ``tail``
    more, so that entries are still flowing when the last fault happens."""
    while not until.is_set():
        sources.publish(rng.choice(sources.names))
        await asyncio.sleep(rng.uniform(0.05, 0.15))
    for _ in range(tail):
        sources.publish(rng.choice(sources.names))
        await asyncio.sleep(rng.uniform(0.05, 0.15))


async def metric(pipeline: Pipeline, role: str, series: str) -> float:
    """The value of ``series`` (``name`` or ``name{label="value"}`` exactly as exposed) in
    ``role``'s process; 0 when it is not exposed yet."""
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"{pipeline.api(role)}/metrics")).text
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def create_webhook(pipeline: Pipeline, url: str) -> str:
    """A subscription to everything, created through the notifier's API; its id."""
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            f"{pipeline.api('notifier')}/v1/webhooks", json={"url": url, "filter": {}}
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])


async def wait_until_delivered(
    sources: Sources,
    subscriber: Subscriber,
    receiver: Receiver,
    timeout: float,
    hook: HookFaults | None = None,
) -> None:
    """Until every published update reached the subscriber and the receiver (acknowledged by
    it, with ``hook``)."""
    wanted = set(sources.expected())
    try:
        async with asyncio.timeout(timeout):
            while True:
                got_ws = set(subscriber.update_ids())
                got_hook = {uid for _, uid in received_updates(receiver, hook)}
                if wanted <= got_ws and wanted <= got_hook:
                    return
                await asyncio.sleep(0.25)
    except TimeoutError:
        missing_ws = wanted - set(subscriber.update_ids())
        missing_hook = wanted - {uid for _, uid in received_updates(receiver, hook)}
        raise AssertionError(
            f"after {timeout}s: {len(missing_ws)} of {len(wanted)} missing at the subscriber "
            f"({sorted(missing_ws)[:5]}), {len(missing_hook)} at the webhook receiver "
            f"({sorted(missing_hook)[:5]})"
        ) from None


async def wait_until_settled(
    pipeline: Pipeline,
    subscriber: Subscriber,
    receiver: Receiver,
    timeout: float,
    hook: HookFaults | None = None,
) -> None:
    """Until a sentinel entry, published now on every source after all the others, reached
    the subscriber and the receiver, and the notifier holds no delivery back (no retry
    pending, nothing queued). Kafka keeps a partition's order and a source's updates share
    one: a late duplicate of anything before a sentinel would have come before it."""
    sources = pipeline.sources
    for name in sources.names:
        sources.publish(name)
    await wait_until_delivered(sources, subscriber, receiver, timeout, hook)
    held = ("telex_notifier_pending_retries", "telex_notifier_queued_deliveries")
    try:
        async with asyncio.timeout(timeout):
            while any([await metric(pipeline, "notifier", series) for series in held]):
                await asyncio.sleep(0.25)
    except TimeoutError:
        values = [await metric(pipeline, "notifier", series) for series in held]
        raise AssertionError(f"the notifier still holds deliveries back: {values}") from None


def check_exactly_once_in_order(
    sources: Sources,
    subscriber: Subscriber,
    receiver: Receiver,
    kills: list[tuple[str, float]] = [],  # noqa: B006 (never mutated)
    hook: HookFaults | None = None,
) -> None:
    """Nothing lost, nothing twice, per-source order at the subscriber.

    A webhook delivery is repeated only if a notifier was SIGKILLed right after the receiver
    answered it (``kills``), before the attempt was recorded; it then keeps its webhook-id.
    Every other repeat fails. With ``hook`` (a receiver that also fails), a delivery counts
    when the receiver acknowledged it (2xx): failed attempts are retried under the same
    webhook-id, and each must be acknowledged exactly once."""
    expected = sources.expected()
    t0 = receiver.requests[0].at if receiver.requests else 0.0
    ids = subscriber.update_ids()
    twice = [uid for uid, n in Counter(ids).items() if n > 1]
    assert not twice, f"subscriber got {len(twice)} updates twice: {twice[:5]}"
    assert set(ids) == set(expected), "subscriber got updates no source published"
    assert not subscriber.resyncs, f"subscriber was told to resync: {subscriber.resyncs}"
    by_source: dict[str, list[int]] = {}
    for uid in ids:
        source, rank = expected[uid]
        by_source.setdefault(source, []).append(rank)
    for source, ranks in by_source.items():
        assert ranks == sorted(ranks), f"{source} out of order at the subscriber: {ranks}"

    per_update: dict[str, set[str]] = {}
    for webhook_id, uid in received_updates(receiver):  # every attempt, failed or not
        per_update.setdefault(uid, set()).add(webhook_id)
    assert set(per_update) == set(expected), "receiver got updates no source published"
    split = {u: w for u, w in per_update.items() if len(w) > 1}
    assert not split, f"one update under several webhook-ids: {split}"
    arrivals: dict[str, list[float]] = {}
    for request in receiver.requests if hook is None else hook.accepted(receiver):
        arrivals.setdefault(request.headers["webhook-id"], []).append(request.at)
    twice = {w: at for w, at in arrivals.items() if len(at) > 1}
    notifier_kills = [k for role, k in kills if role == "notifier"]
    unexplained = {w: at for w, at in twice.items() if not _kill_window(at, notifier_kills)}
    assert not unexplained, (
        "receiver got webhook-ids twice: "
        + "; ".join(
            f"{w} at {[round(a - t0, 3) for a in at]}" for w, at in list(unexplained.items())[:5]
        )
        + f" (kills at {[(r, round(k - t0, 3)) for r, k in kills]})"
    )


# How long a notifier may take between a receiver's 2xx and the attempt record that makes
# its successors skip the delivery. Generous: the machine is shared and loaded.
ACK_WINDOW = 2.0


def _kill_window(arrivals: list[float], kills: list[float]) -> bool:
    """True when every repeat of a delivery follows a notifier SIGKILL that came at most
    ACK_WINDOW from the previous copy (bytes a killed process had written may still arrive
    just after the kill): the at-least-once window the notifier documents
    (docs/webhooks.md), which no sender can close without the receiver's idempotency key."""
    return all(
        any(abs(kill - first) <= ACK_WINDOW and kill <= again for kill in kills)
        for first, again in itertools.pairwise(arrivals)
    )
