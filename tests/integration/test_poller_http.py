"""The poller's HTTP and extraction against a real local web server: page shapes, feeds,
politeness, limits and hostile input."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from telex.config import JsonMapping, PollerConfig
from telex.poller.documents import extract_document
from telex.poller.extract import ExtractError
from telex.poller.fetch import Fetched, Fetcher, FetchError
from telex.ssrf import AddressPolicy, IPAddress, Resolver
from telex.testing import run_telex

from .site import Site, serve_site

DATA = Path(__file__).resolve().parent.parent / "data" / "poller"
LOOPBACK = AddressPolicy(["127.0.0.0/8"])
API_MAPPING = JsonMapping(
    items="data.posts",
    id="postId",
    time="createdAt",
    title="headline",
    body="body",
    url="permalink",
)
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".xml": "application/xml",
    ".rdf": "application/rdf+xml",
    ".json": "application/json",
}


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    s = Site()
    for path in DATA.iterdir():
        if path.is_file():  # golden/ holds the expected extraction of each fixture
            s.set("/" + path.name, path.read_bytes(), TYPES[path.suffix])
    async for served in serve_site(s):
        yield served


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    f = Fetcher(PollerConfig(timeout=3, max_body_bytes=200_000, max_redirects=3), LOOPBACK)
    yield f
    await f.aclose()


async def fetch_and_extract(fetcher: Fetcher, url: str, **kw: object) -> list[dict[str, object]]:
    fetched = await fetcher.fetch(url)
    assert fetched.status == 200 and fetched.body is not None
    page = await asyncio.to_thread(
        extract_document,
        fetched.body,
        fetched.url,
        content_type=fetched.content_type,
        now=datetime(2026, 6, 1, 12, 0, tzinfo=UTC),
        **kw,  # type: ignore[arg-type]
    )
    return [e.__dict__ for e in page.entries]


# Each shape: what the page is, and the (published, title or first words) of its entries.
SHAPES = {
    "jsonld-only.html": [
        ("2024-01-21T09:15:00Z", "Trains cancelled"),
        ("2024-01-21T08:02:00Z", "Gusts of 99mph"),
        ("2024-01-21T06:30:00Z", "An amber warning"),
    ],
    "html-time-datetime.html": [
        ("2024-07-05T00:17:00Z", "Sunderland declares first"),
        ("2024-07-04T23:45:00Z", "Counting is under way"),
        ("2024-07-04T21:00:00Z", "Exit poll"),
    ],
    "forward-et.html": [
        ("2024-01-31T14:05:00Z", "Good morning."),
        ("2024-01-31T18:58:00Z", "Two minutes"),
        ("2024-01-31T19:00:00Z", "Rates held"),
    ],
    "relative-bst.html": [
        ("2026-06-01T10:00:00Z", "Headliner confirmed"),
        ("2026-06-01T11:25:00Z", "Gates are open."),
        ("2026-06-01T09:46:00Z", "Queues stretch"),
    ],
    "both.html": [
        ("2024-03-21T08:05:00Z", "Leaders arrive"),
        ("2024-03-21T10:40:00Z", "Statement agreed"),
    ],
    "french.html": [
        ("2026-06-01T10:00:00Z", "Le ministre quitte"),
        ("2024-01-18T09:46:00Z", "Question sur l"),
        ("2024-01-18T07:29:00Z", "La conférence commence."),
    ],
    "rss2.xml": [
        ("2024-01-18T10:46:00Z", "Ceasefire talks resume"),
        ("2024-01-18T13:00:00Z", "Markets open lower"),
    ],
    "rss091.xml": [(None, "Café reopens")],
    "rss1.rdf": [("2024-01-18T08:46:00Z", "Bridge closed")],
    "atom.xml": [("2024-01-18T07:46:00Z", "Second"), ("2024-01-18T07:00:00Z", "First")],
    "feed.json": [("2024-01-18T15:46:00Z", "Vote passes"), ("2024-01-18T09:00:00Z", "Debate")],
}


@pytest.mark.parametrize("name", sorted(SHAPES))
async def test_page_and_feed_shapes(site: Site, fetcher: Fetcher, name: str) -> None:
    entries = await fetch_and_extract(fetcher, site.url("/" + name))
    got = [(e["published"], e["title"] or e["text"]) for e in entries]
    assert len(got) == len(SHAPES[name])
    for (published, label), (want_published, want_label) in zip(got, SHAPES[name], strict=True):
        assert published == want_published
        assert isinstance(label, str) and label.startswith(want_label)
    assert all(e["entry_id"] for e in entries)
    assert len({e["entry_id"] for e in entries}) == len(entries)
    assert all(e["time_raw"] for e in entries if e["published"])


async def test_ids_are_the_publishers_own(site: Site, fetcher: Fetcher) -> None:
    html = await fetch_and_extract(fetcher, site.url("/html-time-datetime.html"))
    assert [e["entry_id"] for e in html] == [
        site.url(f"/html-time-datetime.html#entry-{n}") for n in (42, 41, 40)
    ]
    assert [e["time_raw"] for e in html] == ["01:17", "00:45", "22:00"]
    rss = await fetch_and_extract(fetcher, site.url("/rss2.xml"))
    assert [e["entry_id"] for e in rss] == ["wire-1002", "wire-1001"]
    both = await fetch_and_extract(fetcher, site.url("/both.html"))
    assert [(e["entry_id"], e["time_raw"]) for e in both] == [
        ("https://summit.example/live#u1", "09:05 CET"),  # JSON-LD's id, the page's time
        ("https://summit.example/live#u2", "11:40 CET"),
    ]
    relative = await fetch_and_extract(fetcher, site.url("/relative-bst.html"))
    assert [str(e["entry_id"]).rsplit("#", 1)[1] for e in relative] == ["c9", "c8", "c7"]


async def test_json_api_through_a_mapping(site: Site, fetcher: Fetcher) -> None:
    entries = await fetch_and_extract(fetcher, site.url("/api.json"), mapping=API_MAPPING)
    assert [(e["entry_id"], e["published"], e["url"]) for e in entries] == [
        ("77", "2024-01-18T10:46:00Z", site.url("/match#77")),
        ("76", "2024-01-18T10:30:00Z", site.url("/match#76")),
    ]
    assert entries[0]["time_raw"] == "1705574760"  # the epoch number as written
    with pytest.raises(ExtractError, match="needs a mapping"):
        await fetch_and_extract(fetcher, site.url("/api.json"))


async def test_conditional_get_and_freshness(site: Site, fetcher: Fetcher) -> None:
    site.set("/cached", "<p>x</p>", **{"Cache-Control": "public, max-age=120"})
    first = await fetcher.fetch(site.url("/cached"))
    assert first.status == 200 and first.etag and first.fresh_for == 120
    again = await fetcher.fetch(site.url("/cached"), etag=first.etag)
    assert again.not_modified and again.body is None


async def test_rate_limit_carries_retry_after(site: Site, fetcher: Fetcher) -> None:
    site.set("/busy", "slow down", **{"Retry-After": "90"})
    site.pages["/busy"].status = 429
    with pytest.raises(FetchError) as info:
        await fetcher.fetch(site.url("/busy"))
    assert info.value.reason == "rate_limited" and info.value.retry_after == 90
    site.pages["/busy"].status = 503
    with pytest.raises(FetchError) as info:
        await fetcher.fetch(site.url("/busy"))
    assert info.value.reason == "http_5xx" and info.value.retry_after == 90


async def test_redirects_followed_and_bounded(site: Site, fetcher: Fetcher) -> None:
    site.set("/moved", "", Location="/rss2.xml")
    site.pages["/moved"].status = 301
    fetched = await fetcher.fetch(site.url("/moved"))
    assert isinstance(fetched, Fetched) and fetched.url == site.url("/rss2.xml")
    with pytest.raises(FetchError) as info:
        await fetcher.fetch(site.url("/loop/0"))
    assert info.value.reason == "redirects"


async def test_huge_and_endless_bodies_are_cut_off(site: Site, fetcher: Fetcher) -> None:
    site.set("/huge", b"<p>" + b"y" * 300_000 + b"</p>")
    for path in ("/huge", "/endless"):
        with pytest.raises(FetchError) as info:
            await fetcher.fetch(site.url(path))
        assert info.value.reason == "too_large"


async def test_requests_per_host_are_limited(site: Site) -> None:
    limited = Fetcher(PollerConfig(per_host=2), LOOPBACK)
    try:
        results = await asyncio.gather(*(limited.fetch(site.url(f"/hold/{i}")) for i in range(8)))
    finally:
        await limited.aclose()
    assert all(r.status == 200 for r in results)
    assert site.most_active == 2


async def test_slow_server_times_out(site: Site) -> None:
    quick = Fetcher(PollerConfig(timeout=0.5), LOOPBACK)
    try:
        with pytest.raises(FetchError) as info:
            await quick.fetch(site.url("/slow"))
        assert info.value.reason == "timeout"
    finally:
        await quick.aclose()


async def test_loopback_refused_unless_allowed(site: Site) -> None:
    strict = Fetcher(PollerConfig(), AddressPolicy())
    try:
        with pytest.raises(FetchError) as info:
            await strict.fetch(site.url("/rss2.xml"))
        assert info.value.reason == "refused_address"
        assert "allow_networks" in str(info.value)
        for url in ("http://localhost/", "http://[::1]/", "http://169.254.169.254/latest"):
            with pytest.raises(FetchError) as info:
                await strict.fetch(url)
            assert info.value.reason == "refused_address"
    finally:
        await strict.aclose()
    # An allowed origin lets that one host:port through, not every loopback port.
    origin = site.base.removeprefix("http://")
    own = Fetcher(PollerConfig(), AddressPolicy(origins=[origin]))
    try:
        assert (await own.fetch(site.url("/rss2.xml"))).status == 200
        site.set("/out", "", Location="http://127.0.0.1:1/admin")
        site.pages["/out"].status = 302
        with pytest.raises(FetchError) as info:
            await own.fetch(site.url("/out"))  # a redirect is checked like the first hop
        assert info.value.reason == "refused_address"
    finally:
        await own.aclose()


BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">]>
<rss version="2.0"><channel><title>t</title><item><title>&lol2;</title></item></channel></rss>"""


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (BOMB, "application/rss+xml", "entity declarations"),
        (b"{not json", "application/json", "not valid JSON"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": 3}', "", "not a list"),
        (b"\xff\xfe{\x00", "application/json", "not valid JSON"),
        (b"   ", "text/html", "empty document"),
    ],
)
async def test_bad_documents_are_clear_errors(body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(ExtractError, match=message):
        extract_document(body, "http://x.test/", content_type=content_type)


async def test_truncated_feed_yields_what_it_has() -> None:
    body = b"<rss version='2.0'><channel><item><guid>g1</guid><title>Whole</title></item><item><ti"
    page = extract_document(body, "http://x.test/", content_type="application/rss+xml")
    assert [e.title for e in page.entries][:1] == ["Whole"]


async def test_invalid_encoding_and_unparseable_times_keep_entries() -> None:
    body = (
        b'<html><head><meta charset="utf-8"></head><body><h1>Live</h1>'
        b'<article id="a1"><time>around lunchtime</time><p>Caf\xe9 \xff opens.</p></article>'
        b'<article id="a2"><span>10:46</span><p>Second.</p></article></body></html>'
    )
    page = extract_document(body, "http://x.test/live")
    texts = {e.entry_id: e for e in page.entries}
    assert texts["http://x.test/live#a1"].published is None
    assert texts["http://x.test/live#a1"].time_raw == "around lunchtime"
    assert "opens" in texts["http://x.test/live#a1"].text


async def test_telex_extract_on_a_url_and_on_nothing(site: Site) -> None:
    code, out, _ = await run_telex("extract", site.url("/html-time-datetime.html"))
    assert code == 0
    lines = [orjson.loads(line) for line in out.splitlines()]
    assert [line["published"] for line in lines] == [
        "2024-07-05T00:17:00Z",
        "2024-07-04T23:45:00Z",
        "2024-07-04T21:00:00Z",
    ]
    assert set(lines[0]) >= {"id", "published", "time_raw", "title", "text", "url"}

    site.set("/empty", "<html><body><p>No live entries here.</p></body></html>")
    code, out, err = await run_telex("extract", site.url("/empty"))
    assert code == 1 and out == ""
    assert "no entries found" in err


class RebindingResolver(Resolver):
    """A name that resolves to a public address, then to loopback (DNS rebinding)."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        self.lookups += 1
        return [ipaddress.ip_address("93.184.216.34" if self.lookups == 1 else "127.0.0.1")]


async def test_the_connection_goes_only_to_a_checked_address(site: Site) -> None:
    resolver = RebindingResolver()
    guarded = Fetcher(PollerConfig(timeout=3), AddressPolicy(resolver=resolver))
    port = site.base.rsplit(":", 1)[1]
    try:
        with pytest.raises(FetchError) as info:
            await guarded.fetch(f"http://rebind.test:{port}/rss2.xml")
        assert info.value.reason == "refused_address" and "127.0.0.1" in str(info.value)
        assert resolver.lookups == 2  # checked before the request, and again at connect time
    finally:
        await guarded.aclose()
