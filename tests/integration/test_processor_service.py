"""The processor service in-process on the real broker: metrics, DLQ, enrichment on the wire."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
from aiokafka import AIOKafkaProducer
from jsonschema import Draft202012Validator

from telex.config import Config
from telex.events import content_hash, update_id
from telex.kafka import Clients, ensure_topics, required_topics
from telex.processor.service import Processor
from telex.replay.seed import SeedBlog
from tests.conftest import Broker, sample

from .test_pipeline import read_topic, wait_for


def raw(source: str, entry: str, text: str, html: str | None = None) -> bytes:
    return orjson.dumps(
        {
            "v": 1, "kind": "upsert", "id": update_id(source, entry), "source_id": source,
            "source_url": f"https://{source}.example/live", "entry_id": entry,
            "url": f"https://{source}.example/live#{entry}", "title": None, "text": text,
            "html": html, "time_raw": "10:46 GMT", "published": None, "page_date": "2024-01-18",
            "page_tz": None, "content_hash": content_hash(None, text),
            "detected_ms": 1_705_574_760_000,
        }
    )  # fmt: skip


async def test_processor_metrics_dlq_and_enriched_wire(
    broker: Broker,
    config_factory: Callable[..., Config],
    seed: SeedBlog,
    wire_schema: Draft202012Validator,
) -> None:
    config = config_factory(broker.bootstrap)
    await ensure_topics(Clients(config, broker.bootstrap), required_topics(config.topics))
    texts = ["\n\n".join(e.paragraphs) for e in seed.entries]
    records: list[tuple[bytes, bytes]] = []
    for n, text in enumerate(texts):
        html = f'<p onclick="x()">{text}</p><script>steal()</script><a href="/more">more</a>'
        records.append((b"rt", raw("rt", f"e{n}", text, html)))
        if n == 4:
            # An event far larger than a producer batch (16 KB) in the middle of a batch:
            # it must travel whole, in order.
            big = " ".join(f"w{i}" for i in range(20_000))
            records.append((b"rt", raw("rt", "big", big)))
    records += [(b"rt", raw("rt", f"e{n}", texts[n])) for n in range(4)]  # re-sends
    records.append((b"rt", raw("rt", "e0", texts[0] + " Lavrov later added nothing.")))
    records.append((b"tass", raw("tass", "x", "BREAKING: " + texts[5])))  # near-duplicate
    records += [(b"rt", b"not json"), (b"rt", orjson.dumps({"v": 1}))]

    before = {
        o: sample("telex_processor_dedup_outcomes_total", outcome=o)
        for o in ("new", "duplicate", "revision", "story_linked")
    }
    dlq_before = sample("telex_dlq_records_total", stage="processor")
    enrich_before = sample("telex_processor_enrich_seconds_sum", enricher="entities")

    processor = Processor(config, Clients(config, broker.bootstrap))
    await processor.start()
    try:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        await producer.start()
        try:
            for key, val in records:
                await producer.send_and_wait(config.topics.raw, val, key=key)
        finally:
            await producer.stop()
        await wait_for(
            lambda: sample("telex_dlq_records_total", stage="processor") >= dlq_before + 2, 60
        )
        await wait_for(
            lambda: (
                sample("telex_processor_dedup_outcomes_total", outcome="story_linked")
                >= before["story_linked"] + 1
            ),
            60,
        )
        assert processor.ready
        # Lag is exported per assigned partition and drains to zero.
        await wait_for(
            lambda: all(
                sample("telex_processor_consumer_lag_records", partition=str(p)) == 0
                for p in range(config.topics.partitions)
            ),
            30,
        )
        await asyncio.sleep(0.5)
    finally:
        await processor.stop()

    assert sample("telex_processor_dedup_outcomes_total", outcome="new") - before["new"] == 11
    assert (
        sample("telex_processor_dedup_outcomes_total", outcome="duplicate") - before["duplicate"]
        == 4
    )
    assert (
        sample("telex_processor_dedup_outcomes_total", outcome="revision") - before["revision"] == 1
    )
    assert sample("telex_processor_enrich_seconds_sum", enricher="entities") > enrich_before

    wire_records = await read_topic(broker.bootstrap, config.topics.wire)
    wire = [orjson.loads(r.value) for r in wire_records]
    assert len(wire) == 13
    # One source, one raw partition, one wire partition: the wire keeps the input's order.
    # (read_topic keeps each partition's records in offset order)
    rt_order = [
        (e["data"]["entry_id"], e["type"].rsplit(".", 1)[1])
        for e in wire
        if e["data"]["source_id"] == "rt"
    ]
    assert rt_order == [(f"e{n}", "created") for n in range(5)] + [("big", "created")] + [
        (f"e{n}", "created") for n in range(5, 10)
    ] + [("e0", "revised")]
    big_event = next(e for e in wire if e["data"]["entry_id"] == "big")
    assert big_event["data"]["text"] == big
    for event in wire:
        wire_schema.validate(event)
        data = event["data"]
        for entity in data["entities"]:
            assert data["text"][entity["start"] : entity["end"]] == entity["text"]
        if data["html"]:
            assert "<script" not in data["html"] and "steal()" not in data["html"]
            assert "onclick" not in data["html"]
    by_entry = {(e["data"]["source_id"], e["data"]["entry_id"], e["type"]): e for e in wire}
    first = by_entry[("rt", "e0", "telex.update.created")]["data"]
    assert first["links"] == ["https://rt.example/more"]
    assert first["language"] == "en" and first["quotes"][0]["speaker"] == "Lavrov"
    revised = by_entry[("rt", "e0", "telex.update.revised")]["data"]
    assert revised["diff"] == "+ Lavrov later added nothing."
    assert revised["story_id"] == first["story_id"]
    near = by_entry[("tass", "x", "telex.update.created")]["data"]
    assert near["story_id"] == by_entry[("rt", "e5", "telex.update.created")]["data"]["story_id"]

    dead = await read_topic(broker.bootstrap, config.topics.dlq)
    assert len(dead) == 2
    reasons = sorted(dict(r.headers)["telex-reason"].decode() for r in dead)
    assert reasons[0].startswith("kind must be") and reasons[1].startswith("not JSON")
