"""The records telex puts on Kafka: raw updates and the CloudEvents of the wire.

Both are JSON (orjson) and both have a JSON Schema in ``schemas/``. Decoding a raw update
checks what the schema says, field by field (a test holds the two together), except the
patterns and formats of strings the poller builds itself, and raises :class:`PoisonRecord`
with a reason otherwise, so that a bad record goes to the dead-letter topic instead of
stopping a partition.
"""

from __future__ import annotations

import hashlib
import time
import unicodedata
from typing import Any, Literal, NotRequired, TypedDict

import orjson

RAW_SCHEMA_VERSION = 1
MAX_RAW_BYTES = 1_000_000

EventType = Literal["telex.update.created", "telex.update.revised", "telex.update.deleted"]


class RawUpdate(TypedDict):
    """One entry as the poller saw it (``telex.updates.raw``, key = source id)."""

    v: int
    kind: Literal["upsert", "delete"]
    id: str
    source_id: str
    source_url: str
    entry_id: str
    url: str | None
    title: str | None
    text: str
    html: str | None
    time_raw: str | None
    published: str | None
    # How the zone of ``published`` was decided: "stated" (the time carries it), "source"
    # (the source's timezone), "page" (the page's own offsets), "country" (the publisher's
    # country), "utc-assumed" (nothing said: UTC); and that zone when not stated.
    published_zone: NotRequired[str | None]
    published_tz: NotRequired[str | None]
    page_date: str | None
    page_tz: str | None
    content_hash: str
    detected_ms: int
    produced_ms: NotRequired[int]
    # Set by the processor when it consumed the record; never on the topic.
    consumed_ms: NotRequired[int]


class PoisonRecord(ValueError):
    """A record that can never be processed; ``reason`` goes into the dead-letter headers."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def now_ms() -> int:
    """Wall-clock time in unix milliseconds."""
    return time.time_ns() // 1_000_000


def _digest(*parts: str, size: int = 16) -> str:
    h = hashlib.blake2b(digest_size=size)
    for part in parts:
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()


def update_id(source_id: str, entry_id: str) -> str:
    """The stable telex id of an entry: the same source and entry always give the same id."""
    return "u_" + _digest(source_id, entry_id, size=10)


def normalise_text(text: str) -> str:
    """Text reduced to what identifies its content: NFKC, case-folded, single spaces."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def content_hash(title: str | None, text: str) -> str:
    """Hash of an entry's content; whitespace and case changes do not change it."""
    return _digest(normalise_text(title or ""), normalise_text(text))


def event_id(update: str, type_: str, content: str) -> str:
    """Deterministic CloudEvent id, so re-processing a record yields the same event id."""
    return "e_" + _digest(update, type_, content, size=12)


def encode(record: Any) -> bytes:
    """Serialise a record for Kafka."""
    return orjson.dumps(record)


_MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
_RAW_REQUIRED_STR = ("id", "source_id", "source_url", "entry_id", "content_hash")
_RAW_OPTIONAL_STR = ("url", "title", "html", "time_raw", "published", "page_date", "page_tz")
_RAW_TIMES = ("detected_ms", "produced_ms")
PUBLISHED_ZONES = ("stated", "source", "page", "country", "utc-assumed")
LOCAL_FIELDS = frozenset({"consumed_ms"})
"""Fields of a :class:`RawUpdate` the processor sets after decoding: never on the topic."""
RAW_FIELDS = frozenset(RawUpdate.__annotations__) - LOCAL_FIELDS


def _unix_ms(value: Any) -> bool:
    return type(value) is int and 0 <= value <= _MAX_MS


def _check_strings(data: dict[str, Any]) -> None:
    for key in _RAW_REQUIRED_STR:
        if not isinstance(data.get(key), str) or not data[key]:
            raise PoisonRecord(f"{key} must be a non-empty string")
    if not isinstance(data.get("text"), str):
        raise PoisonRecord("text must be a string")
    for key in _RAW_OPTIONAL_STR:
        if data.get(key) is not None and not isinstance(data[key], str):
            raise PoisonRecord(f"{key} must be a string or null")
        data.setdefault(key, None)
    # Added later: absent in older records.
    if data.get("published_tz") is not None and not isinstance(data["published_tz"], str):
        raise PoisonRecord("published_tz must be a string or null")
    if data.get("published_zone") is not None and data["published_zone"] not in PUBLISHED_ZONES:
        raise PoisonRecord(f"published_zone must be one of {', '.join(PUBLISHED_ZONES)} or null")


def _check_times(data: dict[str, Any]) -> None:
    for key in _RAW_TIMES:
        if key == "produced_ms" and key not in data:
            continue
        if type(data.get(key)) is not int:
            raise PoisonRecord(f"{key} must be an integer")
        if not _unix_ms(data[key]):
            # A time before year 1 once failed deep in the stage: refuse it here.
            raise PoisonRecord(f"{key} must be unix milliseconds between 1970 and 9999")


def decode_raw(value: bytes | None) -> RawUpdate:
    """Parse and check a ``telex.updates.raw`` record value."""
    if value is None:
        raise PoisonRecord("empty value")
    if len(value) > MAX_RAW_BYTES:
        raise PoisonRecord(f"value of {len(value)} bytes exceeds {MAX_RAW_BYTES}")
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise PoisonRecord(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PoisonRecord("not a JSON object")
    if data.get("v") != RAW_SCHEMA_VERSION or type(data["v"]) is not int:  # True == 1
        raise PoisonRecord(f"unsupported schema version {data.get('v')!r}")
    if data.get("kind") not in ("upsert", "delete"):
        raise PoisonRecord(f"kind must be upsert or delete, got {data.get('kind')!r}")
    _check_strings(data)
    _check_times(data)
    if not data.keys() <= RAW_FIELDS:
        unknown = sorted(data.keys() - RAW_FIELDS)
        raise PoisonRecord(f"unknown field(s) {', '.join(unknown)}")
    return data  # type: ignore[return-value]


def cloudevent(
    type_: EventType, data: dict[str, Any], *, time_iso: str, source_id: str
) -> dict[str, Any]:
    """A CloudEvents 1.0 structured-mode envelope around an update."""
    return {
        "specversion": "1.0",
        "id": event_id(data["id"], type_, data["content_hash"]),
        "source": f"/telex/sources/{source_id}",
        "type": type_,
        "time": time_iso,
        "subject": data["id"],
        "datacontenttype": "application/json",
        "data": data,
    }
