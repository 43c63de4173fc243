"""Which extractor reads a document: the source's kind, else what the document says it is.

The one entry point the poller and ``telex extract`` share, so an editor trying a page by hand
gets exactly what the poller would produce.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from telex.poller.extract import ExtractError, Page, extract_html

if TYPE_CHECKING:
    from telex.config import HtmlSelectors, JsonMapping

Format = Literal["auto", "html", "feed", "rss", "atom", "jsonfeed", "json"]

_FEED_ROOT = re.compile(rb"<(?:rss|feed|rdf:RDF|channel)[\s>]", re.IGNORECASE)
_HTML_ROOT = re.compile(rb"<(?:!doctype\s+html|html|head|body)[\s>]", re.IGNORECASE)
_CHARSET = re.compile(r"charset\s*=\s*\"?([\w.:-]+)", re.IGNORECASE)


def sniff(body: bytes, content_type: str | None = None) -> Literal["html", "feed", "json"]:
    """Guess the format of a document from its first bytes, then its Content-Type."""
    head = body[:2048].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head[:1] in (b"{", b"["):
        return "json"
    feed = _FEED_ROOT.search(head)
    html = _HTML_ROOT.search(head)
    if feed and (not html or feed.start() < html.start()):
        return "feed"
    if html:
        return "html"
    ctype = (content_type or "").lower()
    if "json" in ctype:
        return "json"
    if "rss" in ctype or "atom" in ctype or ("xml" in ctype and "xhtml" not in ctype):
        return "feed"
    return "html"


def charset(content_type: str | None) -> str | None:
    """The charset a Content-Type header declares, if any."""
    match = _CHARSET.search(content_type or "")
    return match.group(1) if match else None


def extract_document(
    body: bytes,
    url: str,
    *,
    kind: Format = "auto",
    content_type: str | None = None,
    tz: str | None = None,
    selectors: HtmlSelectors | None = None,
    mapping: JsonMapping | None = None,
    now: datetime | None = None,
) -> Page:
    """The entries of one fetched document, whatever its format.

    CPU-bound: the poller calls it in a worker thread. Raises :class:`ExtractError` with a
    message for an editor when the document is not something telex can read.
    """
    if not body.strip():
        raise ExtractError("empty document")
    chosen = kind if kind != "auto" else sniff(body, content_type)
    # Each format's parser is imported when a document needs it (`telex extract` starts fast).
    if chosen in ("feed", "rss", "atom"):
        from telex.poller.feeds import extract_feed

        return extract_feed(body, url, tz=tz, now=now)
    if chosen in ("json", "jsonfeed"):
        from telex.poller.jsonapi import (
            JSON_FEED_MAPPING,
            extract_json,
            is_json_feed,
            load_json,
            recover_truncated_feed,
        )

        try:
            document = load_json(body)
            cut = None
        except ExtractError:
            # A JSON Feed cut off mid-item still has its complete items.
            recovered = recover_truncated_feed(body)
            if recovered is None:
                raise
            document, cut = recovered
        if chosen == "jsonfeed" or (mapping is None and is_json_feed(document)):
            if not is_json_feed(document) and chosen == "jsonfeed":
                raise ExtractError("not a JSON Feed: no jsonfeed.org version")
            page = extract_json(document, url, JSON_FEED_MAPPING, tz=tz, now=now, kind="jsonfeed")
            if cut:
                page.warnings.append(cut)
            return page
        if mapping is None:
            raise ExtractError(
                "a JSON document that is not a JSON Feed: the source needs a mapping "
                "(JMESPath expressions for items, id, time, title, body, url)"
            )
        return extract_json(document, url, mapping, tz=tz, now=now)
    return extract_html(body, url, now, page_tz=tz, selectors=selectors, content_type=content_type)
