"""Entries go on the raw topic oldest first, comparing times as instants."""

from __future__ import annotations

from telex.poller.extract import PageEntry
from telex.poller.service import oldest_first


def test_whole_seconds_sort_before_later_milliseconds_of_the_same_second() -> None:
    # Newest first, as a page shows them; iso_utc drops ".000" from a whole second.
    page = [
        PageEntry("c", "c", published="2026-11-27T10:46:01Z"),
        PageEntry("b", "b", published="2026-11-27T10:46:00.250Z"),
        PageEntry("a", "a", published="2026-11-27T10:46:00Z"),
    ]
    assert [e.entry_id for e in oldest_first(page)] == ["a", "b", "c"]


def test_entries_without_a_time_or_of_the_same_time_keep_reversed_page_order() -> None:
    page = [
        PageEntry("z3", "3"),
        PageEntry("z2", "2"),
        PageEntry("t2", "t", published="2026-11-27T10:46:00.500Z"),
        PageEntry("t1", "t", published="2026-11-27T10:46:00.500Z"),
    ]
    assert [e.entry_id for e in oldest_first(page)] == ["z2", "z3", "t1", "t2"]
