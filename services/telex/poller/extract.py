"""Extract the entries of a live-blog page, generically.

Two signals, weighed together rather than trusted alone:

* schema.org ``LiveBlogPosting`` JSON-LD (``liveBlogUpdate``), which many publishers carry;
* the page structure: repeated blocks that each carry a time ("10:46 GMT", ``<time>``).

JSON-LD gives ids and machine-readable times; the page gives what readers actually see (the
time as written, the HTML). An entry found in both is merged by its anchor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urldefrag, urljoin

import lxml.html
import orjson
from lxml import etree

from telex.config import HtmlSelectors
from telex.poller.selectors import compile_selector
from telex.timeparse import is_relative, iso_utc, parse_date, resolve

# A node whose whole text is a time of day, optionally with a zone or am/pm; or a relative time.
_TIME_TEXT = re.compile(
    r"^\W{0,3}(?:(?:[01]?\d|2[0-3])[:.h][0-5]\d(?:\s*[ap]\.?m\.?)?"
    r"(?:\s*\b(?-i:[A-Z]{2,5})\b(?:\s?[+-]\d{1,2}(?::?\d\d)?)?)?"
    r"|\d+\s*(?:s|sec|min|mins|minutes?|h|hr|hrs|hours?)\s+ago|just now"
    r"|(?:il y a|vor|hace)\s+\d+\s*[^\W\d_]{1,9}\.?)\W{0,3}$",
    re.IGNORECASE,
)
_SKIP_ANCESTORS = frozenset({"header", "footer", "nav", "aside", "script", "style", "noscript"})
_PAGE_LEVEL = frozenset({"html", "body", "main"})
_BLOCK_TEXT = ("p", "li", "blockquote", "h2", "h3", "h4", "figcaption", "pre")


class ExtractError(ValueError):
    """The document is not a page telex can take entries from."""


@dataclass(frozen=True)
class Entry:
    """One update found on a page."""

    entry_id: str
    text: str
    title: str | None = None
    html: str | None = None
    url: str | None = None
    time_raw: str | None = None
    published: str | None = None


@dataclass(frozen=True)
class Page:
    """What a page says about itself, and its entries in page order."""

    entries: list[Entry] = field(default_factory=list)
    page_date: date | None = None
    page_tz: str | None = None
    title: str | None = None
    ttl: float | None = None  # seconds the document says it stays current (RSS <ttl>)
    kind: str = "html"


def _text(node: Any) -> str:
    return " ".join(node.text_content().split())


def _json_ld_objects(doc: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def walk(value: Any) -> None:
        if isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            out.append(value)
            if "@graph" in value:
                walk(value["@graph"])

    for script in doc.xpath('//script[@type="application/ld+json"]'):
        try:
            walk(orjson.loads((script.text or "").strip()))
        except orjson.JSONDecodeError:
            continue  # invalid JSON-LD is common; the page structure still speaks.
    return out


def _types(obj: dict[str, Any]) -> set[str]:
    value = obj.get("@type")
    return {value} if isinstance(value, str) else {v for v in value or [] if isinstance(v, str)}


def _str(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _from_json_ld(
    objects: list[dict[str, Any]], base_url: str, page_tz: str | None = None
) -> tuple[list[Entry], str | None]:
    entries: list[Entry] = []
    start: str | None = None
    for obj in objects:
        if "LiveBlogPosting" not in _types(obj):
            continue
        start = start or _str(obj.get("coverageStartTime")) or _str(obj.get("datePublished"))
        updates = obj.get("liveBlogUpdate") or []
        for update in updates if isinstance(updates, list) else [updates]:
            if not isinstance(update, dict):
                continue
            body = _str(update.get("articleBody")) or _str(update.get("text")) or ""
            title = _str(update.get("headline"))
            if not body and not title:
                continue
            url = _str(update.get("url")) or _str(update.get("@id"))
            published_raw = _str(update.get("datePublished"))
            moment = resolve(published_raw, page_tz=page_tz) if published_raw else None
            entries.append(
                Entry(
                    entry_id=urljoin(base_url, url) if url else "",
                    text=body,
                    title=title,
                    url=urljoin(base_url, url) if url else None,
                    time_raw=published_raw,
                    published=iso_utc(moment) if moment else None,
                )
            )
    return entries, start


def _skipped(node: Any) -> bool:
    return any(a.tag in _SKIP_ANCESTORS for a in node.iterancestors())


def _time_nodes(doc: Any) -> list[Any]:
    nodes: list[Any] = []
    for node in doc.iter():
        if not isinstance(node.tag, str) or _skipped(node):
            continue
        if node.tag == "time":
            nodes.append(node)
            continue
        text = _text(node)
        if len(text) <= 24 and _TIME_TEXT.match(text):
            # Keep the outermost element that is only a time (a <div> around an <a>).
            parent = node.getparent()
            if parent is not None and _text(parent) == text:
                continue
            nodes.append(node)
    # A <time> nested inside a chosen time node (or around one) is the same signal once.
    chosen = set(nodes)
    return [n for n in nodes if not any(a in chosen for a in n.iterancestors())]


def _block_of(node: Any, time_nodes: set[Any]) -> Any:
    """The entry block around a time node: climb while the parent holds no other time."""
    block = node
    while True:
        parent = block.getparent()
        if parent is None or parent.tag in _PAGE_LEVEL or parent.find(".//h1") is not None:
            return block
        if any(other is not node for other in parent.iter() if other in time_nodes):
            return block
        if block is not node and (block.tag in ("article", "li") or block.get("id")):
            return block
        block = parent


def _block_content(block: Any, time_node: Any) -> tuple[str | None, str, str]:
    title: str | None = None
    paragraphs: list[str] = []
    fragments: list[str] = []
    for el in block.iter(*_BLOCK_TEXT):
        if el is time_node or time_node in el.iterancestors() or el in time_node.iterancestors():
            continue
        if any(a.tag in _BLOCK_TEXT for a in el.iterancestors() if a is not block):
            continue
        text = _text(el)
        if not text:
            continue
        if el.tag in ("h2", "h3", "h4") and title is None and not paragraphs:
            title = text
            continue
        paragraphs.append(text)
        fragments.append(etree.tostring(el, encoding="unicode", method="html", with_tail=False))
    if not paragraphs:
        # No block elements: the block's text without its time.
        own = _text(block).replace(_text(time_node), "", 1).strip()
        if own:
            paragraphs.append(own)
    return title, "\n\n".join(paragraphs), "".join(fragments)


def _anchor_of(block: Any, time_node: Any) -> str | None:
    if block.get("id"):
        return str(block.get("id"))
    for el in block.iter():
        if el.get("id"):
            return str(el.get("id"))
    for link in time_node.iter("a"):
        href = link.get("href") or ""
        if href.startswith("#") and len(href) > 1:
            return href[1:]
    return None


_DATA_IDS = ("data-id", "data-post-id", "data-entry-id", "data-update-id", "data-item-id")


def _data_id(block: Any) -> str | None:
    for name in _DATA_IDS:
        value = block.get(name)
        if value and value.strip():
            return str(value.strip())
    return None


def _points_elsewhere(block: Any, doc_ids: set[str]) -> bool:
    """A "key events" or pinned teaser: no id of its own, a link to an entry of this page."""
    if block.get("id"):
        return False
    own = {el.get("id") for el in block.iter() if isinstance(el.tag, str) and el.get("id")}
    for link in block.iter("a"):
        href = link.get("href") or ""
        if href.startswith("#") and href[1:] in doc_ids and href[1:] not in own:
            return True
    return False


def _from_structure(
    doc: Any, base_url: str, page_date: date | None, page_tz: str | None, now: datetime
) -> list[Entry]:
    nodes = _time_nodes(doc)
    chosen = set(nodes)
    page_url = urldefrag(base_url)[0]
    doc_ids = {str(el.get("id")) for el in doc.iter() if isinstance(el.tag, str) and el.get("id")}
    entries: list[Entry] = []
    seen_blocks: set[Any] = set()
    for node in nodes:
        block = _block_of(node, chosen)
        if block in seen_blocks:
            continue
        seen_blocks.add(block)
        if _points_elsewhere(block, doc_ids):
            continue
        title, text, fragment = _block_content(block, node)
        if not text and not title:
            continue
        time_raw = (
            node.get("datetime") if node.tag == "time" and node.get("datetime") else _text(node)
        )
        moment = resolve(time_raw, page_date=page_date, page_tz=page_tz, now=now)
        anchor = _anchor_of(block, node)
        url = f"{page_url}#{anchor}" if anchor else None
        data_id = None if anchor else _data_id(block)
        entries.append(
            Entry(
                entry_id=url or (f"{page_url}#{data_id}" if data_id else ""),
                text=text,
                title=title,
                html=fragment or None,
                url=url,
                time_raw=_text(node) or time_raw,
                published=iso_utc(moment) if moment else None,
            )
        )
    return entries


_OFFSET = re.compile(r"T\d\d:\d\d(?::\d\d(?:\.\d+)?)?([+-]\d\d:?\d\d|Z)$")


def _page_zone(doc: Any, ld_start: str | None) -> str | None:
    """The page's UTC offset, from a machine-readable time it carries (JSON-LD, Open Graph
    ``article:published_time``, a ``<time datetime>``): the zone of times it writes bare."""
    candidates = [ld_start or ""]
    candidates += doc.xpath('//meta[@property="article:published_time"]/@content')[:1]
    candidates += doc.xpath("//time/@datetime")[:1]
    for value in candidates:
        match = _OFFSET.search(str(value).strip())
        if match:
            offset = match.group(1)
            return "+00:00" if offset == "Z" else offset
    return None


def _page_date(doc: Any, ld_start: str | None) -> date | None:
    if ld_start:
        moment = resolve(ld_start)
        if moment is not None:
            return moment.date()
    for node in doc.iter():
        if not isinstance(node.tag, str) or node.tag in ("script", "style") or len(node):
            continue
        text = _text(node)
        if 6 <= len(text) <= 40:
            found = parse_date(text)
            if found is not None:
                return found
    return None


def derived_id(entry: Entry) -> Entry:
    """``entry`` with an id: its own, else one derived from its time and first words.

    The words are normalised (case, punctuation, spacing) so that re-polls, reordering and
    small edits further down the text keep the id.
    """
    if entry.entry_id:
        return entry
    # A relative time ("2h ago") resolves differently at every poll: not part of an id.
    stamp = "" if is_relative(entry.time_raw) else entry.published or entry.time_raw or ""
    words = " ".join(re.sub(r"[^\w\s]", " ", (entry.title or entry.text).casefold()).split()[:8])
    return replace(entry, entry_id=f"derived:{stamp}:{words}")


def _from_selectors(
    doc: Any,
    selectors: HtmlSelectors,
    base_url: str,
    page_date: date | None,
    page_tz: str | None,
    now: datetime,
) -> list[Entry]:
    """Entries picked by a source's own selectors instead of the generic search."""
    page_url = urldefrag(base_url)[0]
    entries: list[Entry] = []
    for block in compile_selector(selectors.entry)(doc):
        found = compile_selector(selectors.time)(block) if selectors.time else []
        if not found:
            found = [n for n in block.iter("time")] or [
                n for n in block.iter() if isinstance(n.tag, str) and _TIME_TEXT.match(_text(n))
            ]
        time_node = found[0] if found else None
        titles = compile_selector(selectors.title)(block) if selectors.title else []
        title = _text(titles[0]) if titles else None
        if selectors.body:
            bodies = compile_selector(selectors.body)(block)
            text = "\n\n".join(t for t in (_text(b) for b in bodies) if t)
            fragment = "".join(
                etree.tostring(b, encoding="unicode", method="html", with_tail=False)
                for b in bodies
            )
        else:
            own_title, text, fragment = _block_content(
                block, time_node if time_node is not None else block
            )
            title = title or own_title
        if not text and not title:
            continue
        time_raw: str | None = None
        moment = None
        if time_node is not None:
            written = _text(time_node)
            machine = time_node.get("datetime")
            time_raw = written or machine
            moment = resolve(machine or written, page_date=page_date, page_tz=page_tz, now=now)
        anchor = _anchor_of(block, time_node) if time_node is not None else block.get("id")
        url = f"{page_url}#{anchor}" if anchor else None
        entries.append(
            Entry(
                entry_id=url or "",
                text=text or title or "",
                title=title,
                html=fragment or None,
                url=url,
                time_raw=time_raw,
                published=iso_utc(moment) if moment else None,
            )
        )
    return entries


def _text_key(entry: Entry) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", entry.text.casefold()).split())[:80]


def _drop_repeats(entries: list[Entry]) -> list[Entry]:
    """Entries shown twice (a pinned copy at the top, a "key events" box) once, keeping the
    last copy: the one in the stream, which stays when the pin goes."""
    last: dict[tuple[str, str | None], int] = {}
    for i, entry in enumerate(entries):
        key = _text_key(entry)
        if key:
            last[(key, entry.published)] = i
    return [
        e
        for i, e in enumerate(entries)
        if not _text_key(e) or last[(_text_key(e), e.published)] == i
    ]


def _merge(ld_entries: list[Entry], html_entries: list[Entry]) -> list[Entry]:
    """Weigh the two signals: JSON-LD gives ids and machine times, the page what readers see.

    An entry found in both (same anchor, else same opening text) is the JSON-LD one with the
    page's written time and HTML. JSON-LD is often stale or partial: entries only the page
    shows are kept, in page order; entries only the JSON-LD has are kept after them.
    """
    by_anchor = {urldefrag(e.url)[1]: i for i, e in enumerate(ld_entries) if e.url}
    by_text = {_text_key(e): i for i, e in enumerate(ld_entries) if e.text}
    used: set[int] = set()
    merged: list[Entry] = []
    for seen in html_entries:
        # Matched on the anchor: the JSON-LD may use the canonical URL, not the fetched one.
        anchor = urldefrag(seen.url)[1] if seen.url else ""
        index = by_anchor.get(anchor) if anchor else None
        if index is None:
            index = by_text.get(_text_key(seen))
        if index is None or index in used:
            merged.append(seen)
            continue
        used.add(index)
        entry = ld_entries[index]
        # The page shows the time as people read it, and the HTML.
        merged.append(replace(entry, time_raw=seen.time_raw or entry.time_raw, html=seen.html))
    merged.extend(e for i, e in enumerate(ld_entries) if i not in used)
    return merged


def _parse(body: bytes | str, encoding: str | None) -> Any:
    if isinstance(body, bytes) and encoding:
        try:
            parser = lxml.html.HTMLParser(encoding=encoding)
        except LookupError:
            parser = None  # an unknown charset in the header: let lxml sniff the page.
        if parser is not None:
            return lxml.html.fromstring(body, parser=parser)
    return lxml.html.fromstring(body)


def extract_html(
    body: bytes | str,
    base_url: str,
    now: datetime | None = None,
    *,
    page_tz: str | None = None,
    selectors: HtmlSelectors | None = None,
    encoding: str | None = None,
) -> Page:
    """Extract the entries of a live-blog page, in page order.

    ``page_tz`` is the zone of times written without one; ``selectors`` replace the generic
    block search; ``encoding`` is the charset the HTTP response declared, if any.
    """
    now = now or datetime.now(UTC)
    if not body or not body.strip():
        raise ExtractError("empty document")
    try:
        doc = _parse(body, encoding)
    except (etree.ParserError, ValueError) as exc:
        raise ExtractError(f"not an HTML document: {exc}") from exc
    objects = _json_ld_objects(doc)
    ld_entries, ld_start = _from_json_ld(objects, base_url, page_tz)
    page_date = _page_date(doc, ld_start)
    page_tz = page_tz or _page_zone(doc, ld_start)
    if selectors is not None:
        html_entries = _from_selectors(doc, selectors, base_url, page_date, page_tz, now)
        if not html_entries:
            raise ExtractError(f"selector {selectors.entry!r} matched no entries")
        ld_entries = []  # the editor's selectors say what the page's entries are.
    else:
        html_entries = _from_structure(doc, base_url, page_date, page_tz, now)
    title_node = doc.find(".//h1")
    title = _text(title_node) if title_node is not None else None

    entries = _merge(ld_entries, html_entries) if ld_entries else html_entries
    entries = _drop_repeats(entries)
    return Page([derived_id(e) for e in entries], page_date, page_tz, title)
