"""Entries of JSON documents: JSON APIs through a JMESPath mapping, and JSON Feed 1.x.

A JSON Feed is a JSON document with a known shape, so it is read through the same mapping
code with a fixed mapping.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urljoin

import jmespath
import orjson
from jmespath.exceptions import JMESPathError

from telex.config import JsonMapping
from telex.poller.extract import ExtractError, Page, PageEntry, derived_id
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


_ITEMS = re.compile(rb'"items"\s*:\s*\[')
_VERSION = re.compile(rb'"version"\s*:\s*"([^"]*jsonfeed\.org[^"]*)"')


def recover_truncated_feed(body: bytes) -> tuple[dict[str, Any], str] | None:
    """The complete items of a JSON Feed cut off in the middle (a dropped connection, a size
    limit), and a warning naming what was cut; None when ``body`` is not such a feed."""
    version = _VERSION.search(body[:4096])
    items_at = _ITEMS.search(body)
    if version is None or items_at is None:
        return None
    text = body[items_at.end() :].decode("utf-8", "replace")
    decoder = json.JSONDecoder()
    items: list[Any] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            break
        try:
            item, pos = decoder.raw_decode(text, pos)
        except ValueError:
            break
        items.append(item)
    document = {"version": version.group(1).decode("utf-8", "replace"), "items": items}
    warning = (
        f"truncated JSON Feed ({len(body)} bytes): kept its {len(items)} complete items, "
        f"item {len(items) + 1} was cut"
    )
    return document, warning


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
    entries: list[PageEntry] = []
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
        entry = PageEntry(
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
