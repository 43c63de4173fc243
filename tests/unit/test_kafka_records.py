"""What the Kafka layer does with records, apart from any broker: the table view's last value
per key with tombstones, and the dead-letter header convention."""

from __future__ import annotations

from dataclasses import dataclass

from telex.kafka import deadletter
from telex.kafka.table import latest_per_key


@dataclass
class Record:
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


def test_the_table_keeps_the_last_value_per_key_and_honours_tombstones() -> None:
    rows: dict[bytes, bytes] = {b"gone": b"old"}
    latest_per_key(
        [
            Record(b"a", b"1"),
            Record(b"b", b"1"),
            Record(b"a", b"2"),
            Record(None, b"keyless"),  # not a row of a table
            Record(b"b", None),  # tombstone
            Record(b"gone", None),
            Record(b"c", None),  # tombstone of a key never seen
        ],
        rows,
    )
    assert rows == {b"a": b"2"}
    latest_per_key([Record(b"b", b"back")], rows)
    assert rows == {b"a": b"2", b"b": b"back"}


def test_dead_letter_headers_follow_one_convention() -> None:
    headers = deadletter.headers(
        "not JSON", "processor", deadletter.origin("telex.updates.raw", 2, 1805)
    )
    assert headers == [
        ("telex-reason", b"not JSON"),
        ("telex-stage", b"processor"),
        ("telex-topic", b"telex.updates.raw"),
        ("telex-partition", b"2"),
        ("telex-offset", b"1805"),
    ]
    assert all(name.startswith("telex-") and name == name.lower() for name, _ in headers)
    record = Record(b"k", b"v", tuple(headers))
    assert deadletter.reason_of(record) == "not JSON"
    assert deadletter.read(record.headers)["telex-offset"] == "1805"
    assert deadletter.reason_of(Record(b"k", b"v")) is None
