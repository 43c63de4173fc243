"""Properties of time resolution: a time that carries its zone resolves to the same instant
whatever the zone, and nothing extracted from a page is ever later than its fetch + a day."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telex.poller.extract import extract_html
from telex.timeparse import resolve

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW = datetime(2024, 7, 10, 15, 0, tzinfo=UTC)

instants = st.datetimes(
    min_value=datetime(1995, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=0))
offsets = st.integers(min_value=-12 * 4, max_value=14 * 4).map(
    lambda q: timezone(timedelta(minutes=15 * q))
)
regions = st.sampled_from(
    ["Europe/London", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Sydney",
     "America/Sao_Paulo", "Asia/Tokyo", "Pacific/Auckland", "Africa/Cairo", "UTC"]
).map(ZoneInfo)  # fmt: skip


@FAST
@given(instant=instants, zone=offsets | regions)
def test_a_time_written_with_its_offset_resolves_to_the_same_instant(instant, zone) -> None:  # type: ignore[no-untyped-def]
    local = instant.astimezone(zone)
    assert resolve(local.isoformat(), now=NOW) == instant
    # The same instant as a time of day with its offset, on the page's date.
    offset = local.strftime("%z")
    written = f"{local:%H:%M:%S} {offset[:3]}:{offset[3:]}"
    assert resolve(written, page_date=local.date(), now=NOW) == instant
    # RFC 822, as feeds write it.
    assert resolve(local.strftime("%a, %d %b %Y %H:%M:%S ") + offset, now=NOW) == instant


@FAST
@given(instant=instants, zone=regions)
def test_a_bare_time_in_the_page_zone_round_trips(instant, zone) -> None:  # type: ignore[no-untyped-def]
    local = instant.astimezone(zone)
    moment = resolve(f"{local:%H:%M:%S}", page_date=local.date(), page_tz=zone, now=NOW)
    assert moment is not None
    # Equal unless the wall time is ambiguous (the hour repeated when clocks go back).
    again = moment.astimezone(zone)
    assert (again.date(), again.time()) == (local.date(), local.time()) or local.fold


time_texts = st.one_of(
    st.times().map(lambda t: f"{t:%H:%M}"),
    st.times().map(lambda t: f"{t:%H.%M} Uhr"),
    st.tuples(st.times(), st.sampled_from(["GMT", "CET", "ET", "IST", "+05:30"])).map(
        lambda p: f"{p[0]:%H:%M} {p[1]}"
    ),
    st.integers(min_value=0, max_value=600).map(lambda n: f"{n} min ago"),
    st.integers(min_value=0, max_value=48).map(lambda n: f"vor {n} Stunden"),
    instants.map(lambda d: d.isoformat()),
    instants.map(lambda d: str(int(d.timestamp()))),
    st.dates(min_value=date(1995, 1, 1), max_value=date(2090, 1, 1)).map(
        lambda d: f"{d:%d %B %Y}, 10:46"
    ),
)


@FAST
@given(
    times=st.lists(time_texts, min_size=1, max_size=6),
    page_date=st.none() | st.dates(min_value=date(1995, 1, 1), max_value=date(2090, 1, 1)),
    tz=st.none() | st.sampled_from(["Europe/Paris", "America/Chicago", "+09:00"]),
)
def test_no_extracted_time_is_later_than_the_fetch_plus_a_day(times, page_date, tz) -> None:  # type: ignore[no-untyped-def]
    dated = f"<p>{page_date:%d %B %Y}</p>" if page_date else ""
    posts = "".join(
        f'<div class="post"><span>{t}</span><p>Entry number {i} says something.</p></div>'
        for i, t in enumerate(times)
    )
    html = f"<html><body><h1>Live</h1>{dated}<div class='feed'>{posts}</div></body></html>"
    page = extract_html(html, "https://x.test/live", NOW, page_tz=tz)
    limit = NOW + timedelta(days=1)
    for entry in page.entries:
        if entry.published is not None:
            assert datetime.fromisoformat(entry.published.replace("Z", "+00:00")) <= limit
