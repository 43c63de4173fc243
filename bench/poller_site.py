"""A local website of N live pages for the poller benchmark, run in its own process.

Pages answer 304 to a matching If-None-Match. One page in ``--change-every`` gets a new entry
every ``--period`` seconds; the rest never change, so most polls are 304s, as on a real
newsroom's list of sources where few are live at any moment.

    python bench/poller_site.py PORT [--pages 1000] [--change-every 20] [--period 10]
"""

from __future__ import annotations

import argparse
import time

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

HITS = {"total": 0, "not_modified": 0}


def build(pages: int, change_every: int, period: float) -> Starlette:
    started = time.monotonic()

    def version(i: int) -> int:
        if i % change_every:
            return 1
        return 1 + int((time.monotonic() - started + i * 0.37) / period)

    def body(i: int, v: int) -> bytes:
        entries = "".join(
            f'<article id="e{n}"><span>{10 + n // 60 % 14:02d}:{n % 60:02d} GMT</span>'
            f"<h3>Update {n}</h3><p>Page {i}, entry {n}: something happened.</p></article>"
            for n in range(v, max(0, v - 20), -1)
        )
        return (
            f"<html><head><title>Live {i}</title></head><body><h1>Live {i}</h1>"
            f"<p>18 January 2024</p><main>{entries}</main></body></html>"
        ).encode()

    async def page(request: Request) -> Response:
        HITS["total"] += 1
        i = int(request.path_params["i"])
        v = version(i)
        etag = f'"p{i}v{v}"'
        if request.headers.get("if-none-match") == etag:
            HITS["not_modified"] += 1
            return Response(status_code=304, headers={"ETag": etag})
        return Response(body(i, v), media_type="text/html; charset=utf-8", headers={"ETag": etag})

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse(HITS)

    return Starlette(routes=[Route("/p/{i:int}", page), Route("/_stats", stats)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--change-every", type=int, default=20)
    parser.add_argument("--period", type=float, default=10.0)
    args = parser.parse_args()
    app = build(args.pages, args.change_every, args.period)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
