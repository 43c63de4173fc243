"""Dedup, revisions, stories and bounded state: the processor's decisions without Kafka."""

from __future__ import annotations

import itertools
import zlib
from typing import Any

import numpy as np
from jsonschema import Draft202012Validator

from telex.config import Config
from telex.events import content_hash, decode_raw, encode, update_id
from telex.processor.diff import readable_diff
from telex.processor.stage import Stage
from telex.processor.state import (
    RAW_OFFSET_HEADER,
    Known,
    PartitionState,
    source_headers,
    source_offset,
)
from telex.processor.stories import _A, _B, _SHIFT, signature, words
from telex.replay.seed import SeedBlog

TEXT = (
    "Sustainable peace in the Middle East is unattainable without the creation of the state "
    "of Palestine, Lavrov said. Russia wants Israel to have a secure future."
)


def raw(source: str, entry: str, text: str, **changes: Any) -> Any:
    record: dict[str, Any] = {
        "v": 1,
        "kind": "upsert",
        "id": update_id(source, entry),
        "source_id": source,
        "source_url": f"http://{source}.example/live",
        "entry_id": entry,
        "url": f"http://{source}.example/live#{entry}",
        "title": None,
        "text": text,
        "html": f"<p>{text}</p>",
        "time_raw": "08:57 GMT",
        "published": None,
        "page_date": "2024-01-18",
        "page_tz": None,
        "content_hash": content_hash(None, text),
        "detected_ms": 1_705_568_220_000,
    }
    record.update(changes)
    return decode_raw(encode(record))


def test_created_duplicate_revised_with_diff(wire_schema: Draft202012Validator) -> None:
    stage = Stage(Config())
    state = stage.new_state()
    created = stage.process(raw("rt", "e1", TEXT), state, 1)
    assert created.outcome == "new" and created.event is not None
    wire_schema.validate(created.event)
    data = created.event["data"]
    assert data["story_id"].startswith("s_") and data["diff"] is None
    assert data["language"] == "en" and "palestine" in data["tags"]

    assert stage.process(raw("rt", "e1", TEXT), state, 2).outcome == "duplicate"

    edited = TEXT.replace("a secure future", "a secure and prosperous future")
    revised = stage.process(raw("rt", "e1", edited), state, 3)
    assert revised.outcome == "revision" and revised.event is not None
    wire_schema.validate(revised.event)
    assert revised.event["data"]["story_id"] == data["story_id"]
    assert revised.event["data"]["previous_hash"] == data["content_hash"]
    assert revised.event["data"]["diff"] == (
        "- Russia wants Israel to have a secure future.\n"
        "+ Russia wants Israel to have a secure and prosperous future."
    )


def test_near_duplicates_across_sources_share_a_story() -> None:
    stage = Stage(Config())
    a, b = stage.new_state(), stage.new_state()  # two partitions, one process
    first = stage.process(raw("rt", "e1", TEXT), a, 1).event
    near = "BREAKING: " + TEXT.replace("Lavrov said", "Russia's foreign minister said")
    second = stage.process(raw("tass", "x9", near), b, 2)
    assert second.outcome == "story_linked" and second.event is not None and first is not None
    assert second.event["data"]["story_id"] == first["data"]["story_id"]
    other = stage.process(
        raw(
            "tass",
            "x10",
            "Talks on grain exports resume in Istanbul next "
            "week, officials in Ankara confirmed on Thursday.",
        ),
        b,
        3,
    )
    assert other.outcome == "new" and other.event is not None
    assert other.event["data"]["story_id"] != first["data"]["story_id"]
    # Outside the time window, the same words start a new story.
    late = raw("bbc", "z", TEXT, time_raw=None, page_date=None,
               detected_ms=1_705_568_220_000 + 7 * 3600 * 1000)  # fmt: skip
    assert stage.process(late, stage.new_state(), 4).outcome == "new"


def test_restored_state_equals_live_state(seed: SeedBlog) -> None:
    stage = Stage(Config())
    live = stage.new_state()
    events = []
    for n, entry in enumerate(seed.entries):
        text = "\n\n".join(entry.paragraphs)
        result = stage.process(raw("replay", f"e{n}", text, time_raw=entry.time), live, n)
        assert result.event is not None
        events.append(result.event)
    restored = stage.new_state()
    for event in events:
        restored.apply_wire_record(encode(event))
    for n in range(len(seed.entries)):
        assert restored.get(update_id("replay", f"e{n}")) == live.get(update_id("replay", f"e{n}"))
    # And a fresh process's stage, fed the restored events, links like the live one.
    fresh = Stage(Config())
    for event in events:
        fresh.index(event["data"])
    again = raw("other", "q", "\n\n".join(seed.entries[3].paragraphs), time_raw="09:20 GMT")
    assert fresh.process(again, fresh.new_state(), 99).outcome == "story_linked"


def test_deleted_entries(wire_schema: Draft202012Validator) -> None:
    stage = Stage(Config())
    state = stage.new_state()
    stage.process(raw("rt", "e1", TEXT), state, 1)
    gone = stage.process(raw("rt", "e1", "", kind="delete"), state, 2)
    assert gone.outcome == "deleted" and gone.event is not None
    assert gone.event["type"] == "telex.update.deleted"
    wire_schema.validate(gone.event)
    assert stage.process(raw("rt", "e1", "", kind="delete"), state, 3).outcome == "duplicate"


def test_state_is_bounded_by_size_and_event_time() -> None:
    state = PartitionState(max_entries=3, ttl_ms=1000)
    for n in range(5):
        state.put(f"u{n}", Known("h", 0, event_ms=n * 100))
    assert len(state) == 3 and state.get("u0") is None and state.get("u4") is not None
    state.put("late", Known("h", 0, event_ms=1350))  # u0..u3 are older than 1350 - 1000
    assert state.get("u2") is None and state.get("u3") is None and state.get("u4") is not None


def test_diff_of_title_and_unchanged_text() -> None:
    assert readable_diff("Same.", "Same.", "Old", "New") == "- title: Old\n+ title: New"
    assert readable_diff("Same text.", "same  text.") is not None  # case is a change for readers
    assert readable_diff("A.", "A.") is None


def test_restore_indexes_only_the_story_window(seed: SeedBlog) -> None:
    stage = Stage(Config())
    state = stage.new_state()
    hour = 3600 * 1000
    events = []
    for n, entry in enumerate(seed.entries):
        text = "\n\n".join(entry.paragraphs)
        record = raw("rt", f"e{n}", text, time_raw=None, page_date=None,
                     detected_ms=1_705_568_220_000 + n * hour)  # fmt: skip
        result = stage.process(record, state, n)
        assert result.event is not None
        events.append(result.event["data"])
    fresh = Stage(Config())  # story window 6 h: the last entry (9 h) sees 3 h .. 9 h
    fresh.index_many(events)
    assert len(fresh.stories) == 7
    assert fresh.stories.story_of(events[0]["id"]) is None
    assert fresh.stories.story_of(events[-1]["id"]) == events[-1]["story_id"]


def reference_signature(text: str) -> list[int]:
    """MinHash as first written: a set of "a b" shingle strings, each CRC-32'd on its own."""
    tokens = words(text)
    shingles = {f"{a} {b}" for a, b in itertools.pairwise(tokens)}
    hashes = np.array([zlib.crc32(s.encode("utf-8", "surrogatepass")) for s in shingles], np.uint64)
    return [int(v) for v in ((hashes[:, None] * _A[None, :] + _B[None, :]) >> _SHIFT).min(axis=0)]


def test_signatures_are_those_of_the_shingle_definition(seed: SeedBlog) -> None:
    # Signatures are part of the contract (every process, every version, must link the same
    # way): the fast computation must give exactly the values of the plain definition.
    texts = [p for e in seed.entries for p in e.paragraphs]
    texts += ["Żółć gęślą jaźń — naïve café Ωmega, repeated repeated repeated repeated words"]
    for text in texts:
        sig = signature(text, min_words=2)
        assert sig is not None
        assert [int(v) for v in sig] == reference_signature(text), text


def test_debug_trace_links_the_update_to_its_wire_event(caplog: Any) -> None:
    import logging

    stage = Stage(Config())
    state = PartitionState()
    record = raw("rt", "e1", TEXT)
    with caplog.at_level(logging.DEBUG, logger="telex.processor.stage"):
        created = stage.process(record, state, processed_ms=1)
        stage.process(record, state, processed_ms=2)
    traces = [r for r in caplog.records if r.getMessage() == "update.processed"]
    assert [t.fields for t in traces] == [  # type: ignore[attr-defined]
        {"update": record["id"], "outcome": "new", "event_id": created.event["id"]},
        {"update": record["id"], "outcome": "duplicate", "event_id": None},
    ]


def test_restored_state_knows_the_last_raw_offset_done() -> None:
    stage = Stage(Config())
    live = stage.new_state()
    events = [stage.process(raw("rt", f"e{n}", f"{TEXT} {n}"), live, n).event for n in range(3)]
    restored = stage.new_state()
    assert restored.done_offset == -1
    for offset, event in zip((40, 41, 7), events, strict=True):
        assert event is not None
        restored.apply_wire_record(encode(event), source_headers(offset))
    assert restored.done_offset == 41
    # Events written before the header existed, and a header that is not a number, say nothing.
    restored.apply_wire_record(encode(events[0]), [])
    restored.apply_wire_record(encode(events[0]), [(RAW_OFFSET_HEADER, b"x")])
    assert restored.done_offset == 41
    assert source_offset(source_headers(12)) == 12
