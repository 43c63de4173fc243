"""A local website for poller tests: pages a test can change, served by a real HTTP server."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from telex.runtime import serve_http

# What a poller of this site needs: loopback allowed (the SSRF guard refuses it by default),
# and Kafka timeouts short enough for a test.
LOCAL_POLLER = {
    "TELEX_POLLER_ALLOW_NETWORKS": "127.0.0.0/8",
    "TELEX_KAFKA_SESSION_TIMEOUT_MS": "3000",
    "TELEX_KAFKA_REQUEST_TIMEOUT_MS": "5000",
}


@dataclass
class Page:
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    etag: bool = True


@dataclass
class Site:
    """Pages by path; every response has an ETag and honours If-None-Match."""

    pages: dict[str, Page] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    base: str = ""
    active: int = 0
    most_active: int = 0

    def set(self, path: str, body: str | bytes, content_type: str = "", **headers: str) -> None:
        data = body.encode() if isinstance(body, str) else body
        page = Page(data, headers=dict(headers))
        if content_type:
            page.content_type = content_type
        self.pages[path] = page

    def url(self, path: str) -> str:
        return self.base + path

    async def handle(self, request: Request) -> Response:
        path = request.url.path
        self.hits[path] = self.hits.get(path, 0) + 1
        if path == "/endless":
            return StreamingResponse(_endless(), media_type="text/html")
        if path.startswith("/hold"):
            self.active += 1
            self.most_active = max(self.most_active, self.active)
            await asyncio.sleep(0.1)
            self.active -= 1
            return Response("<p>held</p>", media_type="text/html")
        if path == "/slow":
            await asyncio.sleep(30)
        if path.startswith("/loop/"):
            n = int(path.rsplit("/", 1)[1])
            return Response(status_code=302, headers={"Location": f"/loop/{(n + 1) % 3}"})
        page = self.pages.get(path)
        if page is None:
            return Response("not found", status_code=404)
        etag = '"' + hashlib.sha1(page.body).hexdigest()[:16] + '"'
        headers = {"ETag": etag, **page.headers} if page.etag else dict(page.headers)
        if page.etag and page.status == 200 and request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(
            page.body, status_code=page.status, media_type=page.content_type, headers=headers
        )


async def _endless() -> AsyncIterator[bytes]:
    chunk = b"<p>" + b"x" * 65_536 + b"</p>"
    while True:
        yield chunk
        await asyncio.sleep(0)


def site_app(site: Site) -> Starlette:
    return Starlette(routes=[Route("/{path:path}", site.handle)])


async def serve_site(site: Site) -> AsyncIterator[Site]:
    async with serve_http(site_app(site), "127.0.0.1", 0) as base:
        site.base = base
        yield site
