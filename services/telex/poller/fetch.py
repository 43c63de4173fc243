"""HTTP for the poller, done politely and defensively.

* conditional GET (ETag / Last-Modified), and what the server says about freshness
  (Cache-Control max-age, Expires) and load (429/503 Retry-After) is handed back to the
  scheduler;
* redirects are followed by hand, a bounded number of times, so that every hop is checked
  against the address policy (no private or loopback targets unless allowed: SSRF);
* a per-host concurrency limit, one overall deadline per fetch, and a body size cap that cuts
  off huge or endless responses while they stream.

Every failure is a :class:`FetchError` with a ``reason`` from a small fixed set, for metrics.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Literal
from urllib.parse import urljoin, urlsplit

import aiohttp

from telex.config import PollerConfig
from telex.outbound import retry_after_seconds, tls_context, tls_failure
from telex.ssrf import AddressPolicy, BadUrl, TargetRefused, Unresolvable, guarded_session

Reason = Literal[
    "refused_address",
    "dns",
    "connect",
    "tls",
    "timeout",
    "too_large",
    "redirects",
    "rate_limited",
    "http_4xx",
    "http_5xx",
    "http_other",
    "bad_url",
    "protocol",
]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)", re.IGNORECASE)


class FetchError(Exception):
    """A poll that did not yield a document; ``reason`` is a bounded label for metrics."""

    def __init__(self, reason: Reason, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True)
class Fetched:
    """The outcome of one conditional GET that did not fail."""

    status: int  # 200 (or another 2xx) or 304
    url: str  # after redirects
    body: bytes | None  # None on 304
    content_type: str | None
    etag: str | None
    last_modified: str | None
    fresh_for: float | None  # seconds the server says the document stays fresh

    @property
    def not_modified(self) -> bool:
        """True when the server answered 304 Not Modified."""
        return self.status == 304


def freshness_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """How long the response says it stays fresh: ``max-age``, else ``Expires``."""
    cache_control = headers.get("cache-control", "")
    if "no-store" in cache_control.lower() or "no-cache" in cache_control.lower():
        return None
    match = _MAX_AGE.search(cache_control)
    if match:
        age = float(headers.get("age", "0") or 0) if headers.get("age", "").isdigit() else 0.0
        return max(0.0, float(match.group(1)) - age)
    expires = headers.get("expires")
    if expires:
        try:
            moment = parsedate_to_datetime(expires)
        except (TypeError, ValueError):
            return None  # "Expires: 0" and garbage mean "already stale".
        return max(0.0, moment.timestamp() - (time.time() if now is None else now))
    return None


class Fetcher:
    """Conditional GETs under the poller's limits. One per poller; close with :meth:`aclose`."""

    def __init__(
        self, config: PollerConfig, policy: AddressPolicy, tls: ssl.SSLContext | None = None
    ) -> None:
        self.config = config
        self.policy = policy
        self._client = guarded_session(
            policy,
            tls if tls is not None else tls_context(),
            limit=512,
            # Longer than the poll interval: a source's next poll reuses its connection.
            keepalive_s=max(15.0, 2 * config.interval),
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=min(config.timeout, 10.0), sock_read=config.timeout
            ),
            headers={
                "User-Agent": config.user_agent,
                "Accept": "text/html,application/xhtml+xml,application/rss+xml,"
                "application/atom+xml,application/feed+json,application/json;q=0.9,*/*;q=0.8",
            },
        )
        self._hosts: dict[str, asyncio.Semaphore] = {}

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.close()

    def _slot(self, url: str) -> asyncio.Semaphore:
        host = urlsplit(url).netloc.lower()
        slot = self._hosts.get(host)
        if slot is None:
            slot = self._hosts[host] = asyncio.Semaphore(self.config.per_host)
        return slot

    async def fetch(
        self, url: str, etag: str | None = None, last_modified: str | None = None
    ) -> Fetched:
        """GET ``url`` conditionally, following redirects by hand; never longer than the
        configured timeout in total."""
        try:
            async with asyncio.timeout(self.config.timeout):
                return await self._fetch(url, etag, last_modified)
        except TimeoutError:
            raise FetchError(
                "timeout", f"no complete answer within {self.config.timeout:g}s"
            ) from None

    async def _fetch(self, url: str, etag: str | None, last_modified: str | None) -> Fetched:
        headers: dict[str, str] = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        seen: set[str] = set()
        for _hop in range(self.config.max_redirects + 1):
            await self._check(url)
            seen.add(url)
            async with self._slot(url):
                result = await self._request(url, headers)
            if isinstance(result, Fetched):
                return result
            target = urljoin(url, result)
            if target in seen:
                raise FetchError("redirects", f"redirect loop at {target[:200]}")
            url = target
        raise FetchError("redirects", f"more than {self.config.max_redirects} redirects")

    async def _check(self, url: str) -> None:
        try:
            await self.policy.check_url(url)
        except TargetRefused as exc:
            raise _refused(url, exc) from None

    async def _request(self, url: str, headers: dict[str, str]) -> Fetched | str:
        """One hop: a :class:`Fetched`, or the ``Location`` of a redirect."""
        limit = self.config.max_body_bytes
        try:
            async with self._client.get(url, headers=headers, allow_redirects=False) as response:
                status = response.status
                if status in _REDIRECTS:
                    location: str | None = response.headers.get("location")
                    if not location:
                        raise FetchError("protocol", f"HTTP {status} without a Location")
                    return location
                if status == 304:
                    return self._fetched(response, url, None)
                _check_status(status, response.headers)
                return self._fetched(response, url, await _read_body(response, limit))
        except TargetRefused as exc:  # at connect time: the name now resolves elsewhere
            raise _refused(url, exc) from None
        except TimeoutError as exc:  # aiohttp's timeouts are TimeoutErrors too
            raise FetchError("timeout", f"timed out: {type(exc).__name__}") from None
        except (aiohttp.ClientSSLError, aiohttp.ClientConnectorError) as exc:
            refused = tls_failure(exc, urlsplit(url).hostname or url[:200])
            if refused is not None:
                raise FetchError("tls", refused) from None
            raise FetchError("connect", f"cannot connect: {exc}") from None
        except (aiohttp.ClientPayloadError, aiohttp.ClientResponseError) as exc:
            raise FetchError("protocol", f"bad HTTP response: {exc}") from None
        except aiohttp.InvalidURL as exc:
            raise FetchError("bad_url", f"{url[:200]} is not a valid URL: {exc}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise FetchError("connect", f"{type(exc).__name__}: {exc}") from None

    @staticmethod
    def _fetched(response: aiohttp.ClientResponse, url: str, body: bytes | None) -> Fetched:
        return Fetched(
            status=response.status,
            url=url,
            body=body,
            content_type=response.headers.get("content-type"),
            etag=response.headers.get("etag"),
            last_modified=response.headers.get("last-modified"),
            fresh_for=freshness_seconds(response.headers),
        )


def _check_status(status: int, headers: Mapping[str, str]) -> None:
    """Raise the :class:`FetchError` an answer that is not a 2xx page stands for."""
    if status in (429, 503):
        wait = retry_after_seconds(headers.get("retry-after"))
        reason: Reason = "rate_limited" if status == 429 else "http_5xx"
        raise FetchError(reason, f"HTTP {status}", retry_after=wait)
    if status >= 400:
        reason = "http_4xx" if status < 500 else "http_5xx"
        raise FetchError(reason, f"HTTP {status}")
    if not 200 <= status < 300:
        raise FetchError("http_other", f"HTTP {status}")


async def _read_body(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, refused once it exceeds ``limit`` bytes (declared or streamed)."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise FetchError("too_large", f"body of {declared} bytes exceeds {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise FetchError("too_large", f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _refused(url: str, exc: TargetRefused) -> FetchError:
    if isinstance(exc, BadUrl):
        return FetchError("bad_url", f"{url[:200]} {exc}")
    host = urlsplit(url).hostname or url[:200]
    if isinstance(exc, Unresolvable):
        return FetchError("dns", str(exc))
    return FetchError("refused_address", f"{host} {exc}")
