"""Extraction capabilities a real live blog needs, each on a small page written here that
imitates a pattern publishers use (tests/data/poller/*.html)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from telex.poller.documents import extract_document
from telex.poller.extract import extract_html

DATA = Path(__file__).resolve().parent.parent / "data" / "poller"
NOW = datetime(2024, 8, 27, 14, 0, tzinfo=UTC)


def page(name: str, now: datetime = NOW, **kw: object):  # type: ignore[no-untyped-def]
    return extract_document(
        (DATA / name).read_bytes(),
        f"https://fixtures.test/{name}",
        now=now,
        **kw,  # type: ignore[arg-type]
    )


def rows(name: str) -> list[tuple[str | None, str | None, str]]:
    return [(e.published, e.zone_from, (e.title or e.text)[:24]) for e in page(name).entries]


def test_flat_stream_of_bold_times_rolls_back_past_midnight_in_the_country_zone() -> None:
    # Updates marked only by <strong>HH.MM</strong> at the start of a paragraph; the page's
    # date from its metadata, newest first, the clock going up means the day before; a .co.uk
    # page with no offsets reads its times in London time.
    got = page("flat-bold-times.html")
    assert [(e.published, e.zone_from, e.zone) for e in got.entries] == [
        ("2019-01-02T01:05:00Z", "country", "Europe/London"),
        ("2019-01-02T00:20:00Z", "country", "Europe/London"),
        ("2019-01-01T23:50:00Z", "country", "Europe/London"),
        ("2019-01-01T23:41:00Z", "country", "Europe/London"),
        ("2019-01-01T23:15:00Z", "country", "Europe/London"),
    ]
    texts = [e.text for e in got.entries]
    assert texts[0].startswith("Divers say")  # the time is not part of the words
    assert "coastguard said conditions" in texts[0]  # a paragraph without a time follows it
    assert texts[2].startswith("Tom Reyes reports")  # time and name in one <strong>
    assert texts[3] == "Coastguard: two lifeboats launched"  # an entry that is only an embed
    # The summary bullets and the related-stories list are not entries.
    assert not any("Twelve rescued" in t or "Storm warning" in t for t in texts)


def test_epoch_in_a_hidden_input_and_older_byline_dates() -> None:
    assert rows("hidden-epoch.html") == [
        ("2021-03-03T18:00:00Z", "stated", "Talks resume"),
        ("2021-03-02T17:00:00Z", "stated", "Schools closed"),
        ("2021-03-02T13:00:00Z", "stated", "Picket lines form"),
    ]


def test_match_minutes_before_or_after_the_text_and_a_sidebar_of_timed_links() -> None:
    got = page("match-minutes.html").entries
    assert [(e.time_raw, e.published) for e in got] == [
        ("94'", None), ("90+2'", None), ("67'", None), ("2'", None),
    ]  # fmt: skip
    assert got[1].text == "But de Rennes ! Une frappe croisée imparable."


def test_json_ld_enriches_the_entries_the_page_shows_and_adds_none() -> None:
    got = page("jsonld-headlines.html").entries
    # Five updates in the JSON-LD, three on the page: three entries, with the JSON-LD times.
    assert [(e.published, e.title) for e in got] == [
        ("2022-03-04T21:05:12Z", "Stocks close lower for the week"),
        ("2022-03-04T13:31:40Z", "Jobs report beats forecasts"),
        ("2022-03-04T10:02:09Z", "Oil tops $115 a barrel"),
    ]
    assert got[0].text == "The index fell 1.2% & oil rose."  # no markup, no "Advertisement"


def test_json_ld_text_is_unescaped_text_on_a_page_it_renders() -> None:
    html = (
        '<html><head><script type="application/ld+json">{"@type":"LiveBlogPosting",'
        '"liveBlogUpdate":[{"headline":"A &amp; B","datePublished":"2024-01-18T10:46:00Z",'
        '"articleBody":"&lt;p&gt;One &lt;b&gt;two&lt;/b&gt;&lt;/p&gt;&lt;p&gt;Three&lt;/p&gt;"}]}'
        '</script></head><body><div id="app"></div></body></html>'
    )
    (entry,) = extract_html(html, "https://x.test/live", NOW).entries
    assert (entry.title, entry.text) == ("A & B", "One two\n\nThree")


def test_json_ld_time_matched_by_text_fixes_a_guessed_zone_but_not_a_different_time() -> None:
    def one(shown: str, ld: str) -> str | None:
        html = (
            '<html lang="en-GB"><head><script type="application/ld+json">'
            '{"@type":"LiveBlogPosting","datePublished":"2020-05-12T08:00:00Z","liveBlogUpdate":['
            f'{{"headline":"Second wave unlikely","datePublished":"{ld}"}}]}}</script></head>'
            '<body><div class="s"><article class="post"><time>' + shown + "</time>"
            "<h3>Second wave unlikely</h3><p>Experts say a second wave is unlikely.</p>"
            '</article><article class="post"><time>12:00</time><h3>Other</h3><p>Other news.</p>'
            "</article></div></body></html>"
        )
        return extract_html(html, "https://x.test/live", NOW).entries[0].published

    # The page shows 15:05 in a zone that was only a guess; the JSON-LD states the instant.
    assert one("15:05", "2020-05-12T15:05:08Z") == "2020-05-12T15:05:08Z"
    # A JSON-LD time that is another time altogether does not replace the one shown.
    assert one("15:05", "2020-05-12T11:42:00Z") == "2020-05-12T14:05:00Z"


def test_key_events_pinned_copies_stamps_bylines_and_teasers_are_not_entries() -> None:
    got = page("key-events.html").entries
    assert [(e.entry_id.rsplit("#", 1)[1], e.published) for e in got] == [
        ("block-4", "2023-03-15T14:40:00Z"),  # microdata; its "Updated 14:52" is not the time
        ("block-2", "2023-03-15T10:05:00Z"),  # the stream's copy, not the pinned one
        ("block-1", "2023-03-15T08:00:00Z"),
    ]
    assert got[0].title == "Markets react"


def test_an_article_with_a_ticker_sidebar_clock_and_scores_yields_nothing() -> None:
    assert page("negative-article.html").entries == []


def test_times_that_start_paragraphs_in_german_and_french_forms() -> None:
    got = page("german-ticker.html")
    assert [(e.published, e.zone_from) for e in got.entries] == [
        ("2024-08-27T13:55:00Z", "stated"),  # "vor 5 Minuten" counted back from the fetch
        ("2024-08-27T10:31:00Z", "country"),  # 12.31 Uhr in Berlin (CEST), 27.08.2024
        ("2024-08-27T08:46:00Z", "country"),  # 10h46
        ("2024-08-27T07:15:00Z", "country"),
    ]
    assert got.entries[1].text.startswith("Die Feuerwehr meldet")
    assert "evakuiert" in got.entries[1].text


def test_every_way_of_writing_a_time_in_one_stream() -> None:
    assert rows("time-forms.html") == [
        ("2024-06-04T15:36:00Z", "stated", "Final tallies are being "),  # 21:06 (IST)
        ("2024-06-04T15:00:00Z", "stated", "Celebrations begin outsi"),  # amp-timeago
        ("2024-06-04T13:30:00Z", "stated", "Leads narrow in three st"),  # data-timestamp
        ("2024-06-04T06:40:00Z", "page", "Early trends show a clos"),  # <b>12</b>:<b>10</b>
        ("2024-06-04T05:16:00Z", "page", "Counting has started at "),  # "10:46am:" + +05:30
    ]


def test_a_page_that_names_no_zone_reads_utc_and_says_so() -> None:
    html = (
        "<html><body><h1>L</h1><p>18 January 2024</p><div>"
        '<article class="u"><span>10:46</span><p>Second thing.</p></article>'
        '<article class="u"><span>10:30</span><p>First thing.</p></article></div></body></html>'
    )
    got = extract_html(html, "https://x.test/live", NOW)
    assert [(e.published, e.zone_from) for e in got.entries] == [
        ("2024-01-18T10:46:00Z", "utc-assumed"),
        ("2024-01-18T10:30:00Z", "utc-assumed"),
    ]
    assert any("UTC" in w for w in got.warnings)


def test_a_date_that_cannot_be_read_is_null_with_a_warning_never_today() -> None:
    html = (
        "<html><body><h1>L</h1><div>"
        '<article class="u"><time>Blursday 31 at 10:46</time><p>Odd date.</p></article>'
        '<article class="u"><time>2024-01-18T10:30:00Z</time><p>Fine.</p></article>'
        "</div></body></html>"
    )
    got = extract_html(html, "https://x.test/live", NOW)
    assert [e.published for e in got.entries] == [None, "2024-01-18T10:30:00Z"]
    assert any("Blursday" in w for w in got.warnings)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("\ufeff<html><body><p>Caf\u00e9</p>".encode("utf-8"), None),  # byte order mark
        ("<html><body><p>Caf\u00e9</p>".encode("cp1252"), "text/html; charset=windows-1252"),
        (
            b"<html><head><!-- a comment -->"
            + b'<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">'
            + "</head><body><p>Caf\u00e9</p>".encode("latin-1"),
            None,
        ),
        ("<html><body><p>Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e</p>".encode("latin-1"), None),
    ],
    ids=["bom", "http-header", "meta-in-first-kb", "detected"],
)
def test_html5_encoding_sniffing(body: bytes, content_type: str | None) -> None:
    from telex.poller.extract import decode_html

    assert "Caf\u00e9" in decode_html(body, content_type)


def test_truncated_feeds_yield_their_complete_items_and_say_what_was_cut() -> None:
    rss = (DATA / "rss2.xml").read_bytes()
    cut = rss[: rss.rfind(b"</item>") - 10]
    got = extract_document(cut, "https://x.test/feed", now=NOW)
    assert [e.title for e in got.entries] == ["Ceasefire talks resume"]
    assert any("truncated feed" in w and "item 2 was cut" in w for w in got.warnings)
    feed = (DATA / "feed.json").read_bytes()
    got = extract_document(feed[:-60], "https://x.test/feed.json", now=NOW)
    assert len(got.entries) == 1 and any("truncated JSON Feed" in w for w in got.warnings)


def test_feed_dates_without_a_zone_take_the_channel_offset() -> None:
    rss = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
        b"<link>https://station.example/</link>"
        b"<lastBuildDate>Sat, 16 Dec 2023 14:10:00 -0500</lastBuildDate>"
        b"<item><title>A</title><pubDate>Sat, Dec 16 2023 02:02:33 PM</pubDate></item>"
        b"<item><title>B</title><pubDate>Thu, 07 Dec 17 10:00:29 -0800</pubDate></item>"
        b"<item><title>C</title><pubDate>Wed, 2, Feb 2011 9:13:55 CST</pubDate></item>"
        b"</channel></rss>"
    )
    got = extract_document(rss, "https://station.example/feed", now=NOW)
    assert [(e.published, e.zone_from) for e in got.entries] == [
        ("2023-12-16T19:02:33Z", "page"),
        ("2017-12-07T18:00:29Z", "stated"),  # two-digit year
        ("2011-02-02T15:13:55Z", "stated"),  # a comma after the day
    ]


def test_a_datetime_marked_z_that_is_really_local_time_is_caught() -> None:
    html = (
        '<html lang="de"><head><meta property="article:modified_time" '
        'content="2024-03-05T15:10:00+01:00"></head><body><h1>Ticker</h1><div>'
        '<article class="u"><time datetime="2024-03-05T15:05:00Z">15:05</time><p>Neu.</p>'
        '</article><article class="u"><time datetime="2024-03-05T14:40:00Z">14:40</time>'
        "<p>Davor.</p></article></div></body></html>"
    )
    got = extract_html(html, "https://x.test/live", NOW)
    # 15:05 "Z" would be 50 minutes after the page was last modified (14:10 UTC): local time.
    assert [(e.published, e.zone_from) for e in got.entries] == [
        ("2024-03-05T14:05:00Z", "page"),
        ("2024-03-05T13:40:00Z", "page"),
    ]
    assert any("marked Z" in w for w in got.warnings)
    # The same page with honest Z values (before the modification time) is left alone.
    honest = html.replace("15:05:00Z", "14:05:00Z").replace("14:40:00Z", "13:40:00Z")
    assert [e.published for e in extract_html(honest, "https://x.test/live", NOW).entries] == [
        "2024-03-05T14:05:00Z",
        "2024-03-05T13:40:00Z",
    ]
