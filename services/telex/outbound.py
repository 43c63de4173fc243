"""What telex's two outbound HTTP clients share besides the address guard (:mod:`telex.ssrf`):
the poller (to sources) and the notifier (to webhook receivers) trust the same certificate
authorities, explain a refused certificate the same way and read ``Retry-After`` alike.
"""

from __future__ import annotations

import ssl
import time
from email.utils import parsedate_to_datetime

import aiohttp
import httpx


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def tls_context(ca_file: str = "") -> ssl.SSLContext:
    """The TLS context of outbound HTTP: httpx's default trust store (certifi), plus the
    certificate authorities in ``ca_file`` when set. Certificates and host names are always
    verified.

    Loading the trust store takes tens of milliseconds of CPU: build one per client, or run
    this in a thread from the event loop.
    """
    context = httpx.create_ssl_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


def tls_failure(exc: BaseException, host: str) -> str | None:
    """A clear sentence when ``exc`` (or what caused it) is ``host``'s certificate refused,
    else None."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, aiohttp.ClientConnectorCertificateError):
            cause = cause.certificate_error  # the ssl module's own error, with its reason
            continue
        if isinstance(cause, ssl.SSLCertVerificationError):
            why = cause.verify_message or cause.reason or str(cause)
            return f"TLS certificate of {host} refused: {why}"
        cause = cause.__cause__ or cause.__context__
    return None
