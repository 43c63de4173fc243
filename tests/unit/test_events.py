from __future__ import annotations

from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from telex.config import Config
from telex.events import PoisonRecord, content_hash, decode_raw, encode, update_id
from telex.processor.stage import Stage
from telex.processor.state import PartitionState

_stage: Stage | None = None


def process(record: Any, state: PartitionState, processed_ms: int) -> dict[str, Any] | None:
    global _stage
    if _stage is None:
        _stage = Stage(Config())
    return _stage.process(record, state, processed_ms).event


def raw(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "v": 1,
        "kind": "upsert",
        "id": update_id("replay", "http://x/#post-1"),
        "source_id": "replay",
        "source_url": "http://x/live",
        "entry_id": "http://x/#post-1",
        "url": "http://x/#post-1",
        "title": None,
        "text": "Lavrov said things.",
        "html": "<p>Lavrov said things.</p>",
        "time_raw": "10:46 GMT",
        "published": None,
        "page_date": "2024-01-18",
        "page_tz": None,
        "content_hash": content_hash(None, "Lavrov said things."),
        "detected_ms": 1_700_000_000_000,
    }
    record.update(changes)
    return record


def test_ids_and_hashes_are_stable() -> None:
    assert update_id("a", "b") == update_id("a", "b") != update_id("a", "c")
    assert content_hash(None, "Hello  World") == content_hash("", "hello world")
    assert content_hash(None, "Hello world") != content_hash(None, "Hello world!")


def test_raw_record_round_trips_and_matches_schema(raw_schema: Draft202012Validator) -> None:
    record = raw()
    raw_schema.validate(record)
    assert decode_raw(encode(record)) == record


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "empty value"),
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (orjson.dumps(raw(v=2)), "unsupported schema version"),
        (orjson.dumps(raw(kind="upsertx")), "kind must be"),
        (orjson.dumps(raw(source_id="")), "source_id must be a non-empty string"),
        (orjson.dumps(raw(text=5)), "text must be a string"),
        (orjson.dumps(raw(title=["x"])), "title must be a string or null"),
        (orjson.dumps(raw(detected_ms="now")), "detected_ms must be an integer"),
        (b"{" + b" " * 1_000_001 + b"}", "exceeds"),
    ],
)
def test_poison_records_say_why(value: bytes | None, reason: str) -> None:
    with pytest.raises(PoisonRecord) as info:
        decode_raw(value)
    assert reason in info.value.reason


def test_process_creates_drops_duplicates_and_revises(wire_schema: Draft202012Validator) -> None:
    state = PartitionState()
    created = process(decode_raw(encode(raw())), state, processed_ms=1)
    assert created is not None and created["type"] == "telex.update.created"
    assert created["data"]["published"] == "2024-01-18T10:46:00Z"
    assert created["time"] == "2024-01-18T10:46:00Z"
    wire_schema.validate(created)

    again = raw(detected_ms=1_700_000_100_000)
    assert process(decode_raw(encode(again)), state, processed_ms=2) is None

    edited_text = "Lavrov said other things."
    edited = raw(text=edited_text, content_hash=content_hash(None, edited_text))
    revised = process(decode_raw(encode(edited)), state, processed_ms=3)
    assert revised is not None and revised["type"] == "telex.update.revised"
    assert revised["data"]["previous_hash"] == created["data"]["content_hash"]
    assert revised["data"]["timings"]["first_seen_ms"] == 1_700_000_000_000
    assert revised["id"] != created["id"]
    wire_schema.validate(revised)

    # A fresh state restored from the wire knows both, so re-processing emits nothing.
    restored = PartitionState()
    for event in (created, revised):
        restored.apply_wire_record(encode(event))
    assert process(decode_raw(encode(edited)), restored, processed_ms=4) is None


def test_state_is_bounded() -> None:
    state = PartitionState(max_entries=2)
    from telex.processor.state import Known

    for n in range(5):
        state.put(f"u{n}", Known("h", 0))
    assert len(state) == 2 and state.get("u4") is not None and state.get("u0") is None
