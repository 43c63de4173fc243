"""Entries of RSS 0.9x/1.0/2.0 and Atom feeds, through feedparser.

feedparser gets the bytes the poller fetched itself (never a URL: the HTTP, its conditional
requests and its limits stay in telex's hands), wrapped in a stream so that it can never mistake
a body for a file name. Documents declaring XML entities are refused before parsing, through
defusedxml, so that an entity-expansion bomb is an error and not a memory spike.
"""

from __future__ import annotations

import io
import re
import xml.sax
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

import feedparser
import lxml.html
from defusedxml import DefusedXmlException
from defusedxml.sax import parseString as defused_parse

from telex.poller.extract import (
    ZONE_COUNTRY,
    ZONE_PAGE,
    ZONE_SOURCE,
    ZONE_STATED,
    ZONE_UTC,
    ExtractError,
    Page,
    PageEntry,
    derived_id,
)
from telex.poller.pagezone import country_zone, publisher_country
from telex.timeparse import iso_utc, resolve_time

_ENTITY_DECL = re.compile(rb"<!ENTITY", re.IGNORECASE)


def _spelled(encoding: str) -> re.Pattern[bytes]:
    """``<!ENTITY`` (any case) as it reads in ``encoding``."""
    return re.compile(
        b"".join(
            b"(?:" + re.escape(c.upper().encode(encoding)) + b"|"
            + re.escape(c.lower().encode(encoding)) + b")"
            for c in "<!ENTITY"
        )
    )  # fmt: skip


# feedparser also reads UTF-16/32 (by byte order mark or by the NULs of "<?xml") and EBCDIC;
# in those a byte search for the ASCII spelling finds nothing, so it is searched as they spell it.
_WIDE_ENTITY_DECLS = tuple(
    _spelled(e) for e in ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be", "cp037", "cp500")
)
_XML_ENCODING = re.compile(
    rb"""^(?:\xef\xbb\xbf)?\s*<\?xml[^>]{0,200}?encoding\s*=\s*["']([\w.:-]{1,40})"""
)


def _declares_entities(body: bytes) -> bool | None:
    """Whether ``body`` may declare XML entities; ``None`` when its encoding cannot be read."""
    if _ENTITY_DECL.search(body) or any(p.search(body) for p in _WIDE_ENTITY_DECLS):
        return True
    declared = _XML_ENCODING.match(body[:256])
    if declared is not None:
        # Another encoding that spells "<!ENTITY" its own way (UTF-7, for one).
        try:
            encoding = declared.group(1).decode()
            if "<!ENTITY".encode(encoding) != b"<!ENTITY":
                return "<!entity" in body.decode(encoding).lower()
        except (LookupError, UnicodeError, ValueError):
            return None
    return False


def refuse_entity_declarations(body: bytes) -> None:
    """Raise :class:`ExtractError` when ``body`` declares XML entities or external references."""
    declares = _declares_entities(body)
    if declares is False:
        return  # the cheap check: no declaration, nothing to expand.
    if declares is None:
        raise ExtractError("refused XML in an encoding telex cannot check for entity declarations")
    try:
        defused_parse(body, xml.sax.ContentHandler())
    except DefusedXmlException as exc:
        raise ExtractError(f"refused XML with entity declarations ({type(exc).__name__})") from None
    except (xml.sax.SAXException, ValueError):
        # Malformed after all (or in an encoding expat cannot read: ValueError for UTF-7): the
        # declaration may sit in a comment or CDATA. Refuse anyway, since feedparser's lenient
        # parser would read what expat could not.
        raise ExtractError("refused malformed XML with entity declarations") from None


def html_to_text(fragment: str) -> str:
    """Readable text of an HTML fragment: paragraphs separated by blank lines."""
    if not fragment.strip():
        return ""
    if "<" not in fragment:
        return " ".join(fragment.split())
    try:
        root = lxml.html.fragment_fromstring(fragment, create_parent="div")
    except (ValueError, lxml.etree.ParserError):
        return " ".join(fragment.split())
    blocks = root.xpath(".//p | .//li | .//blockquote | .//h2 | .//h3 | .//h4 | .//pre")
    if blocks:
        texts = [" ".join(b.text_content().split()) for b in blocks]
        return "\n\n".join(t for t in texts if t)
    return " ".join(root.text_content().split())


def _first(entry: Any, *keys: str) -> str | None:
    for key in keys:
        value = entry.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _time(
    entry: Any, zone: str, zone_from: str, now: datetime, lang: str | None, warnings: list[str]
) -> tuple[str | None, str | None, str | None, str | None]:
    """(time as written, UTC ISO, how its zone was decided, the zone when not stated)."""
    raw = _first(entry, "published", "updated", "created")
    if raw is None:
        return None, None, None, None
    found = resolve_time(raw, page_tz=zone, now=now, lang=lang)
    if found is None:
        # feedparser reads a few more forms; it reads a date without a zone as UTC, so its
        # value is taken only for strings that carry one.
        parsed = entry.get("published_parsed") or entry.get("updated_parsed")
        if parsed is not None and _HAS_ZONE.search(raw):
            y, mo, d, h, mi, sec = parsed[:6]
            return raw, iso_utc(datetime(y, mo, d, h, mi, sec, tzinfo=UTC)), ZONE_STATED, None
        warnings.append(f"cannot read the date {raw!r}: published left empty")
        return raw, None, None, None
    if found.stated_zone:
        return raw, iso_utc(found.moment), ZONE_STATED, None
    return raw, iso_utc(found.moment), zone_from, zone


_HAS_ZONE = re.compile(r"(?:[+-]\d\d:?\d\d|Z|\b[A-Z]{2,5})\s*$")
_CHANNEL_OFFSET = re.compile(r"([+-]\d\d):?(\d\d)\s*$")


def _feed_zone(parsed: Any, tz: str | None, base_url: str) -> tuple[str, str]:
    """The zone of item dates written without one: the source's, else the offset the
    channel's own dates carry, else the publisher's country, else UTC (said so)."""
    if tz:
        return tz, ZONE_SOURCE
    for key in ("published", "updated"):
        value = parsed.feed.get(key)
        match = _CHANNEL_OFFSET.search(value) if isinstance(value, str) else None
        if match:
            return f"{match.group(1)}:{match.group(2)}", ZONE_PAGE
    for item in parsed.entries:
        value = _first(item, "published", "updated")
        match = _CHANNEL_OFFSET.search(value) if value else None
        if match:
            return f"{match.group(1)}:{match.group(2)}", ZONE_PAGE
    lang = parsed.feed.get("language")
    link = parsed.feed.get("link")
    zone = country_zone(publisher_country(lang if isinstance(lang, str) else None, [
        link if isinstance(link, str) else None, base_url]))  # fmt: skip
    if zone:
        return zone, ZONE_COUNTRY
    return "UTC", ZONE_UTC


_ROOT_END = re.compile(rb"</(?:rss|feed|rdf:RDF)\s*>\s*$", re.IGNORECASE)
_ITEM_END = re.compile(rb"</(?:item|entry)\s*>", re.IGNORECASE)
_ITEM_START = re.compile(rb"<(?:item|entry)[\s>]", re.IGNORECASE)


def cut_to_complete_items(body: bytes) -> tuple[bytes, str | None]:
    """A feed that ends before its root element closes (cut off in transit) reduced to its
    complete items, with a warning naming what was cut; a whole feed as it is."""
    if _ROOT_END.search(body[-512:]) or body[:4].startswith((b"\xff\xfe", b"\xfe\xff")):
        return body, None
    ends = list(_ITEM_END.finditer(body))
    starts = len(_ITEM_START.findall(body))
    if not starts:
        return body, None
    complete = len(ends)
    kept = body[: ends[-1].end()] if ends else body[: _ITEM_START.search(body).start()]  # type: ignore[union-attr]
    cut = starts - complete
    what = f"item {complete + 1} was cut" if cut else "it ends after its last item"
    return kept, f"truncated feed ({len(body)} bytes): kept its {complete} complete items, {what}"


def extract_feed(
    body: bytes, base_url: str, *, tz: str | None = None, now: datetime | None = None
) -> Page:
    """The entries of an RSS or Atom feed, in document order."""
    now = now or datetime.now(UTC)
    if not body.strip():
        raise ExtractError("empty document")
    refuse_entity_declarations(body)
    body, cut = cut_to_complete_items(body)
    parsed = feedparser.parse(
        io.BytesIO(body), response_headers={"content-location": base_url}, sanitize_html=True
    )
    if not parsed.get("version"):
        problem = parsed.get("bozo_exception")
        raise ExtractError(f"not an RSS or Atom feed{f': {problem}' if problem else ''}")
    warnings: list[str] = [cut] if cut else []
    zone, zone_from = _feed_zone(parsed, tz, base_url)
    lang = parsed.feed.get("language")
    lang = lang if isinstance(lang, str) else None
    entries: list[PageEntry] = []
    for item in parsed.entries:
        link = _first(item, "link")
        url = urljoin(base_url, link) if link else None
        content = item.get("content") or []
        html = content[0].get("value") if content and isinstance(content[0], dict) else None
        html = html or _first(item, "summary", "description")
        text = html_to_text(html or "")
        title = _first(item, "title")
        if title is not None and "<" in title:
            title = html_to_text(title)
        if not text and not title:
            continue
        time_raw, published, how, item_zone = _time(item, zone, zone_from, now, lang, warnings)
        # The publisher's id (guid / atom:id) first; many feeds have none, so the link, then
        # a derived one (feedparser's own identity is only entries[].id).
        entry_id = _first(item, "id", "guid") or url or ""
        entry = PageEntry(
            entry_id=entry_id,
            text=text or title or "",
            title=title,
            html=html,
            url=url,
            time_raw=time_raw,
            published=published,
            zone_from=how,
            zone=item_zone,
        )
        entries.append(derived_id(entry))
    if any(e.zone_from == ZONE_UTC for e in entries):
        warnings.append("item dates without a zone read as UTC: set the source's timezone")
    ttl = parsed.feed.get("ttl")
    ttl_s = float(ttl) * 60 if isinstance(ttl, str) and ttl.strip().isdigit() else None
    title = parsed.feed.get("title")
    return Page(
        entries,
        None,
        tz,
        title if isinstance(title, str) else None,
        ttl=ttl_s,
        kind="feed",
        warnings=warnings,
    )
