"""Extract the entries of a live-blog page, generically: what a reader of the page sees.

The page decides which entries exist. A block is an entry because of what it is: one of a run
of sibling blocks that share a shape, each carrying one time and body text of its own. Key
events lists, related-article teasers, sidebars of headlines and video carousels are runs of
links or of times without text, and lose to the stream; a lone "Updated 21:22" stamp or a
byline is no run at all.

Times come from every place pages write them: ``<time datetime>``, ``data-*`` timestamps,
AMP ``amp-timeago``, microdata, hidden epoch values, text that is a time ("10:46 GMT",
"vor 5 Minuten", "95'"), and times that start a paragraph ("12.31 Uhr: ...").

schema.org ``LiveBlogPosting`` JSON-LD only enriches the entries the page shows (ids, precise
times, headlines), matched by text and time; it lists entries itself only for pages that show
none (rendered by script).
"""

from __future__ import annotations

import html as htmllib
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from itertools import pairwise
from typing import TYPE_CHECKING, Any
from urllib.parse import urldefrag, urljoin, urlsplit

import lxml.html
import orjson
from lxml import etree

from telex.poller.pagezone import MONTH_FIRST, country_zone, publisher_country
from telex.poller.selectors import compile_selector
from telex.timeparse import (
    DATE_WORDS,
    Resolved,
    is_relative,
    iso_utc,
    parse_date,
    resolve,
    resolve_time,
    zone_for,
)

if TYPE_CHECKING:
    from telex.config import HtmlSelectors

# A node whose whole text is a time of day, optionally with a zone or am/pm; or a relative time.
# (Per-source selectors use it; the generic search uses _time_only below.)
_TIME_TEXT = re.compile(
    r"^\W{0,3}(?:(?:[01]?\d|2[0-3])[:.h][0-5]\d(?:\s*[ap]\.?m\.?)?"
    r"(?:\s*\b(?-i:[A-Z]{2,5})\b(?:\s?[+-]\d{1,2}(?::?\d\d)?)?)?"
    r"|\d+\s*(?:s|sec|min|mins|minutes?|h|hr|hrs|hours?)\s+ago|just now"
    r"|(?:il y a|vor|hace)\s+\d+\s*[^\W\d_]{1,9}\.?)\W{0,3}$",
    re.IGNORECASE,
)
_BLOCK_TEXT = ("p", "li", "blockquote", "h2", "h3", "h4", "figcaption", "pre")

# Zone decisions, as the raw record's ``published_zone`` tells them.
ZONE_STATED = "stated"  # the time carries its own zone or offset (or is an epoch)
ZONE_SOURCE = "source"  # the source's configured timezone
ZONE_PAGE = "page"  # the page's own machine-readable offsets
ZONE_COUNTRY = "country"  # the publisher's country (domain, language) as a default
ZONE_UTC = "utc-assumed"  # nothing said where: UTC, and a warning


class ExtractError(ValueError):
    """The document is not a page telex can take entries from."""


@dataclass(frozen=True)
class PageEntry:
    """One update found on a page."""

    entry_id: str
    text: str
    title: str | None = None
    html: str | None = None
    url: str | None = None
    time_raw: str | None = None
    published: str | None = None
    # How the zone of ``published`` was decided (ZONE_*), and the zone itself.
    zone_from: str | None = None
    zone: str | None = None


@dataclass(frozen=True)
class Page:
    """What a page says about itself, and its entries in page order."""

    entries: list[PageEntry] = field(default_factory=list)
    page_date: date | None = None
    page_tz: str | None = None
    title: str | None = None
    ttl: float | None = None  # seconds the document says it stays current (RSS <ttl>)
    kind: str = "html"
    warnings: list[str] = field(default_factory=list)


def _text(node: Any) -> str:
    return " ".join("".join(node.itertext()).split())


# --------------------------------------------------------------------------- decoding


def _detect(body: bytes) -> str | None:
    try:
        body.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes  # only for pages that declare nothing

    best = from_bytes(body[:65536]).best()
    return best.encoding if best is not None else None


_XML_DECL = re.compile(r"<\?xml[^>]*\?>", re.IGNORECASE)


def decode_html(body: bytes | str, content_type: str | None = None) -> str:
    """The text of an HTML document, decoded the way browsers do (HTML5 encoding sniffing):
    byte order mark, then the HTTP charset, then ``<meta charset>`` in the first bytes, then
    detection. Through w3lib, the library Scrapy uses for it."""
    if isinstance(body, str):
        return body
    from w3lib.encoding import html_to_unicode

    header = content_type if content_type and "charset" in content_type.lower() else None
    _, text = html_to_unicode(header, body, auto_detect_fun=_detect)
    return text


def _parse(body: bytes | str, content_type: str | None) -> Any:
    text = decode_html(body, content_type).replace("\x00", "")
    # lxml refuses text that declares an encoding: the declaration has done its work.
    text = _XML_DECL.sub("", text[:2048]) + text[2048:]
    if not text.strip():
        raise ExtractError("empty document")
    # Plain lxml elements (not lxml.html's, whose per-element class lookup costs a third of
    # the extraction on a large page); comments and processing instructions dropped.
    root = etree.fromstring(text, _HTML_PARSER)
    if root is None:
        raise ExtractError("empty document")
    return root


_HTML_PARSER = etree.HTMLParser(remove_comments=True, remove_pis=True, no_network=True)


# --------------------------------------------------------------------------- JSON-LD


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


def _plain(value: Any) -> str | None:
    """A JSON-LD string as text: HTML entities unescaped, markup dropped."""
    text = _str(value)
    if text is None:
        return None
    text = htmllib.unescape(text)
    if "<" in text and ">" in text:
        try:
            root = lxml.html.fragment_fromstring(text, create_parent="div")
            parts = [" ".join(b.text_content().split()) for b in root.iter(*_BLOCK_TEXT)]
            text = "\n\n".join(p for p in parts if p) or _text(root)
        except (ValueError, etree.ParserError):
            text = re.sub(r"<[^>]+>", " ", text)
    return "\n\n".join(" ".join(p.split()) for p in text.split("\n\n") if p.strip()) or None


@dataclass
class _LdUpdate:
    url: str | None
    title: str | None
    text: str
    time_raw: str | None
    words: frozenset[str]


def _from_json_ld(
    objects: list[dict[str, Any]], base_url: str
) -> tuple[list[_LdUpdate], dict[str, str]]:
    """The liveBlogUpdate items, and the page's own dates (published, modified, start)."""
    updates: list[_LdUpdate] = []
    dates: dict[str, str] = {}
    for obj in objects:
        types = _types(obj)
        if types & {"LiveBlogPosting", "NewsArticle", "Article", "WebPage", "ReportageNewsArticle"}:
            for key in ("coverageStartTime", "datePublished", "dateModified"):
                value = _str(obj.get(key))
                if value and key not in dates:
                    dates[key] = value
        if "LiveBlogPosting" not in types:
            continue
        items = obj.get("liveBlogUpdate") or []
        for update in items if isinstance(items, list) else [items]:
            if not isinstance(update, dict):
                continue
            body = _plain(update.get("articleBody")) or _plain(update.get("text")) or ""
            title = _plain(update.get("headline"))
            if not body and not title:
                continue
            url = _str(update.get("url")) or _str(update.get("@id"))
            updates.append(
                _LdUpdate(
                    url=urljoin(base_url, url) if url else None,
                    title=title,
                    text=body,
                    time_raw=_str(update.get("datePublished")) or _str(update.get("dateCreated")),
                    words=_words(f"{title or ''} {body}"),
                )
            )
    return updates, dates


_WORD = re.compile(r"\w+")


def _words(text: str, limit: int = 60) -> frozenset[str]:
    return frozenset(_WORD.findall(text.casefold())[:limit])


def _norm(text: str) -> str:
    return " ".join(_WORD.findall(text.casefold()))


# --------------------------------------------------------------------------- time signals

_ALWAYS_CHROME = frozenset(
    {"nav", "aside", "script", "style", "noscript", "template", "select", "svg", "iframe"}
)
_ENTRY_TAGS = frozenset({"article", "section", "li"})
_PREFILTER = re.compile(
    r"\d[:.h]\d\d|\d\s*['’′]|\d\s*(?:s|m|h|d|min|mins|hrs?)\b|\bago\b|\bvor\b|il y a|hace|"
    r"\bfa\b|geleden|temu|sedan|siden|atrás|\bhá\b|назад|前|\bjust now\b",
    re.IGNORECASE,
)
_MINUTE = re.compile(r"^(?P<m>\d{1,3})(?:\s*\+\s*(?P<x>\d{1,2}))?\s*['’′]{1,2}$")
_UPDATED = re.compile(
    r"^\W*(?:last\s+)?(?:updated?|aktualisiert|aggiornat[oa]|mis à jour|modifié|actualizad[oa]"
    r"|atualizad[oa]|bijgewerkt|zaktualizowano|uppdaterad|opdateret|oppdatert|päivitetty"
    r"|zuletzt|edited)\b",
    re.IGNORECASE,
)
_DURATION = re.compile(r"\b(?:min|mins|minutes?|minuten|sek|sec|secs|seconds?|sekunden)\b\.?$")
_LEAD = re.compile(
    r"^\W{0,2}(?P<t>(?:[01]?\d|2[0-3])[:.h][0-5]\d(?:\s*[ap]\.?m\.?)?"
    r"(?:\s*(?-i:[A-Z]{2,4})\b|\s*\((?-i:[A-Z]{2,4})\))?(?:\s*(?:uhr|h|hrs|heures?|ore))?)"
    r"(?P<sep>\s*[:–—|-]\s+|\s*[:–—|]|\s+(?=\S))",
    re.IGNORECASE,
)
_ANY_DIGIT = re.compile(r"\d")
# Text of elements that show text (a script's JSON can be megabytes).
_TEXT_NODES = etree.XPath(
    ".//*[not(self::script or self::style or self::noscript or self::template)]/text()"
)
_DIGITS = re.compile(r"^\s*\d{1,2}\s*$")
_CLOCKISH = re.compile(r"(?:[01]?\d|2[0-3])[:.h][0-5]\d")
_TIME_ATTR = re.compile(r"time|date|timestamp|published|posted|created|epoch|^data-ts$", re.I)
_NOT_PUBLISHED_ATTR = re.compile(r"modif|updat|edit|expir|end|start-?date|now", re.I)
_ISOISH = re.compile(r"^\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d.*)?$")
_EPOCHISH = re.compile(r"^\d{10}(?:\d{3})?(?:\.\d+)?$")


@dataclass
class _Signal:
    node: Any  # the element that carries the time
    kind: str  # "time" (a <time>/machine value), "text", "lead", "minute", "ld"
    raw: str | None  # the time as written
    machine: str | None = None  # a machine-readable value (datetime, epoch)
    updated: bool = False  # an "Updated ..." stamp
    date_only: bool = False
    ld: _LdUpdate | None = None

    def key(self) -> str:
        if self.machine and not self.date_only:
            return self.machine[:16]
        clock = _CLOCKISH.search(self.raw or "")
        return clock.group(0).replace(".", ":").replace("h", ":") if clock else (self.raw or "")


def _chrome(node: Any) -> bool:
    """Page furniture: nav and aside anywhere; header and footer of the page (a header
    inside an entry belongs to the entry)."""
    tag = node.tag
    if tag in _ALWAYS_CHROME:
        return True
    if tag in ("header", "footer"):
        # The page's own: it holds the navigation, or it sits at the top of the page and
        # not inside an article.
        if node.find(".//nav") is not None:
            return True
        ancestors = [a.tag for a in node.iterancestors()]
        return len(ancestors) <= 3 and not any(a in _ENTRY_TAGS for a in ancestors)
    return node.get("hidden") is not None and tag != "input"


def _time_only(text: str) -> tuple[str, bool] | None:
    """``(kind, updated)`` when ``text`` is a time and nothing else, else None."""
    if not text or len(text) > 48:
        return None
    if _MINUTE.match(text):
        return "minute", False
    if len(text) <= 36 and is_relative(text):
        return "text", bool(_UPDATED.match(text))
    clock = _CLOCKISH.search(text)
    if clock is None:
        return None
    if _DURATION.search(text):
        return None  # "03:33 min": a video's length
    rest = text[: clock.start()] + " " + text[clock.end() :]
    words = [w for w in re.findall(r"[^\W\d_]+", rest) if len(w) > 1]
    unknown = [w for w in words if not w.isupper() and w.casefold() not in DATE_WORDS]
    if len(words) > 6 or len(unknown) > 1 or re.search(r"\w[.!?]\s*$|[.!?]\s+\w|%", rest):
        return None
    return "text", bool(_UPDATED.match(text))


def _machine_value(value: str | None, now: datetime) -> str | None:
    """``value`` when it is a plausible timestamp (ISO date-time, epoch s/ms)."""
    if not value:
        return None
    value = value.strip()
    if _ISOISH.match(value):
        return value
    if _EPOCHISH.match(value):
        seconds = float(value) / (1000 if len(value.split(".")[0]) == 13 else 1)
        if 788918400 <= seconds <= now.timestamp() + 86400:  # 1995 .. fetch time + a day
            return value
    return None


def _signals(doc: Any, now: datetime) -> list[_Signal]:
    """Every place the page writes a time, outside page chrome, in document order."""
    body = doc.find("body")
    if body is None:
        return []
    order = _content_nodes(body)
    found: list[_Signal] = []
    taken: set[Any] = set()
    for node in order:
        signal, is_time = _markup_signal(node, now)
        if signal is not None:
            found.append(signal)
            if is_time:
                taken.add(node)
    # Text: a prefilter on text nodes, then the outermost element that is only that time.
    strings: Any = _TEXT_NODES(body)
    for string in strings:
        signal = _string_signal(string, taken)
        if signal is not None:
            found.append(signal)
    return _outermost(found, order)


def _content_nodes(body: Any) -> list[Any]:
    """The elements of ``body`` outside page chrome, in document order."""
    stack: list[Any] = [body]
    order: list[Any] = []
    while stack:
        node = stack.pop()
        if not isinstance(node.tag, str) or _chrome(node):
            continue
        order.append(node)
        stack.extend(reversed(node))
    return order


_PUBLISHED_PROPS = frozenset({"datePublished", "dateCreated", "uploadDate"})


def _markup_signal(node: Any, now: datetime) -> tuple[_Signal | None, bool]:
    """The time an element's markup gives (a <time>, microdata, a hidden input, a data-
    attribute), and whether the element stands for that time alone."""
    tag = node.tag
    if tag in ("time", "amp-timeago"):
        signal = _time_element(node, now)
        return signal, signal is not None
    if node.get("itemprop") in _PUBLISHED_PROPS:
        machine = _machine_value(node.get("content") or node.get("datetime"), now)
        if machine:
            return _Signal(node, "time", _text(node) or machine, machine), True
    if tag == "input":
        if (node.get("type") or "").lower() == "hidden":
            value = _machine_value(node.get("value"), now)
            if value and _EPOCHISH.match(value):
                return _Signal(node, "time", None, value), False
        return None, False
    return _attribute_signal(node, now), False


def _time_element(node: Any, now: datetime) -> _Signal | None:
    """The signal of a <time> element: its text, its machine value, or both."""
    written = _text(node)
    machine = _machine_value(node.get("datetime"), now)
    if not machine and not written:
        return None
    kind_updated = _UPDATED.match(written) is not None
    date_only = machine is not None and "T" not in machine and ":" not in machine
    return _Signal(node, "time", written or machine, machine, kind_updated, date_only)


def _attribute_signal(node: Any, now: datetime) -> _Signal | None:
    """A time in a ``data-*`` attribute of an element that holds content."""
    for name, value in node.attrib.items():
        if (
            name.startswith("data-")
            and _TIME_ATTR.search(name)
            and not _NOT_PUBLISHED_ATTR.search(name)
        ):
            machine = _machine_value(value, now)
            if machine:
                # "attr": the time is an attribute of an element that holds content.
                return _Signal(node, "attr", None, machine)
    return None


def _string_signal(string: Any, taken: set[Any]) -> _Signal | None:
    """The time a text node writes, on the outermost element that is only that time."""
    if len(string) > 400 or (
        not _ANY_DIGIT.search(string) and "now" not in string and "ago" not in string
    ):
        return None
    split = _DIGITS.match(string) is not None and string.is_text
    if not split and not _PREFILTER.search(string):
        return None
    parent = string.getparent()
    if parent is None:
        return None
    if split:
        return _split_time(parent, taken)
    if string.is_tail:
        parent = parent.getparent()
        if parent is None:
            return None
    if parent in taken or any(a in taken for a in parent.iterancestors()):
        return None  # the text of a <time> already read
    return _text_signal(parent, str(string), string.is_text)


def _split_time(parent: Any, taken: set[Any]) -> _Signal | None:
    """A time split over elements (<b>10</b>:<b>46</b>): read where it is whole."""
    whole = parent.getparent()
    if whole is None or len(whole) > 4 or whole in taken:
        return None
    text = _text(whole)
    if len(text) <= 12 and _CLOCKISH.fullmatch(text.strip()):
        taken.add(whole)
        return _Signal(whole, "text", text)
    return None


def _outermost(found: list[_Signal], order: list[Any]) -> list[_Signal]:
    """Drop signals in chrome and signals inside other signals (the same time once); in
    document order."""
    allowed = set(order)
    found = [s for s in found if s.node in allowed]
    nodes = {s.node for s in found}
    out: list[_Signal] = []
    seen: set[Any] = set()
    for s in found:
        if s.node in seen:
            continue
        if any(a in nodes for a in s.node.iterancestors()):
            # A time inside a <time> or a time-only element already taken; a lead time on a
            # paragraph that holds a time element keeps the element.
            outer = next(a for a in s.node.iterancestors() if a in nodes)
            if not (outer in seen and _is_lead(outer, out)):
                continue
            out = [o for o in out if o.node is not outer]
        seen.add(s.node)
        out.append(s)
    index = {n: i for i, n in enumerate(order)}
    out.sort(key=lambda s: index.get(s.node, 0))
    return out


def _is_lead(node: Any, signals: list[_Signal]) -> bool:
    return any(s.node is node and s.kind == "lead" for s in signals)


_INLINE = frozenset({"strong", "b", "span", "em", "i", "a", "time", "abbr", "small", "mark"})
_LEAD_BLOCKS = frozenset({"p", "h2", "h3", "h4", "h5", "h6", "li", "div", "dd", "dt", "td"})


def _time_alone(node: Any, text: str, kind: str, updated: bool) -> _Signal:
    """A signal for a time standing alone, on the widest element that says nothing more."""
    # Climb while the parent says nothing more (a <div> around a <span>, or a time split
    # over several elements: <b>10</b>:<b>46</b>).
    while True:
        parent = node.getparent()
        if parent is None or parent.tag in ("body", "html") or len(parent) > 6:
            break
        parent_text = _text(parent)
        if len(parent_text) > 48:
            break
        if parent_text != text and _time_only(parent_text) is None:
            break
        node, text = parent, parent_text
    return _Signal(node, kind, text, None, updated)


def _text_signal(element: Any, string: str, is_text: bool) -> _Signal | None:
    node = element
    text = _text(node) if len(node) else " ".join(string.split())
    only = _time_only(text)
    if only is not None:
        return _time_alone(node, text, *only)
    # A time that starts a block: "12.31 Uhr: ...", "<strong>17.00</strong> ...".
    block = node
    if is_text and block.tag in _INLINE:
        parent = block.getparent()
        if parent is None or (parent.text and parent.text.strip()):
            return None
        if parent.index(block) != 0:
            return None
        block = parent
    elif not is_text:
        return None
    if block.tag not in _LEAD_BLOCKS:
        return None
    lead = _LEAD.match(" ".join(string.split()))
    if lead is None:
        return None
    full = _text(block)
    if not full.startswith(lead.group("t")[:2]) or len(full) < len(lead.group(0)) + 3:
        return None
    raw = lead.group("t").strip()
    return _Signal(block, "lead", raw, None, bool(_UPDATED.match(full)))


# --------------------------------------------------------------------------- streams


def _sig(node: Any) -> tuple[str, str]:
    classes = (node.get("class") or "").split()
    first = re.sub(r"\d+", "", classes[0]) if classes else ""
    return node.tag, first


@dataclass
class _Member:
    node: Any
    signals: list[_Signal]
    extent: list[Any]  # the member and, for a flat stream, the blocks that follow it
    text: str = ""
    title: str | None = None
    own: int = 0  # characters of text that are not links
    linked: int = 0
    lead: str | None = None

    @property
    def primary(self) -> _Signal | None:
        def rank(s: _Signal) -> int:
            if s.kind == "ld":
                return 4
            if s.date_only:
                return 5
            if s.updated:
                return 3
            return 0 if s.machine else 1

        return min(self.signals, key=rank) if self.signals else None

    @property
    def distinct(self) -> int:
        """How many different entries' times the member holds (one for an entry)."""
        shown = {s.key() for s in self.signals if s.kind != "ld" and not s.updated}
        listed = {id(s.ld) for s in self.signals if s.ld is not None}
        return max(len(shown), len(listed))


_SKIP_TEXT = frozenset(
    {"script", "style", "noscript", "template", "button", "svg", "select", "form", "iframe"}
)
_BLOCKS = frozenset(
    {"p", "div", "li", "ul", "ol", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6",
     "figcaption", "pre", "table", "tr", "section", "article", "header", "footer", "dd", "dt",
     "figure", "br"}
)  # fmt: skip
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_TITLE_CLASS = re.compile(r"head|title|titel|titre|titolo", re.IGNORECASE)


def _content(member: _Member, ids_elsewhere: set[str]) -> None:
    """Title, text and link share of a member, without its time."""
    skip = {s.node for s in member.signals if s.kind not in ("lead", "ld", "attr")}
    title, title_node = _title(member.extent, skip)
    walk = _TextWalk(skip, title_node, ids_elsewhere)
    for node in member.extent:
        walk.element(node, False)
    raw = "".join(walk.parts)
    paragraphs = [" ".join(p.split()) for p in raw.split("\n\n")]
    text = "\n\n".join(p for p in paragraphs if p)
    own = walk.own
    lead = member.lead
    if lead and text.startswith(lead):
        text = re.sub(r"^[\s:–—|-]+", "", text[len(lead) :])
        own = max(0, own - len(lead))
    if not text and not title:
        text = _embed_text(member.extent)
    member.title, member.text, member.own, member.linked = title, text, own, walk.linked


def _title(extent: list[Any], skip: set[Any]) -> tuple[str | None, Any]:
    """The title: the first heading, or a short element named like one, before any text."""
    if not extent:
        return None, None
    for el in extent[0].iter():
        if not isinstance(el.tag, str) or el in skip:
            continue
        if el.tag in _HEADINGS or (
            _TITLE_CLASS.search(el.get("class") or "") and el.tag not in ("a", "img")
        ):
            candidate = _text_without(el, skip)
            if candidate and len(candidate) <= 300:
                return candidate, el
            return None, None
        if el.tag in ("p", "blockquote", "li") and _text(el):
            break
    return None, None


def _is_link(el: Any, ids_elsewhere: set[str]) -> bool:
    """Whether an <a> links away: to another entry of this page or another page (the
    entry's own anchor is not a link)."""
    href = el.get("href") or ""
    fragment = urlsplit(href).fragment if "#" in href else ""
    return bool(href) and (not href.startswith("#") or fragment in ids_elsewhere)


class _TextWalk:
    """The text of a member's elements, paragraphs apart, counting linked characters."""

    def __init__(self, skip: set[Any], title_node: Any, ids_elsewhere: set[str]) -> None:
        self.skip = skip
        self.title_node = title_node
        self.ids_elsewhere = ids_elsewhere
        self.parts: list[str] = []
        self.own = 0  # characters of text that are not links
        self.linked = 0

    def element(self, el: Any, in_link: bool) -> None:
        """Add ``el``'s text, its children's and its tail's."""
        if el in self.skip or el.tag in _SKIP_TEXT or el is self.title_node:
            if el.tail:
                self.add(el.tail, in_link)
            return
        block = el.tag in _BLOCKS
        if block:
            self.parts.append("\n\n")
        link = _is_link(el, self.ids_elsewhere) if el.tag == "a" else in_link
        if el.text:
            self.add(el.text, link)
        for child in el:
            if isinstance(child.tag, str):
                self.element(child, link)
            elif child.tail:
                self.add(child.tail, link)
        if block:
            self.parts.append("\n\n")
        if el.tail:
            self.add(el.tail, in_link)

    def add(self, text: str, in_link: bool) -> None:
        """Add a piece of text, counted as linked or own."""
        self.parts.append(text)
        size = len(text.strip())
        if in_link:
            self.linked += size
        else:
            self.own += size


def _embed_text(extent: list[Any]) -> str:
    """The words of an entry that is only an embed (a tweet in an iframe, a picture)."""
    for node in extent:
        for el in node.iter("iframe", "img", "video"):
            fallback = re.sub(r"<[^>]+>", " ", el.text or "") if el.tag == "iframe" else ""
            words = " ".join((fallback or el.get("title") or el.get("alt") or "").split())
            if words:
                return words
    return ""


def _text_without(el: Any, skip: set[Any]) -> str:
    if not any(n in skip for n in el.iter()):
        return _text(el)
    out: list[str] = []

    def walk(node: Any) -> None:
        if node in skip:
            return
        if node.text:
            out.append(node.text)
        for child in node:
            if isinstance(child.tag, str):
                walk(child)
            if child.tail:
                out.append(child.tail)

    walk(el)
    return " ".join("".join(out).split())


_ALNUM = re.compile(r"\w{2}")
_LIVE_CLASS = re.compile(r"live|update|ticker|timeline|stream|feed|post|entry|event", re.I)


_Grouped = dict[tuple[int, tuple[str, str]], dict[Any, list[_Signal]]]


def _by_container(signals: list[_Signal]) -> tuple[_Grouped, dict[int, Any]]:
    """Each signal under every ancestor (up to 14 levels), keyed by that ancestor and the
    shape of the child it sits in; and the ancestors by id."""
    by_key: _Grouped = {}
    parents: dict[int, Any] = {}
    for s in signals:
        node = s.node
        for _ in range(14):
            parent = node.getparent()
            if parent is None or parent.tag == "html":
                break
            key = (id(parent), _sig(node))
            parents[id(parent)] = parent
            by_key.setdefault(key, {}).setdefault(node, []).append(s)
            if parent.tag == "body":
                break
            node = parent
    return by_key, parents


def _streams(signals: list[_Signal], live_page: bool) -> list[_Member]:
    """The members of the page's stream of entries, in document order."""
    if not signals:
        return []
    by_key, parents = _by_container(signals)
    root = signals[0].node.getroottree().getroot()
    page_ids = {str(v) for v in root.xpath("//@id | //a/@name")}
    candidates: list[tuple[float, tuple[int, tuple[str, str]], list[_Member]]] = []
    for key, found in by_key.items():
        if not any(not s.updated for ss in found.values() for s in ss):
            continue
        members = _members(parents[key[0]], key[1], found)
        if not members:
            continue
        candidates.append((_score(members, live_page, page_ids), key, members))
    candidates.sort(key=lambda c: -c[0])
    if not candidates or candidates[0][0] <= 0:
        return []
    _, best_key, best = candidates[0]
    # The same shape under a sibling container (entries split by day, a first entry set
    # apart) belongs to the stream too.
    parent = parents[best_key[0]]
    grand = parent.getparent()
    chosen = list(best)
    for _, key, members in candidates[1:]:
        other = parents[key[0]]
        if key[1] != best_key[1] or grand is None or other.getparent() is not grand:
            continue
        if other is parent or _sig(other)[0] != _sig(parent)[0]:
            continue
        if not members[0].text and not members[0].title:
            _score(members, live_page, page_ids)
        chosen.extend(m for m in members if _qualifies(m))
    order = {id(m.node): m for m in chosen}
    doc_order = {n: i for i, n in enumerate(parent.getroottree().getroot().iter())}
    return sorted(order.values(), key=lambda m: doc_order.get(m.node, 0))


def _members(parent: Any, sig: tuple[str, str], found: dict[Any, list[_Signal]]) -> list[_Member]:
    siblings = [c for c in parent if isinstance(c.tag, str) and _sig(c) == sig]
    with_time = [c for c in siblings if c in found]
    if not with_time:
        return []
    # A flat stream: paragraphs of which some start with a time; an entry runs from one
    # timed paragraph to the next.
    leading = all(
        any(s.kind == "lead" or _starts_with(c, s.node) for s in found[c]) for c in with_time
    )
    flat = leading and sig[0] in _FLAT_BLOCKS and len(with_time) < len(siblings)
    members: list[_Member] = []
    if flat:
        children = [c for c in parent if isinstance(c.tag, str)]
        current: _Member | None = None
        for child in children:
            if child in found:
                current = _Member(child, found[child], [child])
                members.append(current)
            elif current is not None:
                current.extent.append(child)
    else:
        members = [_Member(c, found[c], [c]) for c in with_time]
    for m in members:
        lead = m.primary
        if lead is not None and lead.kind == "lead":
            m.lead = lead.raw
    return members


_FLAT_BLOCKS = frozenset({"p", "div", "h2", "h3", "h4", "h5", "h6", "blockquote", "dd", "dt"})


def _starts_with(block: Any, node: Any) -> bool:
    """Is ``node`` the first thing with text in ``block``?"""
    if node is block:
        return True
    if (block.text or "").strip():
        return False
    for el in block.iter():
        if el is block:
            continue
        if el is node:
            return True
        if isinstance(el.tag, str) and (el.text or "").strip():
            return False
        if (el.tail or "").strip():
            return False
    return False


def _qualifies(m: _Member) -> bool:
    """An entry: one time, and text of its own that is more than links."""
    return m.distinct <= 1 and m.own >= 3 and m.linked <= m.own + 1 and bool(_ALNUM.search(m.text))


def _score(members: list[_Member], live_page: bool, page_ids: set[str]) -> float:
    if sum(1 for m in members if m.distinct > 1) * 2 > len(members):
        return 0.0  # most members hold several times: a container of entries, not an entry
    ids = _ids_elsewhere(members, page_ids)
    for m in members:
        _content(m, ids)
    good = [m for m in members if _qualifies(m)]
    if not good:
        return 0.0
    if len(good) == 1 and len(members) == 1:
        m = good[0]
        # One entry alone: only where the page or the block says it is a live update.
        label = f"{m.node.get('class') or ''} {m.node.get('id') or ''}"
        own_id = m.node.tag in _ENTRY_TAGS and m.node.get("id")
        if not (live_page or own_id or _LIVE_CLASS.search(label)):
            return 0.0
        if m.node.find(".//h1") is not None:
            return 0.0
    elif len(good) < 2:
        return 0.0
    share = len(good) / len(members)
    return sum(min(m.own, 600) for m in good) * share


def _ids_elsewhere(members: list[_Member], page_ids: set[str]) -> set[str]:
    """Ids and names on the page outside the members: a link to one is a link, not text."""
    own = {str(v) for m in members for n in m.extent for v in n.xpath(".//@id | .//a/@name")}
    return page_ids - own


# --------------------------------------------------------------------------- page facts


def _meta(doc: Any, *names: str) -> str | None:
    for name in names:
        for attr in ("property", "name", "itemprop"):
            found = doc.xpath(f'//meta[@{attr}="{name}"]/@content')
            if found and str(found[0]).strip():
                return str(found[0]).strip()
    return None


_OFFSET = re.compile(r"T\d\d:\d\d(?::\d\d(?:\.\d+)?)?\s*([+-]\d\d:?\d\d|Z)$")


def _offset_of(value: str | None) -> str | None:
    match = _OFFSET.search((value or "").strip())
    if not match:
        return None
    offset = match.group(1)
    if offset == "Z":
        return "+00:00"
    return offset if ":" in offset else f"{offset[:3]}:{offset[3:]}"


@dataclass
class _Facts:
    lang: str | None
    country: str | None
    published: str | None
    modified: str | None
    offsets: list[str]
    urls: list[str | None]


def _facts(doc: Any, ld_dates: dict[str, str], base_url: str) -> _Facts:
    html_el = doc.getroottree().getroot()
    lang = (
        html_el.get("lang")
        or html_el.get("{http://www.w3.org/XML/1998/namespace}lang")
        or _meta(doc, "og:locale", "language", "content-language")
    )
    canonical = doc.xpath('//link[@rel="canonical"]/@href')
    urls: list[str | None] = [
        str(canonical[0]) if canonical else None,
        _meta(doc, "og:url"),
        base_url,
    ]
    published = (
        ld_dates.get("datePublished")
        or ld_dates.get("coverageStartTime")
        or _meta(doc, "article:published_time", "datePublished", "date", "DC.date.issued",
                 "publish-date", "pubdate", "sailthru.date", "parsely-pub-date")
    )  # fmt: skip
    modified = ld_dates.get("dateModified") or _meta(
        doc, "article:modified_time", "og:updated_time", "dateModified", "last-modified",
        "DC.date.modified",
    )  # fmt: skip
    values = [
        ld_dates.get("datePublished"),
        ld_dates.get("dateModified"),
        ld_dates.get("coverageStartTime"),
        _meta(doc, "article:published_time"),
        _meta(doc, "article:modified_time"),
        *[str(v) for v in doc.xpath("//time/@datetime")[:20]],
    ]
    offsets = [o for o in (_offset_of(v) for v in values) if o]
    return _Facts(lang, publisher_country(lang, urls), published, modified, offsets, urls)


def _visible_date(doc: Any, lang: str | None, day_first: bool) -> date | None:
    """A date the page writes near its top ("Friday 5 July 2024", "Jeudi 18 janvier 2024")."""
    body = doc.find("body")
    if body is None:
        return None
    for count, string in enumerate(body.xpath(".//text()[normalize-space()]")):
        if count > 400:
            break
        text = " ".join(str(string).split())
        if 6 <= len(text) <= 60 and re.search(r"\d", text):
            found = parse_date(text, lang=lang, day_first=day_first)
            if found is not None:
                return found
    return None


# --------------------------------------------------------------------------- resolution


@dataclass
class _Timed:
    raw: str | None
    machine: str | None
    resolved: Resolved | None = None
    zone_from: str | None = None
    zone: str | None = None


def _local_date(value: str | None, tz: tzinfo, now: datetime) -> date | None:
    if not value:
        return None
    found = resolve_time(value, page_tz=tz, now=now)
    if found is None:
        return None
    return found.moment.astimezone(tz).date()


def _roll_days(timed: list[_Timed], tz: tzinfo, anchor: date | None, ascending: bool) -> None:
    """Bare times of day on a page without a date per entry: the newest on the page's date,
    and a day earlier each time the clock goes the wrong way (past midnight)."""
    bare = [t for t in timed if t.resolved is not None and not t.resolved.own_date]
    if len(bare) < 2 or anchor is None:
        return
    walls = [t.resolved.moment.astimezone(tz) for t in bare if t.resolved is not None]
    day = anchor
    previous = None
    for t, wall in zip(bare, walls, strict=True):
        clock = (wall.hour, wall.minute, wall.second)
        if previous is not None:
            if not ascending and clock > previous:
                day -= timedelta(days=1)
            elif ascending and clock < previous:
                day += timedelta(days=1)
        previous = clock
        assert t.resolved is not None
        local = datetime(day.year, day.month, day.day, *clock, tzinfo=tz)
        t.resolved = replace(t.resolved, moment=local.astimezone(UTC))


def _direction(timed: list[_Timed], tz: tzinfo) -> bool | None:
    """True when the page runs oldest first, False newest first, None when it is neither."""
    walls = [
        t.resolved.moment.astimezone(tz).time()
        for t in timed
        if t.resolved is not None and not t.resolved.own_date
    ]
    pairs = list(pairwise(walls))
    if not pairs:
        return None
    up = sum(1 for a, b in pairs if b > a)
    down = sum(1 for a, b in pairs if b < a)
    if down >= 0.75 * len(pairs):
        return False
    if up >= 0.75 * len(pairs):
        return True
    return None


# --------------------------------------------------------------------------- extraction


def derived_id(entry: PageEntry) -> PageEntry:
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
) -> list[PageEntry]:
    """Entries picked by a source's own selectors instead of the generic search."""
    page_url = urldefrag(base_url)[0]
    entries: list[PageEntry] = []
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
            member = _Member(
                block, [_Signal(time_node, "time", None)] if time_node is not None else [], [block]
            )
            _content(member, set())
            text, fragment = member.text, _fragment([block], member)
            title = title or member.title
        if not text and not title:
            continue
        time_raw: str | None = None
        moment = None
        if time_node is not None:
            written = _text(time_node)
            machine = time_node.get("datetime")
            time_raw = written or machine
            moment = resolve(machine or written, page_date=page_date, page_tz=page_tz, now=now)
        anchor = _anchor_of(block)
        url = f"{page_url}#{anchor}" if anchor else None
        entries.append(
            PageEntry(
                entry_id=url or "",
                text=text or title or "",
                title=title,
                html=fragment or None,
                url=url,
                time_raw=time_raw,
                published=iso_utc(moment) if moment else None,
                zone_from=ZONE_SOURCE if moment and page_tz else None,
                zone=page_tz if moment else None,
            )
        )
    return entries


def _anchor_of(block: Any) -> str | None:
    if block.get("id"):
        return str(block.get("id"))
    for el in block.iter():
        if isinstance(el.tag, str) and (el.get("id") or (el.tag == "a" and el.get("name"))):
            return str(el.get("id") or el.get("name"))
    return None


_DATA_IDS = ("data-id", "data-post-id", "data-entry-id", "data-update-id", "data-item-id")


def _data_id(block: Any) -> str | None:
    for name in _DATA_IDS:
        value = block.get(name)
        if value and value.strip():
            return str(value.strip())
    return None


def _fragment(extent: list[Any], member: _Member) -> str:
    skip = {s.node for s in member.signals if s.kind not in ("lead", "ld", "attr")}
    out: list[str] = []
    for node in extent:
        for el in node.iter(*_BLOCK_TEXT):
            if el in skip or any(a.tag in _BLOCK_TEXT for a in el.iterancestors() if a is not node):
                continue
            if any(a in skip for a in el.iterancestors()) or not _text(el):
                continue
            out.append(etree.tostring(el, encoding="unicode", method="html", with_tail=False))
    return "".join(out)


def _text_key(entry: PageEntry) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", entry.text.casefold()).split())[:80]


def _drop_repeats(entries: list[PageEntry]) -> list[PageEntry]:
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


def _ld_seeds(doc: Any, updates: list[_LdUpdate]) -> list[_Signal]:
    """Elements of the page that show a JSON-LD update's headline: where the page shows an
    entry whose time only the JSON-LD gives."""
    wanted: dict[str, _LdUpdate] = {}
    for u in updates:
        if u.title:
            wanted.setdefault(_norm(u.title), u)
    if not wanted:
        return []
    seeds: list[_Signal] = []
    for el in doc.iter("h1", "h2", "h3", "h4", "h5", "h6", "strong", "span", "a", "div"):
        if el.tag not in _HEADINGS and not _TITLE_CLASS.search(el.get("class") or ""):
            continue  # headlines are headings, or named like them
        if len(el) > 8:
            continue
        text = _text(el)
        if not text or len(text) > 300:
            continue
        update = wanted.get(_norm(text))
        if update is not None and not any(a.tag in _ALWAYS_CHROME for a in el.iterancestors()):
            seeds.append(_Signal(el, "ld", None, update.time_raw, ld=update))
    # The outermost element that shows the headline.
    nodes = {s.node for s in seeds}
    return [s for s in seeds if not any(a in nodes for a in s.node.iterancestors())]


def _match_ld(members: list[_Member], updates: list[_LdUpdate]) -> dict[int, _LdUpdate]:
    """Which JSON-LD update each member is: by anchor, headline or text, one to one."""
    out: dict[int, _LdUpdate] = {}
    used: set[int] = set()
    by_anchor = {urldefrag(u.url)[1]: i for i, u in enumerate(updates) if u.url and "#" in u.url}
    scored: list[tuple[float, int, int]] = []
    for mi, m in enumerate(members):
        seed = next((s.ld for s in m.signals if s.ld is not None), None)
        if seed is not None:
            scored.append((3.0, mi, updates.index(seed)))
        anchor = _anchor_of(m.node)
        if anchor and anchor in by_anchor:
            scored.append((2.0, mi, by_anchor[anchor]))
        words = _words(f"{m.title or ''} {m.text}")
        if not words:
            continue
        for ui, u in enumerate(updates):
            if not u.words:
                continue
            jaccard = len(words & u.words) / len(words | u.words)
            if jaccard >= 0.5:
                scored.append((jaccard, mi, ui))
    for _, mi, ui in sorted(scored, key=lambda x: -x[0]):
        if mi in out or ui in used:
            continue
        out[mi] = updates[ui]
        used.add(ui)
    return out


def extract_html(
    body: bytes | str,
    base_url: str,
    now: datetime | None = None,
    *,
    page_tz: str | None = None,
    selectors: HtmlSelectors | None = None,
    encoding: str | None = None,
    content_type: str | None = None,
) -> Page:
    """Extract the entries of a live-blog page, in page order.

    ``page_tz`` is the source's zone for times written without one; ``selectors`` replace
    the generic block search; ``content_type`` (or ``encoding``) is what the HTTP response
    declared. ``now`` is when the page was fetched: relative times count back from it.
    """
    now = now or datetime.now(UTC)
    if not body or not body.strip():
        raise ExtractError("empty document")
    if content_type is None and encoding:
        content_type = f"text/html; charset={encoding}"
    try:
        doc = _parse(body, content_type)
    except (etree.ParserError, ValueError) as exc:
        if isinstance(exc, ExtractError):
            raise
        raise ExtractError(f"not an HTML document: {exc}") from exc
    warnings: list[str] = []
    objects = _json_ld_objects(doc)
    updates, ld_dates = _from_json_ld(objects, base_url)
    facts = _facts(doc, ld_dates, base_url)
    day_first = facts.country not in MONTH_FIRST

    zone_name, zone_from = _bare_zone(page_tz, facts)
    tz = zone_for(zone_name) or UTC

    start_date = _local_date(facts.published, tz, now)
    end_date = _local_date(facts.modified, tz, now)
    page_date = start_date or end_date or _visible_date(doc, facts.lang, day_first)

    if selectors is not None:
        html_entries = _from_selectors(doc, selectors, base_url, page_date, page_tz, now)
        if not html_entries:
            raise ExtractError(f"selector {selectors.entry!r} matched no entries")
        title_node = doc.find(".//h1")
        return Page(
            [derived_id(e) for e in html_entries],
            page_date,
            page_tz,
            _text(title_node) if title_node is not None else None,
        )

    signals = _signals(doc, now)
    signals += _ld_seeds(doc, updates)
    live_page = bool(updates) or any("LiveBlogPosting" in _types(o) for o in objects)
    members = _streams(signals, live_page)
    members = [m for m in members if m.text or m.title]

    entries: list[PageEntry]
    if members:
        entries = _entries(
            members, updates, base_url, tz, zone_name, zone_from, page_date, start_date,
            end_date, now, facts, day_first, warnings,
        )  # fmt: skip
    else:
        # Nothing on the page but the JSON-LD (a page its script renders): the JSON-LD is
        # what the reader will see.
        entries = [_ld_entry(u, tz, zone_name, zone_from, now) for u in updates]
    entries = _drop_repeats(entries)
    entries = _not_in_future(entries, now, warnings)
    if any(e.zone_from == ZONE_UTC for e in entries):
        warnings.append(
            "times without a zone read as UTC: the page names none, nor its country; "
            "set the source's timezone"
        )
    title_node = doc.find(".//h1")
    title = _text(title_node) if title_node is not None else None
    return Page(
        [derived_id(e) for e in entries],
        page_date,
        page_tz or (zone_name if zone_from != ZONE_UTC else None),
        title,
        warnings=warnings,
    )


def _bare_zone(page_tz: str | None, facts: _Facts) -> tuple[str, str]:
    """The zone of times the page writes bare, and how it was decided."""
    non_utc = [o for o in facts.offsets if o not in ("+00:00", "-00:00")]
    if page_tz:
        return page_tz, ZONE_SOURCE
    if non_utc:
        return Counter(non_utc).most_common(1)[0][0], ZONE_PAGE
    country = country_zone(facts.country)
    if country:
        return country, ZONE_COUNTRY
    if facts.offsets:
        return "+00:00", ZONE_PAGE
    return "UTC", ZONE_UTC


def _ld_entry(u: _LdUpdate, tz: tzinfo, zone_name: str, zone_from: str, now: datetime) -> PageEntry:
    """An entry from a JSON-LD update alone."""
    found = resolve_time(u.time_raw, page_tz=tz, now=now) if u.time_raw else None
    return PageEntry(
        entry_id=u.url or "",
        text=u.text or u.title or "",
        title=u.title,
        url=u.url,
        time_raw=u.time_raw,
        published=iso_utc(found.moment) if found else None,
        zone_from=(ZONE_STATED if found.stated_zone else zone_from) if found else None,
        zone=None if found is None or found.stated_zone else zone_name,
    )


def _not_in_future(entries: list[PageEntry], now: datetime, warnings: list[str]) -> list[PageEntry]:
    limit = now + timedelta(days=1)
    out: list[PageEntry] = []
    for e in entries:
        if e.published is not None:
            moment = datetime.fromisoformat(e.published.replace("Z", "+00:00"))
            if moment > limit:
                warnings.append(f"time {e.time_raw!r} resolves after the fetch time: dropped")
                e = replace(e, published=None, zone_from=None, zone=None)
        out.append(e)
    return out


def _member_time(
    m: _Member,
    tz: tzinfo,
    page_date: date | None,
    now: datetime,
    facts: _Facts,
    day_first: bool,
    warnings: list[str],
) -> _Timed:
    """The time a member's primary signal gives, read on its own date or the page's."""
    s = m.primary
    if s is None or s.kind in ("ld", "minute"):
        return _Timed(s.raw if s is not None and s.kind == "minute" else None, None)
    date_hint = next((x.machine for x in m.signals if x.date_only and x.machine), None)
    value = s.machine or s.raw
    on_date: date | None = _local_date(date_hint, tz, now) if date_hint else page_date
    found = resolve_time(
        value, page_date=on_date, page_tz=tz, now=now, lang=facts.lang, day_first=day_first
    )
    if found is None and s.machine and s.raw:
        found = resolve_time(
            s.raw, page_date=on_date, page_tz=tz, now=now, lang=facts.lang,
            day_first=day_first,
        )  # fmt: skip
    if found is None and value:
        warnings.append(f"cannot read the time {value!r}: published left empty")
    if date_hint and found is not None:
        found = replace(found, own_date=True)
    return _Timed(s.raw or s.machine, s.machine, found)


def _entries(
    members: list[_Member],
    updates: list[_LdUpdate],
    base_url: str,
    tz: tzinfo,
    zone_name: str | None,
    zone_from: str,
    page_date: date | None,
    start_date: date | None,
    end_date: date | None,
    now: datetime,
    facts: _Facts,
    day_first: bool,
    warnings: list[str],
) -> list[PageEntry]:
    page_url = urldefrag(base_url)[0]
    matched = _match_ld(members, updates) if updates else {}
    timed = [_member_time(m, tz, page_date, now, facts, day_first, warnings) for m in members]
    _zulu_is_local(timed, tz, facts, now, warnings)
    # Times of day without a date: the page's date for the newest, earlier days past midnight.
    ascending = _direction(timed, tz)
    if ascending is not None:
        day = (start_date or page_date) if ascending else (end_date or page_date)
        if ascending is False and end_date is None and start_date is not None:
            day = None  # only the start is known: counted back from the oldest instead
            bare = [t for t in timed if t.resolved is not None and not t.resolved.own_date]
            _roll_days(list(reversed(bare)), tz, start_date, True)
        _roll_days(timed, tz, day, ascending)

    entries: list[PageEntry] = []
    for i, (m, t) in enumerate(zip(members, timed, strict=True)):
        update = matched.get(i)
        published = t.resolved.moment if t.resolved else None
        how = None
        if t.resolved is not None:
            how = ZONE_STATED if t.resolved.stated_zone else zone_from
        if update is not None and update.time_raw:
            ld = resolve_time(update.time_raw, page_tz=tz, now=now)
            if ld is not None and (published is None or _agrees(published, ld.moment, t)):
                published = ld.moment
                how = ZONE_STATED if ld.stated_zone else zone_from
        anchor = _anchor_of(m.node)
        block_id = None if anchor else _data_id(m.node)
        url = f"{page_url}#{anchor}" if anchor else None
        entry_id = url or (f"{page_url}#{block_id}" if block_id else "")
        if update is not None and update.url:
            entry_id, url = update.url, update.url
        title = m.title or (update.title if update is not None else None)
        text = m.text or (update.text if update is not None else "")
        if title and text.startswith(title):
            text = text[len(title) :].lstrip() or text
        entries.append(
            PageEntry(
                entry_id=entry_id,
                text=text,
                title=title,
                html=_fragment(m.extent, m) or None,
                url=url,
                time_raw=t.raw or (update.time_raw if update is not None else None),
                published=iso_utc(published) if published else None,
                zone_from=how if published else None,
                zone=None if how in (None, ZONE_STATED) or not published else zone_name,
            )
        )
    return entries


def _zulu_is_local(
    timed: list[_Timed], tz: tzinfo, facts: _Facts, now: datetime, warnings: list[str]
) -> None:
    """Catch ``datetime`` values marked ``Z`` that are really the page's local time: they
    disagree with the page's own dates (which state their offset) by the page's offset, e.g.
    entries "published" an hour after the page was last modified."""
    marked = [
        t
        for t in timed
        if t.machine and t.resolved is not None and t.machine.strip().upper().endswith("Z")
    ]
    if not marked:
        return
    moments = [t.resolved.moment for t in marked if t.resolved is not None]
    shift = max(moments).astimezone(tz).utcoffset()
    if not shift:
        return
    slack = timedelta(minutes=10)
    if shift > timedelta(0):
        ref = _stated_instant(facts.modified, now)
        wrong = ref is not None and max(moments) > ref + slack >= max(moments) - shift
    else:
        ref = _stated_instant(facts.published, now)
        wrong = ref is not None and min(moments) < ref - slack <= min(moments) - shift
    if not wrong:
        return
    for t in marked:
        assert t.resolved is not None
        t.resolved = replace(t.resolved, moment=t.resolved.moment - shift, stated_zone=False)
    warnings.append(
        "times marked Z disagree with the page's own dates by its UTC offset: read as local"
    )


def _stated_instant(value: str | None, now: datetime) -> datetime | None:
    """A page date that states a non-zero offset, as an instant."""
    offset = _offset_of(value)
    if offset is None or offset in ("+00:00", "-00:00"):
        return None
    found = resolve_time(value, now=now)
    return found.moment if found is not None else None


def _agrees(shown: datetime, ld: datetime, timed: _Timed) -> bool:
    """May the JSON-LD time replace the one the page shows? When they are the same minute,
    or the same clock in another zone (the page's zone was a guess and the JSON-LD states
    its offset); not when they are different times."""
    diff = abs((shown - ld).total_seconds())
    if diff <= 90:
        return True
    if timed.resolved is not None and timed.resolved.stated_zone:
        return False
    quarter = diff % 900
    return diff <= 14 * 3600 and (quarter <= 90 or quarter >= 810)
