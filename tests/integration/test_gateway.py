"""The gateway with real WebSocket clients, on the real broker: filters, resume on the same and
on a second gateway with no gap and no duplicate, resync, slow clients, bad frames."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from telex.config import Config
from telex.gateway.cursor import encode_cursor
from telex.gateway.endpoint import WebSocketEndpoint
from telex.kafka import Clients, ensure_topics, required_topics
from telex.testing import TelexProcess
from tests.conftest import Broker, sample

from .gateway_helpers import (
    close_code,
    events,
    gateway,
    produce,
    producer,
    quiet,
    recv,
    recv_type,
    wait_for,
    wire_event,
)


def with_gateway(config: Config, **settings: Any) -> Config:
    return config.model_copy(update={"gateway": config.gateway.model_copy(update=settings)})


def ids(frames: list[dict[str, Any]]) -> list[str]:
    return [f["event"]["id"] for f in frames]


async def test_filters_from_query_and_subscribe_ops(
    broker: Broker, config_factory: Callable[..., Config]
) -> None:
    config = config_factory(broker.bootstrap)
    lavrov = [{"text": "Sergey Lavrov", "type": "person", "start": 0, "end": 13}]
    batch = [
        wire_event(1, "bbc", "NATO summit opens", tags=["nato"], entities=lavrov),
        wire_event(2, "reuters", "Markets calm", language="de", tags=["markets"]),
        wire_event(3, "bbc", "Weather", language="fr", type_="telex.update.revised"),
        wire_event(4, "ap", "Lavrov said NATO ...", tags=["nato", "russia"], entities=lavrov),
    ]
    async with gateway(config) as (_, gw, url), producer(broker.bootstrap) as kafka:
        by_query = await websockets.connect(f"{url}/v1/stream?sources=bbc&backlog=0")
        everything = await websockets.connect(f"{url}/v1/stream?backlog=0")
        by_ops = await websockets.connect(f"{url}/v1/stream?subscribe=none")
        await by_ops.send(
            orjson.dumps({"op": "subscribe", "id": "n", "filter": {"tags": ["NATO"]}}).decode()
        )
        assert (await recv(by_ops))["type"] == "subscribed"
        spec = {"entities": ["sergey lavrov"], "terms": ["lavrov said"]}
        await by_ops.send(orjson.dumps({"op": "subscribe", "id": "lav", "filter": spec}).decode())
        assert (await recv(by_ops)) == {"type": "subscribed", "id": "lav", "filter": spec}
        de = await websockets.connect(f"{url}/v1/stream?languages=de,fr&types=created")
        await wait_for(lambda: len(gw.hub.conns) == 4)
        # The fast path (shared frames written straight to each socket) is in use.
        assert all(conn.transport is not None for conn in gw.hub.conns)
        assert all(isinstance(conn.transport, WebSocketEndpoint) for conn in gw.hub.conns)
        assert len(gw.hub.groups) == 5  # one per distinct filter; by_ops has two
        await produce(kafka, config.topics.wire, batch)

        # One source is one partition: in order. Across sources the wire has no order.
        assert ids(await events(by_query, 2)) == [batch[0]["id"], batch[2]["id"]]
        assert sorted(ids(await events(everything, 4))) == [e["id"] for e in batch]
        # Union of "nato" tag and "lavrov said": events 1 and 4, each once.
        assert sorted(ids(await events(by_ops, 2))) == [batch[0]["id"], batch[3]["id"]]
        assert ids(await events(de, 1)) == [batch[1]["id"]]
        for ws in (by_query, by_ops, de):
            assert [f for f in await quiet(ws, 0.3) if f["type"] == "event"] == []

        # Dropping a subscription applies from now on.
        await by_ops.send(orjson.dumps({"op": "unsubscribe", "id": "n"}).decode())
        assert (await recv(by_ops)) == {"type": "unsubscribed", "id": "n"}
        more = [wire_event(5, "bbc", "NATO again", tags=["nato"])]
        more.append(wire_event(6, "ap", "Lavrov said", entities=lavrov))
        await produce(kafka, config.topics.wire, more)
        assert ids(await events(by_ops, 1)) == [more[1]["id"]]
        for ws in (by_query, everything, by_ops, de):
            await ws.close()


async def _consume_until(ws: Any, wanted: set[str], got: list[dict[str, Any]], n: int) -> str:
    """Read events into ``got`` until ``n`` more arrived; return the last cursor."""
    frames = await events(ws, n, timeout=30)
    got.extend(frames)
    return str(frames[-1]["cursor"])


async def test_resume_on_same_and_second_gateway_without_gap_or_duplicate(
    broker: Broker, config_factory: Callable[..., Config]
) -> None:
    config = config_factory(broker.bootstrap)
    # The second gateway remembers almost nothing: its resume must read Kafka.
    small = with_gateway(config, history_size=3)
    total = 240
    batch = [wire_event(i, ("a", "b", "c", "d")[i % 4]) for i in range(total)]
    wanted = [e for e in batch if e["data"]["source_id"] in ("a", "b", "c")]
    async with (
        gateway(config) as (_, _, url1),
        gateway(small) as (_, gw2, url2),
        producer(broker.bootstrap) as kafka,
    ):

        async def keep_producing() -> None:
            for i in range(0, total, 8):
                await produce(kafka, config.topics.wire, batch[i : i + 8])
                await asyncio.sleep(0.01)

        feeder = asyncio.create_task(keep_producing())
        got: list[dict[str, Any]] = []
        query = "sources=a,b,c&backlog=0"
        async with websockets.connect(f"{url1}/v1/stream?{query}") as ws:
            cursor = await _consume_until(ws, set(), got, 20)
        # Events keep flowing while we are away.
        async with websockets.connect(f"{url1}/v1/stream?{query}&cursor={cursor}") as ws:
            cursor = await _consume_until(ws, set(), got, 40)
        await asyncio.sleep(0.3)
        before = sample("telex_gateway_replayed_events_total", source="kafka")
        async with websockets.connect(f"{url2}/v1/stream?{query}&cursor={cursor}") as ws:
            await _consume_until(ws, set(), got, len(wanted) - len(got))
            await feeder
            assert [f for f in await quiet(ws, 0.5) if f["type"] == "event"] == []
        assert sample("telex_gateway_replayed_events_total", source="kafka") > before
        assert gw2.hub.ring.size == 3

    received = ids(got)
    assert len(received) == len(set(received)), "duplicate delivery"
    assert set(received) == {e["id"] for e in wanted}, "gap"
    # In order per source (the wire's order within a partition).
    for source in "abc":
        ns = [
            f["event"]["data"]["entry_id"] for f in got if f["event"]["data"]["source_id"] == source
        ]
        assert [int(n) for n in ns] == sorted(int(n) for n in ns)


async def test_resume_by_subscribe_op_and_live_marker(
    broker: Broker, config_factory: Callable[..., Config]
) -> None:
    config = config_factory(broker.bootstrap)
    batch = [wire_event(i, "a") for i in range(10)]
    async with gateway(config) as (_, gw, url), producer(broker.bootstrap) as kafka:
        await produce(kafka, config.topics.wire, batch[:6])
        await wait_for(lambda: sum(gw.hub.positions.values()) == 6)
        async with websockets.connect(f"{url}/v1/stream?backlog=0") as ws:
            assert await quiet(ws, 0.3) == []  # no backlog asked for
        async with websockets.connect(f"{url}/v1/stream?backlog=2") as ws:
            frames = await events(ws, 2)
            assert ids(frames) == [batch[4]["id"], batch[5]["id"]]
            cursor = frames[0]["cursor"]  # as if the client had only seen event 4
        await produce(kafka, config.topics.wire, batch[6:])
        await wait_for(lambda: sum(gw.hub.positions.values()) == 10)
        async with websockets.connect(f"{url}/v1/stream?subscribe=none") as ws:
            await ws.send(orjson.dumps({"op": "subscribe", "cursor": cursor}).decode())
            assert (await recv(ws))["type"] == "subscribed"
            assert ids(await events(ws, 5)) == [e["id"] for e in batch[5:]]
            live = await recv_type(ws, "live")
            assert live["replayed"] == 5


async def test_too_old_or_foreign_cursor_gets_resync_or_error(
    broker: Broker, config_factory: Callable[..., Config]
) -> None:
    config = with_gateway(config_factory(broker.bootstrap), max_replay_events=5)
    batch = [wire_event(i, "a") for i in range(12)]
    async with gateway(config) as (_, gw, url), producer(broker.bootstrap) as kafka:
        await produce(kafka, config.topics.wire, batch)
        await wait_for(lambda: sum(gw.hub.positions.values()) == 12)
        start = encode_cursor(dict.fromkeys(gw.hub.positions, 0))
        before = sample("telex_gateway_resyncs_total")
        async with websockets.connect(f"{url}/v1/stream?cursor={start}") as ws:
            resync = await recv_type(ws, "resync")
            assert "12 events behind" in resync["reason"]
            assert resync["cursor"] == gw.hub.head_cursor()
            # Then live, from the head: nothing old, the next new event.
            await produce(kafka, config.topics.wire, [wire_event(99, "a")])
            assert ids(await events(ws, 1)) == [wire_event(99, "a")["id"]]
        assert sample("telex_gateway_resyncs_total") == before + 1

        ahead = encode_cursor(dict.fromkeys(gw.hub.positions, 10_000))
        async with websockets.connect(f"{url}/v1/stream?subscribe=none") as ws:
            await ws.send(orjson.dumps({"op": "subscribe", "cursor": ahead}).decode())
            await recv_type(ws, "subscribed")
            assert "ahead of the wire" in (await recv_type(ws, "resync", timeout=15))["reason"]
        foreign = encode_cursor({0: 1, 77: 1})
        async with websockets.connect(f"{url}/v1/stream?subscribe=none") as ws:
            await ws.send(orjson.dumps({"op": "subscribe", "id": "x", "cursor": foreign}).decode())
            await recv_type(ws, "subscribed")
            error = await recv_type(ws, "error")
            assert error["code"] == "bad_cursor" and "[77]" in error["error"]
        async with websockets.connect(f"{url}/v1/stream?cursor={foreign}") as ws:
            assert (await recv_type(ws, "error"))["code"] == "bad_cursor"
            assert await close_code(ws) == 1008
        async with websockets.connect(f"{url}/v1/stream?cursor=garbage!") as ws:
            error = await recv_type(ws, "error")
            assert error["code"] == "bad_cursor"
            assert await close_code(ws) == 1008


async def test_slow_client_is_closed_while_fast_clients_keep_up(
    broker: Broker, config_factory: Callable[..., Config]
) -> None:
    # The slow client reads its close frame only after the fast ones are served: its grace
    # must outlast that on a loaded machine (5 s did not), or it is cut without a close frame.
    config = with_gateway(
        config_factory(broker.bootstrap), send_queue_bytes=64 * 1024, slow_close_grace=120.0
    )
    big = "x" * 20_000
    batch = [wire_event(i, "a", f"{i} {big}") for i in range(400)]
    async with gateway(config) as (_, _, url), producer(broker.bootstrap) as kafka:
        # A reader that never reads, with a tiny receive window: its queue fills fast.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        host, port = url.removeprefix("ws://").split(":")
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        slow = await websockets.connect(
            f"{url}/v1/stream?backlog=0", sock=sock, max_queue=1, max_size=None
        )
        fast = [
            await websockets.connect(f"{url}/v1/stream?backlog=0", max_size=None) for _ in range(3)
        ]
        before = sample("telex_gateway_slow_disconnects_total", transport="ws")
        readers = [asyncio.create_task(events(ws, len(batch), timeout=60)) for ws in fast]
        for i in range(0, len(batch), 50):
            await produce(kafka, config.topics.wire, batch[i : i + 50])
        for reader in readers:
            assert ids(await reader) == [e["id"] for e in batch]
        await wait_for(
            lambda: sample("telex_gateway_slow_disconnects_total", transport="ws") == before + 1
        )
        # The slow client reads what was queued for it, then learns why it was closed.
        seen: list[Any] = []
        assert await close_code(slow, frames=seen) == 4008
        assert 0 < len(seen) < len(batch)
        for ws in fast:
            await ws.close()


async def test_bad_frames_get_errors_and_floods_get_closed(
    broker: Broker, config_factory: Callable[..., Config]
) -> None:
    config = with_gateway(
        config_factory(broker.bootstrap),
        max_subscriptions=2,
        max_frame_bytes=1024,
        max_messages_per_second=5,
        message_burst=20,
    )
    async with gateway(config) as (running, _, url):
        async with websockets.connect(f"{url}/v1/stream?subscribe=none") as ws:
            cases: list[tuple[str | bytes, str]] = [
                ("not json", "bad_json"),
                (b"\x00\x01", "bad_frame"),
                ("[1, 2]", "bad_frame"),
                ('{"id": "x"}', "bad_frame"),
                ('{"op": "publish"}', "unknown_op"),
                ('{"op": "subscribe", "filter": {"colour": ["red"]}}', "bad_filter"),
                ('{"op": "subscribe", "filter": {"types": ["published"]}}', "bad_filter"),
                ('{"op": "subscribe", "cursor": "@@@"}', "bad_cursor"),
                ('{"op": "subscribe", "id": 5}', "bad_frame"),
                ('{"op": "subscribe", "fliter": {}}', "bad_frame"),
                ('{"op": "unsubscribe", "id": "nope"}', "unknown_subscription"),
            ]
            for message, code in cases:
                await ws.send(message)
                error = await recv_type(ws, "error")
                assert error["code"] == code, (message, error)
                assert error["error"]
            for sid in ("a", "b"):
                await ws.send(orjson.dumps({"op": "subscribe", "id": sid}).decode())
                await recv_type(ws, "subscribed")
            await ws.send(orjson.dumps({"op": "subscribe", "id": "c"}).decode())
            assert (await recv_type(ws, "error"))["code"] == "too_many_subscriptions"
            await ws.send('{"op": "ping"}')
            assert (await recv_type(ws, "pong"))["cursor"]
        # Oversized frame: closed with 1009 (message too big).
        async with websockets.connect(f"{url}/v1/stream?subscribe=none") as ws:
            await ws.send("x" * 2000)
            assert await close_code(ws) == 1009
        # Flood: closed with 1008 (policy violation).
        before = sample("telex_gateway_closes_total", reason="flood")
        async with websockets.connect(f"{url}/v1/stream?subscribe=none") as ws:
            with contextlib.suppress(ConnectionClosed):
                for _ in range(200):
                    await ws.send('{"op": "ping"}')
                    await asyncio.sleep(0)
            assert await close_code(ws) == 1008
        assert sample("telex_gateway_closes_total", reason="flood") == before + 1
        # And the process is fine.
        async with websockets.connect(f"{url}/v1/stream?subscribe=none") as ws:
            await ws.send('{"op": "ping"}')
            await recv_type(ws, "pong")
        assert running.http_url


async def test_drain_closes_with_1012_and_refuses_new_connections(
    broker: Broker, config_factory: Callable[..., Config]
) -> None:
    config = with_gateway(config_factory(broker.bootstrap), drain_batch=2, drain_interval=0.05)
    async with gateway(config) as (_, gw, url):
        clients = [await websockets.connect(f"{url}/v1/stream") for _ in range(5)]
        await wait_for(lambda: len(gw.hub.conns) == 5)
        drain = asyncio.create_task(gw.drain())
        codes = [await close_code(ws) for ws in clients]
        await drain
        assert codes == [1012] * 5
        assert not gw.ready
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(f"{url}/v1/stream")
        assert refused.value.response.status_code == 503
        with contextlib.suppress(Exception):
            for ws in clients:
                await ws.close()


async def test_idle_connection_without_subscription_is_closed(
    broker: Broker, config_factory: Callable[..., Config]
) -> None:
    config = with_gateway(config_factory(broker.bootstrap), idle_timeout=0.4)
    async with gateway(config) as (_, _, url):
        idle = await websockets.connect(f"{url}/v1/stream?subscribe=none")
        busy = await websockets.connect(f"{url}/v1/stream?backlog=0")
        assert await close_code(idle, timeout=10) == 4000
        assert await quiet(busy, 0.5) == []  # a subscribed connection is not idle
        await busy.close()


async def test_sigterm_drains_a_gateway_process_with_1012(
    broker: Broker, config_factory: Callable[..., Config], tmp_path: Path
) -> None:
    config = config_factory(
        broker.bootstrap, TELEX_GATEWAY_DRAIN_BATCH="2", TELEX_GATEWAY_DRAIN_INTERVAL="0.1"
    )
    await ensure_topics(Clients(config, broker.bootstrap), required_topics(config.topics))
    proc = TelexProcess("gateway", config, log=tmp_path / "gateway.log", ready="Press Ctrl-C")
    proc.start()
    try:
        await proc.wait_ready(timeout=30)
        clients = [
            await websockets.connect(f"ws://127.0.0.1:{proc.port}/v1/stream") for _ in range(5)
        ]
        proc.send_signal(signal.SIGTERM)
        codes = [await close_code(ws, timeout=20) for ws in clients]
        assert codes == [1012] * 5
        assert await proc.wait(timeout=20) == 0
        log = proc.log_text()
        assert "gateway.draining" in log and "Traceback" not in log, log
        assert "gateway.drained" in log, log  # every connection closed before the exit
        assert "telex.stopped" in log, log
    finally:
        await proc.kill()
