"""Sanitised HTML and the links of an update.

The raw HTML comes from pages telex does not control, and the wire's HTML ends up inside
dashboards: it is cleaned with ammonia (through ``nh3``), which keeps a safe list of tags and
attributes, drops scripts, styles and event handlers, and allows only http(s)/mailto URLs.
Links are taken from the ``href`` of anchors (made absolute against the entry's URL) and from
bare URLs in the text, http(s) only, each once, in order of appearance.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar
from urllib.parse import urljoin, urlsplit

import nh3
from lxml import html as lxml_html
from lxml.etree import ParserError

from telex.config import Config
from telex.processor.enrich import Document

ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "cite", "code", "dd", "del", "dl", "dt", "em",
    "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "li",
    "mark", "ol", "p", "pre", "q", "s", "small", "span", "strong", "sub", "sup", "table",
    "tbody", "td", "th", "thead", "time", "tr", "u", "ul",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "time": {"datetime"},
    "q": {"cite"},
    "blockquote": {"cite"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan"},
}
_BARE_URL = re.compile(r"https?://[^\s<>\"'“”\u2018\u2019)\]]+", re.IGNORECASE)
_TRAILING = ".,;:!?"


# Built once: nh3.clean() would convert these sets into the sanitiser's own on every call,
# which costs as much as the cleaning itself.
_CLEANER = nh3.Cleaner(
    tags=ALLOWED_TAGS,
    attributes=ALLOWED_ATTRIBUTES,
    url_schemes={"http", "https", "mailto"},
    link_rel="noopener noreferrer nofollow",
    strip_comments=True,
)


def sanitise(html: str) -> str:
    """``html`` reduced to safe markup."""
    return _CLEANER.clean(html)


def _http_url(candidate: str, base: str | None) -> str | None:
    url = urljoin(base, candidate.strip()) if base else candidate.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return parts._replace(fragment=parts.fragment).geturl()


def extract_links(html: str | None, text: str, base: str | None) -> list[str]:
    """The http(s) links of an update, absolute, each once, in order of appearance."""
    found: list[str] = []
    # Parsing costs more than sanitising: only when there is an anchor to read.
    if html and "<a" in html.lower():
        try:
            root = lxml_html.fragment_fromstring(html, create_parent="div")
        except (ParserError, ValueError):
            root = None
        if root is not None:
            for href in root.xpath("//a/@href"):
                url = _http_url(str(href), base)
                if url:
                    found.append(url)
    for match in _BARE_URL.finditer(text):
        url = _http_url(match.group(0).rstrip(_TRAILING), None)
        if url:
            found.append(url)
    return list(dict.fromkeys(found))


class HtmlEnricher:
    """Writes ``html`` (sanitised, or null) and ``links``."""

    name = "html"
    # On failure the HTML is dropped rather than passed on unsanitised.
    defaults: ClassVar[dict[str, Any]] = {"html": None, "links": []}

    @classmethod
    def from_config(cls, config: Config) -> HtmlEnricher:
        """The enricher (it has no settings)."""
        return cls()

    def enrich(self, doc: Document) -> None:
        """Sanitise ``doc.html`` and collect the links."""
        links = extract_links(doc.html, doc.text, doc.base_url)
        doc.fields["html"] = sanitise(doc.html) if doc.html else None
        doc.fields["links"] = links
