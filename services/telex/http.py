"""The HTTP surface of a telex process: health, metrics, the dashboard and each service's routes.

Every service process gets ``/healthz``, ``/readyz`` and ``/metrics``; ``telex run`` mounts the
routes of all the services it runs in one app.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Iterable, Sequence
from importlib import resources
from typing import Any, Protocol

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

import telex

# Dashboard: every asset comes from telex itself, and event text is never markup;
# the policy makes the browser hold the page to both.
DASHBOARD_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class ApiError(Exception):
    """An error a route answers with: ``{"error": {"message": ..., "field": ...}}``.

    Routes raise it; the one handler :func:`create_app` installs turns it into the response, so
    no route builds error bodies of its own.
    """

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field

    def response(self) -> JSONResponse:
        """As JSON."""
        body: dict[str, Any] = {"message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return JSONResponse({"error": body}, status_code=self.status)


def body_error(exc: RequestValidationError) -> ApiError:
    """The first problem of a request that failed validation, naming the field at fault.

    A body that is missing or not a JSON object is reported on ``body``; a field the model does
    not have is an "unknown field".
    """
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    if loc and loc[0] in ("body", "query", "path", "header"):
        loc = loc[1:]
    if not loc:
        return ApiError(422, "body must be a JSON object", "body")
    field = ".".join(loc)
    message = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
    return ApiError(422, f"{field}: {message.removeprefix('Value error, ')}", field)


async def _api_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _invalid_request(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return body_error(exc).response()


class Component(Protocol):
    """A running part of telex that can say whether it is ready (and may say why not, in a
    ``not_ready_reason`` property: ``/readyz`` shows it)."""

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
    max_body_bytes: int = 1_048_576,
) -> FastAPI:
    """The FastAPI app for a process running ``components``.

    ``admin_routers`` (sources, webhooks) require one of ``admin_tokens`` when any is set.
    Request bodies larger than ``max_body_bytes`` are refused with 413 before any route runs.
    """
    app = FastAPI(title="telex", version=telex.__version__, docs_url="/docs")
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_middleware(BodyLimit, limit=max_body_bytes)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """Alive: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> JSONResponse:
        """Ready: every component is connected and has what it needs to work.

        Not ready: 503, the components that are not, and for those that can say, why.
        """
        states = {name: c.ready for name, c in components.items()}
        ok = all(states.values())
        body: dict[str, Any] = {"status": "ready" if ok else "not ready", "components": states}
        reasons = {
            name: reason
            for name, c in components.items()
            if not states[name] and (reason := getattr(c, "not_ready_reason", None))
        }
        if reasons:
            body["reasons"] = reasons
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


# Security: request body limit --------------------------------------------------------------


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, declared or streamed.

    The body is read (up to the limit) before the route runs and handed to it whole, so a route
    never sees a cut-off body and a client cannot make the process buffer more than ``limit``.
    Only the management API takes bodies, and they are small. The connection stays open: the
    server discards the rest of a refused body as it arrives, so the client reads its 413
    instead of a reset.
    """

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def receive_buffered() -> Any:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, receive_buffered, send)

    async def _refuse(self, send: Any) -> None:
        body = JSONResponse(
            {"error": f"request body larger than {self.limit} bytes", "code": "too_large"}
        ).body
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to telex, so several can share a loop."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


def server(app: object, host: str, port: int, websocket: type[asyncio.Protocol]) -> Server:
    """A uvicorn server for ``app`` that telex starts and stops itself.

    WebSocket upgrade requests never reach ``app``: uvicorn hands each one, with its socket,
    to the ``websocket`` protocol class (the gateway's endpoint), through its public ``ws``
    option.
    """
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=3,
        ws=websocket,
    )
    return Server(config)
