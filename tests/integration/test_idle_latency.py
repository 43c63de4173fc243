"""No batch waits for a timer when the pipeline is idle: one update, with every batch setting at
its most patient, still goes straight through to a WebSocket subscriber and a webhook."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import orjson
import websockets
from aiokafka import AIOKafkaProducer

from telex.config import Config
from telex.events import content_hash, now_ms, update_id
from telex.kafka.embedded import EmbeddedBroker
from telex.notifier.service import Notifier
from telex.runtime import started

from .test_notifier import notifier_env
from .webhook_receivers import receiving

PATIENT_MS = 10_000
# Far below PATIENT_MS: an update held by any 10 s timer cannot arrive within it.
TIMEOUT_S = 4.0


def raw_record(source: str, text: str) -> bytes:
    """One raw update as the poller writes it."""
    detected = now_ms()
    return orjson.dumps(
        {
            "v": 1, "kind": "upsert", "id": update_id(source, "e1"), "source_id": source,
            "source_url": f"https://{source}.example/live", "entry_id": "e1", "url": None,
            "title": None, "text": text, "html": None, "time_raw": None, "published": None,
            "page_date": None, "page_tz": None, "content_hash": content_hash(None, text),
            "detected_ms": detected, "produced_ms": detected,
        }
    )  # fmt: skip


def fetch_wait_ms(broker: object) -> int | None:
    """Every consumer's fetch wait: 10 s on a broker that answers a waiting fetch as soon as data
    arrives (Kafka). The embedded broker answers only at the deadline, so there the default
    stays: a property of that broker, which its default accounts for, not a batch of telex's."""
    return None if isinstance(broker, EmbeddedBroker) else PATIENT_MS


async def test_one_update_through_an_idle_pipeline_waits_for_no_batch_timer(
    broker: EmbeddedBroker, config_factory: Callable[..., Config]
) -> None:
    env = {**notifier_env(), "TELEX_PROCESSOR_MAX_BATCH": "100000"}
    wait = fetch_wait_ms(broker)
    if wait is not None:
        env["TELEX_KAFKA_FETCH_MAX_WAIT_MS"] = str(wait)
        env["TELEX_GATEWAY_FETCH_MAX_WAIT_MS"] = str(wait)
    config = config_factory(broker.bootstrap, **env)
    source = "idle"
    async with (
        started(config, roles=("processor", "gateway", "notifier"), replay=False) as running,
        receiving() as receiver,
        httpx.AsyncClient(base_url=running.http_url or "", timeout=30) as http,
    ):
        made = await http.post(
            "/v1/webhooks", json={"url": receiver.url, "filter": {"sources": [source]}}
        )
        assert made.status_code == 201, made.text
        notifier = running.components["notifier"]
        assert isinstance(notifier, Notifier)
        for _ in range(600):
            if all(c.ready for c in running.components.values()):
                break
            await asyncio.sleep(0.05)
        not_ready = [name for name, c in running.components.items() if not c.ready]
        assert not not_ready, f"not ready after 30 s: {not_ready}"
        async with asyncio.timeout(30):
            while notifier.store.get(made.json()["id"]) is None:
                await asyncio.sleep(0.05)
        ws_url = (running.http_url or "").replace("http", "ws", 1)
        async with websockets.connect(f"{ws_url}/v1/stream?sources={source}&backlog=0") as ws:
            # Idle: nothing flows for a while, every consumer sits in its fetch.
            await asyncio.sleep(1.0)
            producer = AIOKafkaProducer(bootstrap_servers=running.bootstrap, acks="all")
            await producer.start()
            try:
                await producer.send_and_wait(
                    config.topics.raw, raw_record(source, "One quiet update."), key=b"idle"
                )
            finally:
                await producer.stop()
            async with asyncio.timeout(TIMEOUT_S):
                frame = orjson.loads(await ws.recv())
                (request,) = await receiver.wait_for(1)
    assert frame["type"] == "event"
    event = frame["event"]
    assert event["data"]["text"] == "One quiet update."
    timings = event["data"]["timings"]
    assert timings["detected_ms"] <= timings["consumed_ms"] <= timings["processed_ms"]
    assert orjson.loads(request.body)["id"] == event["id"]
