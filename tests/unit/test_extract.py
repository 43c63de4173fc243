"""Extraction of the seed live blog, through each of the page's signals."""

from __future__ import annotations

import re

import pytest

from telex.poller.extract import ExtractError, extract_html
from telex.replay.seed import SeedBlog
from telex.replay.server import PAGE_PATH, render_page

BASE = "http://replay.test"
URL = BASE + PAGE_PATH
TIMES = [
    "2024-01-18T10:46:00Z", "2024-01-18T10:43:00Z", "2024-01-18T10:11:00Z",
    "2024-01-18T09:43:00Z", "2024-01-18T09:24:00Z", "2024-01-18T09:18:00Z",
    "2024-01-18T08:57:00Z", "2024-01-18T08:48:00Z", "2024-01-18T08:46:00Z",
    "2024-01-18T08:29:00Z",
]  # fmt: skip


def without_json_ld(html: str) -> str:
    return re.sub(r'<script type="application/ld\+json">.*?</script>', "", html, flags=re.S)


@pytest.mark.parametrize("strip_ld", [False, True], ids=["json-ld+html", "html-only"])
def test_seed_page_yields_its_ten_entries(seed: SeedBlog, strip_ld: bool) -> None:
    html = render_page(seed, len(seed.entries), BASE)
    page = extract_html(without_json_ld(html) if strip_ld else html, URL)
    assert [e.published for e in page.entries] == TIMES
    newest_first = list(reversed(seed.entries))
    assert [e.text for e in page.entries] == ["\n\n".join(s.paragraphs) for s in newest_first]
    assert [e.time_raw for e in page.entries] == [s.time for s in newest_first]
    assert page.page_date is not None and page.page_date.isoformat() == "2024-01-18"
    # The publisher's anchors are the ids, whichever signal found the entry.
    assert [e.entry_id for e in page.entries] == [f"{URL}#post-{n}" for n in range(10, 0, -1)]
    assert all(e.html and e.html.startswith("<p>") for e in page.entries)


def test_ids_are_stable_as_the_page_grows(seed: SeedBlog) -> None:
    early = extract_html(without_json_ld(render_page(seed, 3, BASE)), URL)
    late = extract_html(without_json_ld(render_page(seed, 10, BASE)), URL)
    assert {e.entry_id for e in early.entries} <= {e.entry_id for e in late.entries}


def test_single_entry_page_is_not_swallowed_by_its_container(seed: SeedBlog) -> None:
    page = extract_html(without_json_ld(render_page(seed, 1, BASE)), URL)
    assert len(page.entries) == 1
    assert page.entries[0].text == seed.entries[0].paragraphs[0]


def test_entries_without_anchor_get_derived_ids() -> None:
    html = """<html><body><h1>Live</h1><p>Updated 5 March 2025</p><div class="feed">
      <div><span>14:05 CET</span><p>Second thing happened.</p></div>
      <div><span>13:50 CET</span><p>First thing happened.</p></div>
    </div></body></html>"""
    page = extract_html(html, "http://example.test/live")
    assert [e.published for e in page.entries] == ["2025-03-05T13:05:00Z", "2025-03-05T12:50:00Z"]
    assert all(e.entry_id.startswith("derived:") for e in page.entries)
    assert len({e.entry_id for e in page.entries}) == 2


@pytest.mark.parametrize("body", ["", "   ", b""])
def test_empty_document_is_a_clear_error(body: str | bytes) -> None:
    with pytest.raises(ExtractError, match="empty"):
        extract_html(body, "http://example.test/")


def test_invalid_json_ld_falls_back_to_structure(seed: SeedBlog) -> None:
    html = render_page(seed, 2, BASE).replace('"@context"', '"@context" oops', 1)
    page = extract_html(html, URL)
    assert len(page.entries) == 2
    assert page.entries[0].time_raw == "08:46 GMT"
