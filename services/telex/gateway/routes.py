"""The gateway's HTTP routes: ``/v1/events`` (Server-Sent Events) and ``/v1/updates``.

``/v1/stream`` is not an ASGI route: WebSocket upgrades go to the gateway's endpoint
(:mod:`telex.gateway.endpoint`).
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from telex import metrics
from telex.filters import Filter, FilterError
from telex.gateway.admission import Admission
from telex.gateway.auth import AuthError
from telex.gateway.catchup import CatchUp
from telex.gateway.requests import RequestError, initial, parse_cursor, subscription_filter
from telex.gateway.sse_session import SseSession
from telex.gateway.updates import Pages


def build_router(admission: Admission, catchup: CatchUp, pages: Pages) -> APIRouter:
    """The routes, bound to one gateway's parts."""
    router = APIRouter()
    settings = catchup.settings

    @router.get("/v1/events", tags=["gateway"])
    async def events(request: Request) -> Response:
        """The live wire as Server-Sent Events; resumable with ``Last-Event-ID``.

        Query: the filter fields (``sources``, ``terms``, ``entities``, ``tags``,
        ``languages``, ``types``; comma-separated), ``cursor``, ``backlog``, ``token``.
        """
        query = dict(request.query_params)
        try:
            principal = admission.admit(request.headers, query)
            filter_, cursor, backlog = initial(
                principal, query, settings, request.headers.get("last-event-id")
            )
            if filter_ is None:
                # subscribe=none means nothing on a stream that cannot subscribe later:
                # the whole view of this principal, never more (it used to be the whole
                # wire, whatever sources the credential was limited to).
                filter_ = subscription_filter(principal, Filter)
        except AuthError as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        except RequestError as exc:
            metrics.CLIENT_ERRORS.labels(exc.code).inc()
            return JSONResponse({"error": exc.message, "code": exc.code}, status_code=400)
        session = SseSession(catchup, principal)
        return StreamingResponse(
            session.stream(filter_, cursor, backlog),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @router.get("/v1/updates", tags=["gateway"])
    async def updates(
        request: Request,
        limit: int = Query(50, ge=1, le=500),
        before: str | None = Query(None, description="the `next` of a previous page"),
    ) -> Response:
        """Recent updates, newest first, with the same filters as the stream.

        Newest first from the gateway's memory, then read back from the wire; ``next``
        (pass it as ``before``) is null on the last page. A page may hold fewer than
        ``limit`` updates when a sparse filter meets a long stretch of the wire.
        """
        query = dict(request.query_params)
        try:
            principal = admission.admit(request.headers, query)
            filter_ = principal.restrict(Filter.from_query(query))
            bound = parse_cursor(before) or {}
        except AuthError as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        except FilterError as exc:
            return JSONResponse({"error": str(exc), "code": "bad_filter"}, status_code=400)
        except RequestError as exc:
            return JSONResponse({"error": exc.message, "code": exc.code}, status_code=400)
        page = await pages.page(filter_, bound, limit)
        return Response(page, media_type="application/json")

    return router
