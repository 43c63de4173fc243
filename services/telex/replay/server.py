"""Serve the seed live blog as a live-blog page that grows over time.

The page looks like a publisher's: reverse-chronological entries with their times, the page
date, and a schema.org ``LiveBlogPosting`` JSON-LD block. One more entry is revealed every
``interval`` seconds, oldest first; conditional GETs get 304 while nothing changed.
"""

from __future__ import annotations

import hashlib
import html
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from telex.replay.seed import SeedBlog, SeedEntry, load_seed
from telex.timeparse import iso_utc, parse_date, resolve

PAGE_PATH = "/live/lavrov-press-conference-2024"


class ReplayClock:
    """How many entries are visible now: one at start, one more every ``interval`` seconds."""

    def __init__(
        self, total: int, interval: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.total = total
        self.interval = interval
        self._clock = clock
        self._started = clock()

    def visible(self) -> int:
        """Entries revealed so far."""
        if self.interval <= 0:
            return self.total
        elapsed = self._clock() - self._started
        return min(self.total, 1 + int(elapsed / self.interval))


def _anchor(index: int) -> str:
    return f"post-{index + 1}"


def _published(blog: SeedBlog, entry: SeedEntry) -> str:
    moment = resolve(entry.time, page_date=parse_date(blog.date_line))
    assert moment is not None, entry.time  # the seed is ours; its times parse.
    return iso_utc(moment)


def render_page(blog: SeedBlog, visible: int, base_url: str) -> str:
    """The HTML of the live page with the oldest ``visible`` entries, newest first."""
    shown = list(enumerate(blog.entries[:visible]))
    shown.reverse()
    page_url = base_url + PAGE_PATH
    ended = visible >= len(blog.entries)
    # The seed's entries have no headlines, like many live blogs; none is invented here.
    updates = [
        {
            "@type": "BlogPosting",
            "@id": f"{page_url}#{_anchor(i)}",
            "url": f"{page_url}#{_anchor(i)}",
            "datePublished": _published(blog, e),
            "articleBody": "\n\n".join(e.paragraphs),
        }
        for i, e in shown
    ]
    jsonld = {
        "@context": "https://schema.org",
        "@type": "LiveBlogPosting",
        "@id": page_url,
        "url": page_url,
        "headline": blog.title,
        "description": blog.intro[0] if blog.intro else "",
        "coverageStartTime": _published(blog, blog.entries[0]),
        "coverageEndTime": _published(blog, blog.entries[-1]) if ended else None,
        "liveBlogUpdate": updates,
    }
    # "</" inside a script block would end it early; JSON allows "<\/".
    ld = orjson.dumps(jsonld).decode().replace("</", "<\\/")
    esc = html.escape
    entries_html = "\n".join(
        f'    <article class="live-update" id="{_anchor(i)}">\n'
        f'      <div class="live-update__time"><a href="#{_anchor(i)}">{esc(e.time)}</a></div>\n'
        f'      <div class="live-update__body">\n'
        + "".join(f"        <p>{esc(p)}</p>\n" for p in e.paragraphs)
        + "      </div>\n    </article>"
        for i, e in shown
    )
    intro = "".join(f"    <p>{esc(p)}</p>\n" for p in blog.intro)
    status = (
        '<p class="live-status">This live stream has ended.</p>'
        if ended
        else '<p class="live-status live-status--on">LIVE</p>'
    )
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{esc(blog.title)}</title>
  <link rel="canonical" href="{esc(page_url)}">
  <script type="application/ld+json">{ld}</script>
</head>
<body>
  <header class="site-header"><a href="/">World News</a> <nav><a href="/">Home</a></nav></header>
  <main>
    <h1>{esc(blog.title)}</h1>
{intro}    {status}
    <div class="live-blog__date">{esc(blog.date_line)}</div>
    <section class="live-blog">
{entries_html}
    </section>
  </main>
  <aside class="related"><h2>Read more</h2><ul><li><a href="/other">Other news</a></li></ul></aside>
  <footer>&copy; World News</footer>
</body>
</html>
"""


def create_app(interval: float, blog: SeedBlog | None = None) -> Starlette:
    """The replay site: the live page at :data:`PAGE_PATH` and a small index at ``/``."""
    seed = blog or load_seed()
    reveal = ReplayClock(len(seed.entries), interval)
    rendered: dict[tuple[int, str], tuple[bytes, str, str]] = {}

    def page(visible: int, base_url: str) -> tuple[bytes, str, str]:
        key = (visible, base_url)
        if key not in rendered:
            body = render_page(seed, visible, base_url).encode()
            etag = '"' + hashlib.blake2b(body, digest_size=8).hexdigest() + '"'
            rendered[key] = (body, etag, format_datetime(datetime.now(UTC), usegmt=True))
        return rendered[key]

    async def live(request: Request) -> Response:
        base = str(request.base_url).rstrip("/")
        body, etag, modified = page(reveal.visible(), base)
        headers = {"ETag": etag, "Last-Modified": modified, "Cache-Control": "no-cache"}
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="text/html; charset=utf-8", headers=headers)

    async def index(request: Request) -> Response:
        link = html.escape(PAGE_PATH)
        return Response(
            f'<!doctype html><title>replay</title><a href="{link}">{html.escape(seed.title)}</a>',
            media_type="text/html; charset=utf-8",
        )

    return Starlette(routes=[Route(PAGE_PATH, live), Route("/", index)])
