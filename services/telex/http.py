"""The HTTP surface of a telex process: health, metrics, the dashboard and each service's routes.

Every service process gets ``/healthz``, ``/readyz`` and ``/metrics``; ``telex run`` mounts the
routes of all the services it runs in one app.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Iterable, Sequence
from importlib import resources
from typing import Any, Protocol

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

import telex

# Dashboard (issue 7): every asset comes from telex itself, and event text is never markup;
# the policy makes the browser hold the page to both.
DASHBOARD_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class Component(Protocol):
    """A running part of telex that can say whether it is ready."""

    @property
    def ready(self) -> bool: ...


def admin_guard(tokens: Sequence[str]) -> Callable[[Request], Awaitable[None]]:
    """A dependency that requires one of ``tokens`` as a bearer token (or ``X-API-Key``).

    With no tokens configured the management APIs are open, which is only safe when telex
    listens on loopback; :func:`warn_if_open` says so at start-up.
    """
    expected = [t.encode() for t in tokens]

    async def check(request: Request) -> None:
        if not expected:
            return
        header = request.headers.get("authorization", "")
        given = header[7:].strip() if header[:7].lower() == "bearer " else ""
        given = given or request.headers.get("x-api-key", "")
        if not any(hmac.compare_digest(given.encode(), token) for token in expected):
            raise HTTPException(
                status_code=401,
                detail="a valid admin token is required (Authorization: Bearer ...)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return check


def warn_if_open(host: str, tokens: Sequence[str], log: Any) -> None:
    """Log a warning when the management APIs are reachable beyond loopback without a token."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not tokens and not loopback:
        log.warning(
            "http.management_open",
            host=host,
            hint="set [http] admin_tokens (TELEX_HTTP_ADMIN_TOKENS) to protect /v1/sources "
            "and /v1/webhooks",
        )


def create_app(
    components: dict[str, Component],
    routers: Iterable[APIRouter] = (),
    dashboard: bool = False,
    admin_routers: Iterable[APIRouter] = (),
    admin_tokens: Sequence[str] = (),
) -> FastAPI:
    """The FastAPI app for a process running ``components``.

    ``admin_routers`` (sources, webhooks) require one of ``admin_tokens`` when any is set.
    """
    app = FastAPI(title="telex", version=telex.__version__, docs_url="/docs")

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """Alive: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> JSONResponse:
        """Ready: every component is connected and has what it needs to work."""
        states = {name: c.ready for name, c in components.items()}
        ok = all(states.values())
        body = {"status": "ready" if ok else "not ready", "components": states}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["operations"])
    async def metrics() -> Response:
        """Prometheus metrics of this process."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for router in routers:
        app.include_router(router)
    guard = Depends(admin_guard(admin_tokens))
    for router in admin_routers:
        app.include_router(router, dependencies=[guard])

    if dashboard:
        web = resources.files("telex") / "web"
        with resources.as_file(web) as web_dir:
            app.mount("/static", StaticFiles(directory=web_dir), name="static")
            index = web_dir / "index.html"

        @app.get("/", include_in_schema=False)
        async def home() -> FileResponse:
            return FileResponse(index, headers=DASHBOARD_HEADERS)

    return app


class Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to telex, so several can share a loop."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


def server(app: object, host: str, port: int, **websocket: Any) -> Server:
    """A uvicorn server for ``app`` that telex starts and stops itself.

    ``websocket`` overrides the WebSocket settings (``ws_max_size``, ``ws_ping_interval``,
    ``ws_ping_timeout``); the gateway passes its own.
    """
    settings: dict[str, Any] = {"ws_max_size": 64 * 1024, **websocket}
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=3,
        # The sans-I/O protocol lets the gateway write shared frames straight to the socket.
        ws="websockets-sansio",
        # Compression costs ~50 KB of zlib state per connection; event frames are sent
        # uncompressed anyway (encoded once for everyone).
        ws_per_message_deflate=False,
        **settings,
    )
    return Server(config)
