"""What a client asks the gateway for, checked: filters, cursors, backlogs, subscription ids.

Every function here turns one part of a request (a query string, a ``subscribe`` frame) into a
value the gateway can use, or raises :class:`RequestError` whose ``code`` the client sees.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from telex.config import GatewayConfig
from telex.filters import Filter, FilterError
from telex.gateway.auth import Principal
from telex.gateway.cursor import CursorError, decode_cursor

SUB_ID_MAX = 64
SUBSCRIBE_FIELDS = frozenset({"op", "id", "filter", "cursor", "backlog"})
_SHARED_MAX = 10_000  # distinct filters kept; past it the cache starts again


class RequestError(Exception):
    """A client request the gateway cannot serve: ``code`` names the problem."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_cursor(token: Any) -> dict[int, int] | None:
    """The positions of a client's cursor, ``None`` when it sent none."""
    if token is None or token == "":
        return None
    if not isinstance(token, str):
        raise RequestError("bad_cursor", "cursor must be a string")
    try:
        return decode_cursor(token)
    except CursorError as exc:
        raise RequestError("bad_cursor", str(exc)) from None


_FILTERS: dict[str, Filter] = {}


def shared(filter_: Filter) -> Filter:
    """One instance per distinct filter: thousands of dashboards ask for the same few."""
    key = filter_.key
    known = _FILTERS.get(key)
    if known is not None:
        return known
    if len(_FILTERS) >= _SHARED_MAX:
        _FILTERS.clear()
    _FILTERS[key] = filter_
    return filter_


def subscription_filter(principal: Principal, make: Callable[[], Filter]) -> Filter:
    """The filter ``make`` builds, narrowed to what ``principal`` may see, shared."""
    try:
        return shared(principal.restrict(make()))
    except FilterError as exc:
        raise RequestError(exc.code, str(exc)) from None


def parse_backlog(value: Any, settings: GatewayConfig) -> int:
    """How many recent events to send first: the configured default when ``value`` is None,
    never more than the gateway remembers."""
    if value is None:
        return min(settings.backlog, settings.history_size)
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise RequestError("bad_request", "backlog must be an integer") from None
    if count < 0 or isinstance(value, bool):
        raise RequestError("bad_request", "backlog must not be negative")
    return min(count, settings.history_size)


def initial(
    principal: Principal,
    query: Mapping[str, str],
    settings: GatewayConfig,
    last_event_id: str | None = None,
) -> tuple[Filter | None, dict[int, int] | None, int]:
    """The subscription a connection asks for in its query string: filter, cursor, backlog.

    The filter is None for ``subscribe=none`` (a WebSocket client subscribes later).
    """
    if query.get("subscribe", "").lower() in ("none", "false", "0"):
        return None, None, 0
    filter_ = subscription_filter(principal, lambda: Filter.from_query(query))
    cursor = parse_cursor(last_event_id or query.get("cursor"))
    return filter_, cursor, parse_backlog(query.get("backlog"), settings)


def sub_id(data: Mapping[str, Any]) -> str:
    """The subscription id a frame names (``default`` when it names none)."""
    sid = data.get("id", "default")
    if not isinstance(sid, str) or not 1 <= len(sid) <= SUB_ID_MAX:
        raise RequestError("bad_frame", f"id must be a string of 1-{SUB_ID_MAX} characters")
    return sid
