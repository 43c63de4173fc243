"""``events.decode_raw`` and ``schemas/raw-update.schema.json`` agree, field by field.

The decoder is hand-written for speed (it runs once per record on the processor's hot path)
and the schema is what other consumers read, so this test is what keeps them one contract: for
every field, every kind of value is accepted by both or refused by both. The only keywords the
decoder leaves to the producer are the patterns and formats of strings the poller builds
itself (``update_id``, ``content_hash``, validated source ids and URLs, ISO times);
``NOT_DECODED`` names them, and a keyword the schema gains that is neither decoded nor listed
fails the test.
"""

from __future__ import annotations

import copy
import typing
from pathlib import Path
from typing import Any, get_args, get_origin

import orjson
import pytest
from jsonschema import Draft202012Validator

from telex.events import (
    LOCAL_FIELDS,
    PUBLISHED_ZONES,
    RAW_FIELDS,
    PoisonRecord,
    RawUpdate,
    content_hash,
    decode_raw,
    update_id,
)

SCHEMA = orjson.loads((Path(__file__).parents[2] / "schemas/raw-update.schema.json").read_bytes())
PROPERTIES: dict[str, dict[str, Any]] = SCHEMA["properties"]
DECODED = {"type", "enum", "const", "minimum", "maximum", "minLength"}
NOT_DECODED = {"pattern", "format", "description"}
MAX_MS = 253_402_300_799_999

# One value of every JSON kind, and the edges of the constraints the decoder checks. (1.0 is
# left out: JSON Schema counts it as an integer, JSON parsers give a float.)
CANDIDATES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    MAX_MS,
    MAX_MS + 1,
    1.5,
    "",
    "x",
    [],
    ["x"],
    {},
    *PUBLISHED_ZONES,
    "upsert",
    "delete",
]


def valid() -> dict[str, Any]:
    """A record with every field, that both accept."""
    text = "Lavrov said things."
    return {
        "v": 1,
        "kind": "upsert",
        "id": update_id("bbc-live", "http://x.test/#post-1"),
        "source_id": "bbc-live",
        "source_url": "http://x.test/live",
        "entry_id": "http://x.test/#post-1",
        "url": "http://x.test/#post-1",
        "title": "Lavrov",
        "text": text,
        "html": "<p>Lavrov said things.</p>",
        "time_raw": "10:46 GMT",
        "published": "2024-01-18T10:46:00Z",
        "published_zone": "stated",
        "published_tz": None,
        "page_date": "2024-01-18",
        "page_tz": None,
        "content_hash": content_hash("Lavrov", text),
        "detected_ms": 1_700_000_000_000,
        "produced_ms": 1_700_000_000_001,
    }


def decoder_accepts(record: dict[str, Any]) -> bool:
    try:
        decode_raw(orjson.dumps(record))
    except PoisonRecord:
        return False
    return True


def decoded_part(prop: dict[str, Any]) -> Draft202012Validator:
    """The property's schema without the keywords the decoder leaves to the producer."""
    return Draft202012Validator({k: v for k, v in prop.items() if k in DECODED})


def test_a_full_record_is_valid_for_both() -> None:
    record = valid()
    Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(
        record
    )
    assert decode_raw(orjson.dumps(record)) == record
    assert set(record) == set(PROPERTIES)


def test_the_fields_and_their_keywords_are_known() -> None:
    assert set(PROPERTIES) == RAW_FIELDS
    for name, prop in PROPERTIES.items():
        unknown = set(prop) - DECODED - NOT_DECODED
        assert not unknown, f"{name}: the decoder does not check {sorted(unknown)}"
    assert SCHEMA["additionalProperties"] is False
    assert PROPERTIES["published_zone"]["enum"] == [*PUBLISHED_ZONES, None]


@pytest.mark.parametrize("name", sorted(PROPERTIES))
def test_every_value_of_a_field_is_judged_alike(name: str) -> None:
    part = decoded_part(PROPERTIES[name])
    for value in CANDIDATES:
        record = valid()
        record[name] = copy.deepcopy(value)
        assert decoder_accepts(record) == part.is_valid(value), (name, value)


@pytest.mark.parametrize("name", sorted(PROPERTIES))
def test_a_missing_field_is_judged_alike(name: str) -> None:
    record = valid()
    del record[name]
    required = name in SCHEMA["required"]
    nullable = "null" in typing.cast(list[str], PROPERTIES[name].get("type", []))
    # The one leniency: a required field that may be null may also be absent (read as null).
    assert decoder_accepts(record) == (not required or nullable), name


@pytest.mark.parametrize("name", ["colour", *sorted(LOCAL_FIELDS)])
def test_an_unknown_field_is_refused_by_both(name: str) -> None:
    record = {**valid(), name: 1}
    assert not Draft202012Validator(SCHEMA).is_valid(record)
    assert not decoder_accepts(record)


def test_the_typed_dict_says_what_the_schema_requires() -> None:
    hints = typing.get_type_hints(RawUpdate, include_extras=True)
    hints = {name: hint for name, hint in hints.items() if name not in LOCAL_FIELDS}
    assert set(hints) == set(PROPERTIES)
    optional = {name for name, hint in hints.items() if get_origin(hint) is typing.NotRequired}
    assert set(hints) - optional == set(SCHEMA["required"])
    kinds = {str: "string", int: "integer", type(None): "null"}
    for name, extra in hints.items():
        hint = get_args(extra)[0] if name in optional else extra
        args = get_args(hint) if get_origin(hint) is not typing.Literal else ()
        types = {kinds[a] for a in args if a in kinds} if args else {kinds.get(hint, "")}
        declared = PROPERTIES[name].get("type")
        if declared is None:  # const or enum: the Literal or the plain str carries it
            continue
        assert types == ({declared} if isinstance(declared, str) else set(declared)), name
