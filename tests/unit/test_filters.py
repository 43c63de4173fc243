from __future__ import annotations

from typing import Any

import pytest

from telex.filters import Filter, FilterError


def event(**data: Any) -> dict[str, Any]:
    type_ = data.pop("type", "telex.update.created")
    base = {"source_id": "replay", "title": None, "text": "", "entities": [], "tags": []}
    return {"type": type_, "data": {**base, **data}}


LAVROV = event(
    text="NATO has shown no interest in settling the Ukraine conflict, Lavrov said.",
    entities=[{"text": "Lavrov", "type": "person", "start": 63, "end": 69}],
    tags=["nato", "ukraine"],
    language="en",
)


def test_empty_filter_matches_everything() -> None:
    assert Filter().compile().matches(LAVROV)
    assert Filter.parse(None) == Filter.parse({}) == Filter()


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"terms": ["nato"]}, True),
        ({"terms": ["NAT"]}, False),  # whole words only
        ({"terms": ["Ukraine   conflict"]}, True),  # phrases, any whitespace
        ({"terms": ["Kremlin", "lavrov said"]}, True),  # any of
        ({"sources": ["replay"], "terms": ["kremlin"]}, False),  # all fields must match
        ({"sources": ["other"]}, False),
        ({"entities": ["lavrov"]}, True),
        ({"entities": ["Zelensky"]}, False),
        ({"tags": ["Ukraine"]}, True),
        ({"languages": ["de"]}, False),
        ({"languages": ["EN"]}, True),
        ({"types": ["revised"]}, False),
        ({"types": ["telex.update.created"]}, True),
    ],
)
def test_matching(spec: dict[str, Any], expected: bool) -> None:
    assert Filter.parse(spec).compile().matches(LAVROV) is expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"terms": [""]}, "terms: terms values must not be empty"),
        ({"types": ["published"]}, "unknown event type 'published'"),
        ({"colour": ["red"]}, "colour: Extra inputs are not permitted"),
        ({"sources": "replay"}, "sources"),
        ({"tags": ["x"] * 101}, "tags"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_invalid_filters_name_the_field(spec: Any, message: str) -> None:
    with pytest.raises(FilterError) as info:
        Filter.parse(spec)
    assert message in str(info.value)


def test_query_string_form_and_canonical_key() -> None:
    parsed = Filter.from_query({"sources": "a,b", "terms": "NATO", "cursor": "ignored"})
    assert parsed.sources == ("a", "b")
    assert parsed.key == Filter.parse({"terms": ["nato"], "sources": ["b", "a"]}).key
    assert parsed.key != Filter().key


def test_non_event_input_never_matches() -> None:
    assert not Filter().compile().matches({"type": "x", "data": "nope"})
