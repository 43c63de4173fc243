"""The dead-letter header convention, shared by every dead-letter topic of telex.

A dead letter keeps the original record's key and value; its headers say why and where it came
from. Names are lower-case, ``telex-`` prefixed, words joined by hyphens (the convention of HTTP
headers, which the webhook headers follow too); values are UTF-8 text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

REASON = "telex-reason"  # why it was given up, a short word or sentence
STAGE = "telex-stage"  # which stage gave up: processor, notifier
TOPIC = "telex-topic"  # where the original record was read
PARTITION = "telex-partition"
OFFSET = "telex-offset"


def headers(
    reason: str, stage: str, extra: Mapping[str, str | int] | None = None
) -> list[tuple[str, bytes]]:
    """Headers of a dead letter: the reason, the stage, then ``extra`` (names as given)."""
    out = [(REASON, reason.encode()), (STAGE, stage.encode())]
    out += [(name, str(value).encode()) for name, value in (extra or {}).items()]
    return out


def origin(topic: str, partition: int, offset: int) -> dict[str, str | int]:
    """The extra headers naming the record a dead letter was read from."""
    return {TOPIC: topic, PARTITION: partition, OFFSET: offset}


def read(record_headers: Iterable[tuple[str, bytes]] | None) -> dict[str, str]:
    """A record's headers as text, by name (the last value of a repeated name wins)."""
    return {name: value.decode("utf-8", "replace") for name, value in record_headers or ()}


def reason_of(record: Any) -> str | None:
    """The reason a dead letter was given up, or ``None`` for a record without one."""
    return read(record.headers).get(REASON)
