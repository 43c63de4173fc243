"""Entries of JSON documents: JSON APIs through a JMESPath mapping, and JSON Feed 1.x.

A JSON Feed is a JSON document with a known shape, so it is read through the same mapping
code with a fixed mapping.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urljoin

import jmespath
import orjson
from jmespath.exceptions import JMESPathError

from telex.config import JsonMapping
from telex.poller.extract import Entry, ExtractError, Page, derived_id
from telex.poller.feeds import html_to_text
from telex.timeparse import iso_utc, resolve

JSON_FEED_MAPPING = JsonMapping(
    items="items",
    id="id",
    time="date_published || date_modified",
    title="title",
    body="content_text || summary",
    url="url || external_url",
    html="content_html",
)


@lru_cache(maxsize=1024)
def _compiled(expression: str) -> Any:
    return jmespath.compile(expression)


def _search(expression: str | None, value: Any) -> Any:
    if expression is None:
        return None
    try:
        return _compiled(expression).search(value)
    except JMESPathError as exc:
        raise ExtractError(f"mapping expression {expression!r} failed: {exc}") from None


def _scalar(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    text = str(value).strip()
    return text or None


def load_json(body: bytes) -> Any:
    """Parse a JSON document, or :class:`ExtractError` saying why it is not one."""
    if not body.strip():
        raise ExtractError("empty document")
    try:
        return orjson.loads(body.removeprefix(b"\xef\xbb\xbf"))
    except orjson.JSONDecodeError as exc:
        raise ExtractError(f"not valid JSON: {exc}") from None


def is_json_feed(document: Any) -> bool:
    """True for a JSON Feed (jsonfeed.org) document."""
    version = document.get("version") if isinstance(document, dict) else None
    return isinstance(version, str) and "jsonfeed.org" in version


def extract_json(
    document: Any,
    base_url: str,
    mapping: JsonMapping,
    *,
    tz: str | None = None,
    now: datetime | None = None,
    kind: str = "json",
) -> Page:
    """The entries ``mapping`` finds in a parsed JSON ``document``, in document order."""
    now = now or datetime.now(UTC)
    items = _search(mapping.items, document)
    if not isinstance(items, list):
        found = "nothing" if items is None else type(items).__name__
        raise ExtractError(f"mapping.items {mapping.items!r} selected {found}, not a list")
    entries: list[Entry] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        html = _scalar(_search(mapping.html, item))
        text = _scalar(_search(mapping.body, item)) or (html_to_text(html) if html else "")
        title = _scalar(_search(mapping.title, item))
        if not text and not title:
            continue
        raw_time = _search(mapping.time, item)
        moment = (
            resolve(raw_time, page_tz=tz, now=now)
            if isinstance(raw_time, str | int | float) and not isinstance(raw_time, bool)
            else None
        )
        link = _scalar(_search(mapping.url, item))
        url = urljoin(base_url, link) if link else None
        entry = Entry(
            entry_id=_scalar(_search(mapping.id, item)) or url or "",
            text=text or title or "",
            title=title,
            html=html,
            url=url,
            time_raw=_scalar(raw_time),
            published=iso_utc(moment) if moment else None,
        )
        entries.append(derived_id(entry))
    title = document.get("title") if isinstance(document, dict) else None
    return Page(entries, None, tz, title if isinstance(title, str) else None, kind=kind)
