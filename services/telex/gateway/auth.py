"""Who may connect to the gateway, and which sources they may see.

Credentials: an API key or a signed JWT, given as ``Authorization: Bearer <credential>``, an
``X-API-Key`` header, or ``?token=`` (browsers cannot set headers on WebSocket or EventSource).
A JWT may carry a ``sources`` claim (a list of source ids) restricting what its holder sees;
an API key may be restricted the same way in the configuration. Anonymous access (no
credential at all) is allowed only when ``[gateway] anonymous`` is true. A browser's ``Origin``
must be on the allow-list when one is configured.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

import jwt

from telex.config import GatewayConfig
from telex.filters import Filter, FilterError

_HMAC_ALGS = ["HS256", "HS384", "HS512"]
_KEY_ALGS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"]


class AuthError(Exception):
    """A refused connection: ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Principal:
    """An authenticated (or anonymous) client."""

    name: str
    kind: str  # "anonymous", "api_key" or "jwt"
    sources: frozenset[str] | None = None  # None: every source

    def restrict(self, filter_: Filter) -> Filter:
        """``filter_`` limited to the sources this principal may see, or FilterError."""
        if self.sources is None:
            return filter_
        if not filter_.sources:
            if not self.sources:
                raise FilterError("forbidden: this credential may see no source", "forbidden")
            return filter_.model_copy(update={"sources": tuple(sorted(self.sources))})
        denied = [s for s in filter_.sources if s not in self.sources]
        if denied:
            raise FilterError(
                f"forbidden: this credential may not see source(s) {denied}", "forbidden"
            )
        return filter_


ANONYMOUS = Principal("anonymous", "anonymous")


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class Authenticator:
    """Checks credentials and origins against the gateway configuration."""

    def __init__(self, config: GatewayConfig) -> None:
        self.anonymous = config.anonymous
        self._keys = {
            _digest(k.key): Principal(
                k.name, "api_key", None if k.sources is None else frozenset(k.sources)
            )
            for k in config.api_keys
        }
        self._jwt_key: str | None = config.jwt_public_key or config.jwt_secret or None
        self._jwt_algs = _KEY_ALGS if config.jwt_public_key else _HMAC_ALGS
        self._audience = config.jwt_audience or None
        self._issuer = config.jwt_issuer or None
        self._origins = frozenset(o.rstrip("/") for o in config.allowed_origins)

    def check_origin(self, origin: str | None) -> None:
        """Refuse a browser origin that is not on the allow-list (clients without one pass)."""
        if not self._origins or origin is None or "*" in self._origins:
            return
        if origin.rstrip("/") not in self._origins:
            raise AuthError(403, f"origin {origin[:100]!r} is not allowed")

    def authenticate(self, headers: Mapping[str, str], query: Mapping[str, str]) -> Principal:
        """The principal for a request's credentials, or :class:`AuthError`."""
        credential = None
        auth = headers.get("authorization")
        if auth:
            scheme, _, value = auth.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise AuthError(401, "Authorization header must be 'Bearer <api key or token>'")
            credential = value.strip()
        credential = credential or headers.get("x-api-key") or query.get("token") or None
        if credential is None:
            if self.anonymous:
                return ANONYMOUS
            raise AuthError(401, "credentials required: an API key or a token")
        if credential.count(".") == 2 and credential.startswith("eyJ"):
            return self._from_jwt(credential)
        digest = _digest(credential)
        for known, principal in self._keys.items():
            if hmac.compare_digest(known, digest):
                return principal
        raise AuthError(401, "unknown API key")

    def _from_jwt(self, token: str) -> Principal:
        if self._jwt_key is None:
            raise AuthError(401, "tokens are not accepted by this gateway")
        try:
            claims = jwt.decode(
                token,
                self._jwt_key,
                algorithms=self._jwt_algs,
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError(401, "token expired") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(401, f"invalid token: {exc}") from None
        sources = claims.get("sources")
        if sources is not None and (
            not isinstance(sources, list) or not all(isinstance(s, str) for s in sources)
        ):
            raise AuthError(401, "invalid token: sources must be a list of source ids")
        return Principal(
            str(claims.get("sub") or "token"),
            "jwt",
            None if sources is None else frozenset(sources),
        )
