"""Who may connect: every new gateway connection, WebSocket or SSE, is admitted here or
refused with a status and a reason (each refusal counted by reason).

In order: a draining gateway refuses everyone (503: connect to another); then the Origin must
be allowed, the credential valid, and the connection limit not reached.
"""

from __future__ import annotations

from collections.abc import Mapping

from telex import metrics
from telex.gateway.auth import Authenticator, AuthError, Principal
from telex.gateway.hub import Hub


class Admission:
    """Admits connections to one gateway."""

    def __init__(self, auth: Authenticator, hub: Hub, max_connections: int) -> None:
        self.auth = auth
        self.hub = hub
        self.max_connections = max_connections
        self.draining = False

    def admit(self, headers: Mapping[str, str], query: Mapping[str, str]) -> Principal:
        """The principal of a new connection, or :class:`AuthError` saying why not."""
        if self.draining:
            metrics.REFUSED.labels("draining").inc()
            raise AuthError(503, "this gateway is shutting down: connect to another")
        try:
            self.auth.check_origin(headers.get("origin"))
        except AuthError:
            metrics.REFUSED.labels("forbidden_origin").inc()
            raise
        try:
            principal = self.auth.authenticate(headers, query)
        except AuthError:
            metrics.REFUSED.labels("unauthorized").inc()
            raise
        if len(self.hub.conns) >= self.max_connections:
            metrics.REFUSED.labels("limit").inc()
            raise AuthError(503, "connection limit reached: try again later")
        return principal
