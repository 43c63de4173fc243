"""``/v1/sources``: manage the polled sources at run time, and see how each one is doing.

Writes go to the compacted sources topic, so every poller in the group picks them up. Status
comes from the pollers of this process: a source polled by another process shows
``"status": null`` here (its metrics are on that process's ``/metrics``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Response
from fastapi.responses import JSONResponse

from telex.config import SourceConfig
from telex.poller.service import Poller
from telex.poller.sources import SourceCatalog, SourceError, validate_source


def _view(source: SourceConfig, poller: Poller | None) -> dict[str, Any]:
    body = source.model_dump(mode="json", exclude_none=True)
    state = poller.states.get(source.id) if poller is not None else None
    body["status"] = state.status() if state is not None else None
    return body


def _invalid(exc: SourceError) -> JSONResponse:
    return JSONResponse({"error": "invalid source", "errors": exc.errors}, status_code=422)


def _not_found(source_id: str) -> JSONResponse:
    return JSONResponse({"error": f"no source {source_id!r}"}, status_code=404)


def create_router(catalog: SourceCatalog, poller: Poller | None = None) -> APIRouter:
    """The routes over ``catalog``; ``poller`` supplies status for the sources it polls."""
    router = APIRouter(prefix="/v1/sources", tags=["sources"])
    _read_routes(router, catalog, poller)
    _create_routes(router, catalog, poller)
    _change_routes(router, catalog, poller)
    return router


def _read_routes(router: APIRouter, catalog: SourceCatalog, poller: Poller | None) -> None:
    @router.get("")
    async def list_sources() -> dict[str, Any]:
        """Every source, sorted by id, with the status of those polled by this process."""
        sources = sorted(catalog.sources.values(), key=lambda s: s.id)
        return {"sources": [_view(s, poller) for s in sources], "count": len(sources)}

    @router.get("/{source_id}", response_model=None)
    async def get_source(source_id: str) -> JSONResponse | dict[str, Any]:
        """One source and, when polled here, its status."""
        source = catalog.sources.get(source_id)
        return _view(source, poller) if source is not None else _not_found(source_id)


def _create_routes(router: APIRouter, catalog: SourceCatalog, poller: Poller | None) -> None:
    @router.post("", status_code=201, response_model=None)
    async def create_source(body: Any = Body(...)) -> JSONResponse | dict[str, Any]:  # noqa: B008
        """Add a source. 409 when the id exists; 422 names each invalid field."""
        try:
            source = validate_source(body)
        except SourceError as exc:
            return _invalid(exc)
        if source.id in catalog.sources:
            return JSONResponse(
                {"error": f"source {source.id!r} exists; PUT or PATCH it"}, status_code=409
            )
        await catalog.put(source)
        return _view(source, poller)

    @router.put("/{source_id}", response_model=None)
    async def replace_source(
        source_id: str,
        response: Response,
        body: Any = Body(...),  # noqa: B008
    ) -> JSONResponse | dict[str, Any]:
        """Create or replace a source with the whole definition given."""
        if not isinstance(body, dict):
            return _invalid(SourceError([{"field": "(body)", "message": "must be an object"}]))
        if body.setdefault("id", source_id) != source_id:
            return _invalid(
                SourceError([{"field": "id", "message": "does not match the id in the path"}])
            )
        try:
            source = validate_source(body)
        except SourceError as exc:
            return _invalid(exc)
        response.status_code = 200 if source_id in catalog.sources else 201
        await catalog.put(source)
        return _view(source, poller)


def _change_routes(router: APIRouter, catalog: SourceCatalog, poller: Poller | None) -> None:
    @router.patch("/{source_id}", response_model=None)
    async def update_source(
        source_id: str,
        body: Any = Body(...),  # noqa: B008
    ) -> JSONResponse | dict[str, Any]:
        """Change some fields of a source (``null`` resets a field to its default)."""
        current = catalog.sources.get(source_id)
        if current is None:
            return _not_found(source_id)
        if not isinstance(body, dict):
            return _invalid(SourceError([{"field": "(body)", "message": "must be an object"}]))
        if body.get("id", source_id) != source_id:
            return _invalid(SourceError([{"field": "id", "message": "cannot be changed"}]))
        merged = {**current.model_dump(mode="json", exclude_none=True), **body}
        merged = {k: v for k, v in merged.items() if v is not None}
        try:
            source = validate_source(merged)
        except SourceError as exc:
            return _invalid(exc)
        await catalog.put(source)
        return _view(source, poller)

    @router.delete("/{source_id}", status_code=204, response_model=None)
    async def delete_source(source_id: str) -> Response:
        """Stop polling a source and forget it."""
        if not await catalog.delete(source_id):
            return _not_found(source_id)
        return Response(status_code=204)
