"""The poller's rules that need no network: schedule, deletions, validation, headers, times."""

from __future__ import annotations

import ipaddress
from datetime import date

import httpx
import pytest

from telex.config import HtmlSelectors, PollerConfig
from telex.outbound import retry_after_seconds
from telex.poller.extract import extract_html
from telex.poller.fetch import freshness_seconds
from telex.poller.schedule import Cadence
from telex.poller.service import vanished
from telex.poller.sources import SourceError, decode_source, encode_source, validate_source
from telex.timeparse import is_relative, iso_utc, resolve


def cadence(base: float = 10.0, **settings: object) -> Cadence:
    config = PollerConfig.model_validate({"jitter": 0, **settings})
    return Cadence(base, config)


def test_interval_tightens_while_publishing_and_relaxes_when_quiet() -> None:
    c = cadence(adaptive_min=0.5, adaptive_max=4, quiet_polls=2)
    assert c.after_success(changed=True) == 5.0
    assert c.after_success(changed=True) == 5.0  # bounded below
    assert c.after_success(changed=False) == 5.0  # one quiet poll is not yet quiet
    delays = [c.after_success(changed=False) for _ in range(10)]
    assert delays == sorted(delays) and delays[-1] == 40.0  # bounded above


def test_errors_back_off_exponentially_and_never_stop() -> None:
    c = cadence(backoff_max=60)
    delays = [c.after_error() for _ in range(8)]
    assert delays[:4] == [10.0, 20.0, 40.0, 60.0]
    assert all(d == 60.0 for d in delays[4:])  # capped, still scheduled
    assert c.consecutive_errors == 8 and c.backoff == 60.0
    assert c.after_success(changed=False) == 10.0
    assert c.consecutive_errors == 0 and c.backoff == 0.0


def test_server_requests_are_honoured_but_capped() -> None:
    c = cadence(max_wait=300)
    assert c.after_error(retry_after=120) == 120.0
    assert c.after_success(changed=True, asked=45) == 45.0  # max-age / <ttl>
    assert c.after_success(changed=True, asked=86_400) == 300.0
    assert c.after_success(changed=True, asked=1) == 5.0  # never faster than our own rhythm


def test_jitter_stays_within_bounds() -> None:
    c = Cadence(10.0, PollerConfig(jitter=0.2))
    delays = {round(c.after_success(changed=False), 6) for _ in range(50)}
    assert len(delays) > 1 and all(8.0 <= d <= 12.0 * 4 for d in delays)


@pytest.mark.parametrize(
    ("previous", "current", "expected"),
    [
        (["e5", "e4", "e3", "e2", "e1"], {"e6", "e5", "e4", "e2", "e1"}, ["e3"]),
        (["e5", "e4", "e3", "e2", "e1"], {"e6", "e5", "e4", "e3"}, []),  # scrolled off the end
        (["e1", "e2", "e3"], {"e2", "e3", "e4"}, []),  # forward page dropping its first
        (["e1", "e2", "e3"], {"e3"}, []),  # too little left to say
        ([], {"e1"}, []),
    ],
)
def test_only_entries_inside_the_window_count_as_deleted(
    previous: list[str], current: set[str], expected: list[str]
) -> None:
    assert vanished(previous, current) == expected


def test_source_validation_names_each_bad_field() -> None:
    with pytest.raises(SourceError) as info:
        validate_source(
            {
                "id": "Bad Id",
                "url": "ftp://x",
                "interval": -1,
                "timezone": "Mars/Olympus",
                "mapping": {"items": "a[["},
            }
        )
    fields = {e["field"] for e in info.value.errors}
    assert fields >= {"id", "url", "interval", "timezone", "mapping.items"}
    with pytest.raises(SourceError) as info:
        validate_source({"id": "api", "url": "https://x.test/api", "kind": "json"})
    assert "mapping" in str(info.value)
    with pytest.raises(SourceError) as info:
        validate_source({"id": "s", "url": "https://x.test/", "selectors": {"entry": "div[["}})
    assert "selectors.entry" in {e["field"] for e in info.value.errors}


def test_source_records_round_trip() -> None:
    source = validate_source(
        {"id": "bbc", "url": "https://bbc.test/live", "interval": 30, "timezone": "Europe/London"}
    )
    assert decode_source(encode_source(source)) == source
    assert decode_source(None) is None
    with pytest.raises(SourceError):
        decode_source(b"{not json")


def test_freshness_and_retry_after_headers() -> None:
    assert freshness_seconds(httpx.Headers({"cache-control": "public, max-age=60"})) == 60
    assert freshness_seconds(httpx.Headers({"cache-control": "max-age=60", "age": "20"})) == 40
    assert freshness_seconds(httpx.Headers({"cache-control": "no-cache, max-age=60"})) is None
    assert freshness_seconds(httpx.Headers({"expires": "0"})) is None
    expires = httpx.Headers({"expires": "Thu, 01 Jan 2026 00:02:00 GMT"})
    assert freshness_seconds(expires, now=1767225600.0) == 120
    assert retry_after_seconds("120") == 120
    assert retry_after_seconds("Thu, 01 Jan 2026 00:01:00 GMT", now=1767225600.0) == 60
    assert retry_after_seconds("soon") is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("10:46 GMT+3", "2024-01-18T07:46:00Z"),
        ("10:46 UTC-05:30", "2024-01-18T16:16:00Z"),
        ("Thu, 18 Jan 2024 10:46:00 -0500", "2024-01-18T15:46:00Z"),
        ("10.46am ET", "2024-01-18T15:46:00Z"),
        ("10:46 BST", "2024-01-18T09:46:00Z"),
        (1705574760, "2024-01-18T10:46:00Z"),
        ("1705574760000", "2024-01-18T10:46:00Z"),
    ],
)
def test_more_time_formats(raw: str | int, expected: str) -> None:
    moment = resolve(raw, page_date=date(2024, 1, 18))
    assert moment is not None and iso_utc(moment) == expected


def test_relative_times_are_to_the_minute() -> None:
    assert is_relative("2 hours ago") and is_relative("just now") and not is_relative("10:46")
    from datetime import UTC, datetime

    now = datetime(2024, 1, 18, 12, 0, 31, 500_000, tzinfo=UTC)
    moment = resolve("5 min ago", now=now)
    assert moment is not None and iso_utc(moment) == "2024-01-18T11:55:00Z"


def test_selectors_override_the_generic_search() -> None:
    html = """<html><body><h1>Live</h1><p>18 January 2024</p>
      <div class="x" data-k="1"><b class="t">10:46</b><i>Not a title</i><em>Body one</em></div>
      <div class="x" data-k="2"><b class="t">09:30</b><em>Body two</em></div>
    </body></html>"""
    page = extract_html(
        html,
        "http://x.test/live",
        selectors=HtmlSelectors(entry="div.x", time="b.t", title="i", body="./em"),
        page_tz="Europe/Moscow",
    )
    assert [(e.published, e.title, e.text) for e in page.entries] == [
        ("2024-01-18T07:46:00Z", "Not a title", "Body one"),
        ("2024-01-18T06:30:00Z", None, "Body two"),
    ]


def test_time_next_to_text_without_space_is_not_swallowed() -> None:
    # text_content() glues "10:46" to "Third." here; a word is not a time zone.
    blocks = "".join(
        f'<article id="p{n}"><span>{t}</span><p>{text}</p></article>'
        for n, t, text in ((3, "10:46", "Third."), (2, "10:30", "Second."), (1, "10:00", "First."))
    )
    page = extract_html(f"<html><body><h1>L</h1><div>{blocks}</div></body></html>", "http://x/")
    assert [e.text for e in page.entries] == ["Third.", "Second.", "First."]


def test_stale_json_ld_does_not_hide_newer_entries_on_the_page() -> None:
    ld = (
        '{"@type": "LiveBlogPosting", "coverageStartTime": "2024-01-18T08:00:00Z",'
        ' "liveBlogUpdate": ['
        '{"@id": "http://x.test/live#p2", "datePublished": "2024-01-18T10:30:00Z",'
        ' "articleBody": "Second."},'
        '{"@id": "http://x.test/live#p1", "datePublished": "2024-01-18T10:00:00Z",'
        ' "articleBody": "First."}]}'
    )
    html = (
        f'<html><head><script type="application/ld+json">{ld}</script></head><body><h1>L</h1>'
        '<article id="p3"><span>10:46 GMT</span><p>Third, not yet in the JSON-LD.</p></article>'
        '<article id="p2"><span>10:30 GMT</span><p>Second.</p></article>'
        '<article id="p1"><span>10:00 GMT</span><p>First.</p></article></body></html>'
    )
    page = extract_html(html, "http://x.test/live")
    assert [(e.entry_id.rsplit("#")[1], e.published, e.time_raw) for e in page.entries] == [
        ("p3", "2024-01-18T10:46:00Z", "10:46 GMT"),
        ("p2", "2024-01-18T10:30:00Z", "10:30 GMT"),
        ("p1", "2024-01-18T10:00:00Z", "10:00 GMT"),
    ]


def test_pinned_copy_of_an_entry_is_dropped_for_the_one_in_the_stream() -> None:
    html = (
        "<html><body><h1>L</h1><p>18 January 2024</p>"
        '<div class="pinned" id="pin-1"><span>10:00</span><p>Evacuation order in force.</p></div>'
        '<article id="p2"><span>10:30</span><p>Roads closed.</p></article>'
        '<article id="p1"><span>10:00</span><p>Evacuation order in force.</p></article>'
        "</body></html>"
    )
    page = extract_html(html, "http://x.test/live")
    assert [e.entry_id.rsplit("#")[1] for e in page.entries] == ["p2", "p1"]


def test_an_edit_to_the_first_words_keeps_a_derived_id() -> None:
    from telex.poller.extract import PageEntry, derived_id
    from telex.poller.identity import carry_derived_ids

    def entry(text: str, time: str = "10:46") -> PageEntry:
        return derived_id(PageEntry(entry_id="", text=text, time_raw=time, published=None))

    before = [entry("Prime minister says the vote will go ahead on Tuesday as planned."),
              entry("Opposition walks out.", "10:30")]  # fmt: skip
    after = [entry("The prime minister says the vote will go ahead on Tuesday as planned."),
             entry("Opposition walks out.", "10:30"),
             entry("Completely different news at the same minute.")]  # fmt: skip
    assert after[0].entry_id != before[0].entry_id  # the first words changed...
    carried = carry_derived_ids({e.entry_id: e for e in before}, after)
    assert carried[0].entry_id == before[0].entry_id  # ...the id did not
    assert carried[1].entry_id == before[1].entry_id
    assert carried[2].entry_id == after[2].entry_id  # a new entry keeps its own


def test_bare_times_take_the_zone_the_page_declares() -> None:
    html = (
        '<html><head><meta property="article:published_time" content="2024-01-18T08:00:00+03:00">'
        "</head><body><h1>Moscow live</h1><p>18 January 2024</p>"
        '<article id="p1"><span>10:46</span><p>Lavrov speaks.</p></article></body></html>'
    )
    page = extract_html(html, "http://x.test/live")
    assert page.page_tz == "+03:00"
    assert page.entries[0].published == "2024-01-18T07:46:00Z"
    # A zone configured for the source wins over what the page suggests.
    assert extract_html(html, "http://x.test/live", page_tz="UTC").entries[0].published == (
        "2024-01-18T10:46:00Z"
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("il y a 2 heures", "2024-01-18T10:00:00Z"),
        ("vor 5 Minuten", "2024-01-18T11:55:00Z"),
        ("hace 3 horas", "2024-01-18T09:00:00Z"),
        ("hier à 10h46", "2024-01-17T10:46:00Z"),
        ("gestern, 09:30", "2024-01-17T09:30:00Z"),
        ("18. Januar 2024, 10:46 MEZ", "2024-01-18T09:46:00Z"),
        ("18 de enero de 2024 10:46", "2024-01-18T10:46:00Z"),
        ("1er février 2024 à 10h46", "2024-02-01T10:46:00Z"),
    ],
)
def test_times_in_other_languages(raw: str, expected: str) -> None:
    from datetime import UTC, datetime

    moment = resolve(raw, now=datetime(2024, 1, 18, 12, 0, tzinfo=UTC))
    assert moment is not None and iso_utc(moment) == expected


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("93.184.216.34", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("169.254.169.254", False),
        ("100.64.1.1", False),  # carrier-grade NAT
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("::ffff:127.0.0.1", False),
    ],
)
def test_poller_and_notifier_share_one_address_policy(address: str, allowed: bool) -> None:
    from telex.ssrf import AddressPolicy

    assert AddressPolicy().allows(ipaddress.ip_address(address)) is allowed
    assert AddressPolicy(["100.64.0.0/10"]).allows(ipaddress.ip_address("100.64.1.1"))
