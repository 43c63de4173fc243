from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from telex.timeparse import iso_utc, parse_date, resolve

NOW = datetime(2024, 7, 10, 15, 0, tzinfo=UTC)
PAGE = date(2024, 1, 18)


@pytest.mark.parametrize(
    ("raw", "page_date", "expected"),
    [
        ("10:46 GMT", PAGE, "2024-01-18T10:46:00Z"),
        ("- 08:29 GMT", PAGE, "2024-01-18T08:29:00Z"),
        ("10:46 BST", date(2024, 7, 10), "2024-07-10T09:46:00Z"),
        ("10.46am ET", date(2024, 7, 10), "2024-07-10T14:46:00Z"),  # EDT in July
        ("10.46am ET", PAGE, "2024-01-18T15:46:00Z"),  # EST in January
        ("3:05 pm CET", PAGE, "2024-01-18T14:05:00Z"),
        ("12:30 a.m. UTC", PAGE, "2024-01-18T00:30:00Z"),
        ("2024-01-18T10:46:00+03:00", None, "2024-01-18T07:46:00Z"),
        ("2024-01-18T10:46:00Z", None, "2024-01-18T10:46:00Z"),
        ("1705574760", None, "2024-01-18T10:46:00Z"),
        ("1705574760000", None, "2024-01-18T10:46:00Z"),
        ("2 hours ago", None, "2024-07-10T13:00:00Z"),
        ("an hour ago", None, "2024-07-10T14:00:00Z"),
        ("18 January 2024 10:46 GMT", None, "2024-01-18T10:46:00Z"),
        ("January 18, 2024 at 10:46 +02:00", None, "2024-01-18T08:46:00Z"),
        ("14:20", None, "2024-07-10T14:20:00Z"),
        ("16:20", None, "2024-07-09T16:20:00Z"),  # later than now today: yesterday's
    ],
)
def test_resolves_times_as_pages_write_them(
    raw: str, page_date: date | None, expected: str
) -> None:
    moment = resolve(raw, page_date=page_date, now=NOW)
    assert moment is not None
    assert iso_utc(moment) == expected


def test_page_zone_applies_when_the_string_names_none() -> None:
    moment = resolve("09:00", page_date=PAGE, page_tz="Europe/Moscow", now=NOW)
    assert moment is not None and iso_utc(moment) == "2024-01-18T06:00:00Z"


@pytest.mark.parametrize("raw", ["", "soon", "25:99 GMT", None, "tomorrow-ish"])
def test_unparseable_times_give_none(raw: str | None) -> None:
    assert resolve(raw, page_date=PAGE, now=NOW) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("18 January 2024", date(2024, 1, 18)),
        ("Thursday 18th Jan 2024", date(2024, 1, 18)),
        ("January 18, 2024", date(2024, 1, 18)),
        ("2024-01-18", date(2024, 1, 18)),
        ("Updated on 31 Feb 2024", None),
        ("no date here", None),
    ],
)
def test_parse_date(text: str, expected: date | None) -> None:
    assert parse_date(text) == expected
