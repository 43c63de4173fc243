"""The processor's per-batch decisions, without Kafka: poison and failing records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import TopicPartition

from telex.config import Config
from telex.events import content_hash, encode, update_id
from telex.kafka import Clients
from telex.processor.enrich import Pipeline
from telex.processor.service import Processor
from telex.processor.stage import Result, Stage
from telex.processor.state import PartitionState


@dataclass
class Record:
    offset: int
    key: bytes | None
    value: bytes | None


class Exploding(Stage):
    def process(self, raw: Any, state: PartitionState, processed_ms: int) -> Result:
        if raw["text"] == "boom":
            raise ZeroDivisionError("a bug")
        return super().process(raw, state, processed_ms)


def raw(entry: str, text: str) -> bytes:
    return encode(
        {
            "v": 1, "kind": "upsert", "id": update_id("rt", entry), "source_id": "rt",
            "source_url": "https://rt.example/live", "entry_id": entry, "url": None,
            "title": None, "text": text, "html": None, "time_raw": None, "published": None,
            "page_date": None, "page_tz": None, "content_hash": content_hash(None, text),
            "detected_ms": 1,
        }
    )  # fmt: skip


def test_a_record_that_breaks_the_stage_is_dead_lettered_and_the_batch_goes_on() -> None:
    config = Config()
    processor = Processor(config, Clients(config, "127.0.0.1:1"), Exploding(config, Pipeline([])))
    tp = TopicPartition(config.topics.raw, 0)
    processor._states[0] = processor.stage.new_state()
    batch = {
        tp: [
            Record(0, b"rt", raw("a", "first update of the day")),
            Record(1, b"rt", raw("b", "boom")),
            Record(2, b"rt", b"\xff not json"),
            Record(3, b"rt", raw("a", "first update of the day")),
            Record(4, b"rt", raw("c", "second update of the day")),
        ]
    }
    decided = list(processor._decisions(batch, consumed_ms=5))
    outcomes = [d[2] for d in decided]
    assert [r.offset for _, r, _ in decided] == [0, 1, 2, 3, 4]
    assert isinstance(outcomes[0], tuple) and outcomes[0][0]["type"] == "telex.update.created"
    assert orjson.loads(outcomes[0][1]) == outcomes[0][0]  # the bytes that go to the wire
    # Each event carries when the processor consumed its record, after the poller's stamps.
    timings = outcomes[0][0]["data"]["timings"]
    assert timings["consumed_ms"] == 5 and timings["detected_ms"] == 1
    assert timings["processed_ms"] >= timings["consumed_ms"]
    assert outcomes[1] == "processing failed: ZeroDivisionError('a bug')"
    assert isinstance(outcomes[2], str) and outcomes[2].startswith("not JSON")
    assert outcomes[3] is None  # duplicate
    assert isinstance(outcomes[4], tuple) and outcomes[4][0]["data"]["text"].startswith("second")
    # A partition revoked while the batch waited is left to its new owner.
    revoked = {TopicPartition(config.topics.raw, 1): [Record(0, None, b"")]}
    assert list(processor._decisions(revoked, 6)) == []
