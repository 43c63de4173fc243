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
import ipaddress
import re
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx

from telex.config import PollerConfig
from telex.outbound import blocked_reason, retry_after_seconds

Reason = Literal[
    "refused_address",
    "dns",
    "connect",
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
_DNS_TTL = 60.0


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


def freshness_seconds(headers: httpx.Headers, now: float | None = None) -> float | None:
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


class AddressPolicy:
    """Which addresses the poller may connect to.

    Public unicast addresses always; private, loopback, link-local, multicast, reserved and
    unspecified ones only when ``allow_private`` is set or they fall in an allowed network.
    ``allow_origins`` lets one ``host:port`` through (``telex run`` allows its own replay).
    """

    def __init__(
        self,
        allow_private: bool = False,
        networks: Iterable[str] = (),
        origins: Iterable[str] = (),
    ) -> None:
        self.allow_private = allow_private
        self.networks = [ipaddress.ip_network(n, strict=False) for n in networks]
        self.origins = set(origins)
        self._dns: dict[str, tuple[float, list[str]]] = {}

    def _address_allowed(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip.version == net.version and ip in net for net in self.networks):
            return True
        return self.allow_private or blocked_reason(ip) is None

    async def _resolve(self, host: str, port: int) -> list[str]:
        cached = self._dns.get(host)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise FetchError("dns", f"cannot resolve {host}: {exc.strerror or exc}") from None
        addresses = sorted({str(info[4][0]) for info in infos})
        if len(self._dns) > 10_000:
            self._dns.clear()
        self._dns[host] = (now + _DNS_TTL, addresses)
        return addresses

    async def check(self, url: str) -> None:
        """Raise :class:`FetchError` unless ``url`` may be fetched."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchError("bad_url", f"not an http(s) URL: {url[:200]}")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise FetchError("bad_url", f"bad port in {url[:200]}") from None
        await self.address_for(parts.hostname, port)

    async def address_for(self, host: str, port: int) -> str:
        """The address to connect to for ``host``, checked; :class:`FetchError` if refused."""
        host = host.strip("[]")
        if f"{host}:{port}" in self.origins or f"[{host}]:{port}" in self.origins:
            return host
        try:
            addresses = [str(ipaddress.ip_address(host))]
        except ValueError:
            addresses = await self._resolve(host, port)
        refused = [a for a in addresses if not self._address_allowed(a)]
        if refused:
            raise FetchError(
                "refused_address",
                f"{host} resolves to non-public address {refused[0]}; allow it with "
                "[poller] allow_networks or allow_private",
            )
        return addresses[0]


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses the policy allows, resolved and checked right here.

    The check before each request gives a clear error early; this one closes the gap between
    that check and the connection (a name that resolves differently the second time, as in
    DNS rebinding), since the socket goes to the very address that was checked. TLS still
    verifies and sends SNI for the host name.
    """

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        address = await self._policy.address_for(host, port)
        return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise FetchError("bad_url", "unix sockets are never polled")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a connection pool that uses :class:`_GuardedBackend`."""

    def __init__(self, policy: AddressPolicy, limits: httpx.Limits) -> None:
        super().__init__(limits=limits, trust_env=False)
        # httpx does not take a network backend; its pool (httpcore) does.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(policy),
        )


class Fetcher:
    """Conditional GETs under the poller's limits. One per poller; close with :meth:`aclose`."""

    def __init__(self, config: PollerConfig, policy: AddressPolicy) -> None:
        self.config = config
        self.policy = policy
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(config.timeout, connect=min(config.timeout, 10.0)),
            follow_redirects=False,
            headers={
                "User-Agent": config.user_agent,
                "Accept": "text/html,application/xhtml+xml,application/rss+xml,"
                "application/atom+xml,application/feed+json,application/json;q=0.9,*/*;q=0.8",
            },
            transport=_GuardedTransport(
                policy, httpx.Limits(max_connections=512, max_keepalive_connections=256)
            ),
            trust_env=False,  # no proxy from the environment: the address check must hold
        )
        self._hosts: dict[str, asyncio.Semaphore] = {}

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

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
            await self.policy.check(url)
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

    async def _request(self, url: str, headers: dict[str, str]) -> Fetched | str:
        """One hop: a :class:`Fetched`, or the ``Location`` of a redirect."""
        limit = self.config.max_body_bytes
        try:
            async with self._client.stream("GET", url, headers=headers) as response:
                status = response.status_code
                if status in _REDIRECTS:
                    location: str | None = response.headers.get("location")
                    if not location:
                        raise FetchError("protocol", f"HTTP {status} without a Location")
                    return location
                if status == 304:
                    return self._fetched(response, url, None)
                if status in (429, 503):
                    wait = retry_after_seconds(response.headers.get("retry-after"))
                    reason: Reason = "rate_limited" if status == 429 else "http_5xx"
                    raise FetchError(reason, f"HTTP {status}", retry_after=wait)
                if status >= 400:
                    reason = "http_4xx" if status < 500 else "http_5xx"
                    raise FetchError(reason, f"HTTP {status}")
                if not 200 <= status < 300:
                    raise FetchError("http_other", f"HTTP {status}")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise FetchError("too_large", f"body of {declared} bytes exceeds {limit}")
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise FetchError("too_large", f"body larger than {limit} bytes")
                    chunks.append(chunk)
                return self._fetched(response, url, b"".join(chunks))
        except httpx.TimeoutException as exc:
            raise FetchError("timeout", f"timed out: {type(exc).__name__}") from None
        except httpx.ConnectError as exc:
            raise FetchError("connect", f"cannot connect: {exc}") from None
        except (httpx.DecodingError, httpx.RemoteProtocolError, httpx.LocalProtocolError) as exc:
            raise FetchError("protocol", f"bad HTTP response: {exc}") from None
        except httpx.HTTPError as exc:
            raise FetchError("connect", f"{type(exc).__name__}: {exc}") from None

    @staticmethod
    def _fetched(response: httpx.Response, url: str, body: bytes | None) -> Fetched:
        return Fetched(
            status=response.status_code,
            url=url,
            body=body,
            content_type=response.headers.get("content-type"),
            etag=response.headers.get("etag"),
            last_modified=response.headers.get("last-modified"),
            fresh_for=freshness_seconds(response.headers),
        )
