"""Refuse webhook targets on private networks (server-side request forgery).

The check runs on the addresses a host name resolves to, at subscription time and before every
request and every redirect hop, so a public name that resolves (or is re-pointed) to an internal
address is refused. Operators can allow networks explicitly (``[notifier] allow_networks``).
Deliveries then connect to the checked address itself (see :func:`pinned_url`), so a DNS answer
that changes between the check and the connection (DNS rebinding) cannot redirect them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

from telex.outbound import IPAddress, blocked_reason

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class TargetRefused(ValueError):
    """A URL that must not be called; the message says why."""


def parse_networks(networks: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Networks from CIDR strings (already validated by the config)."""
    return tuple(ipaddress.ip_network(n, strict=False) for n in networks)


def check_address(address: IPAddress, allowed: tuple[IPNetwork, ...]) -> None:
    """Raise :class:`TargetRefused` unless ``address`` is public or in an allowed network."""
    reason = blocked_reason(address)
    if reason is None:
        return
    if any(address.version == net.version and address in net for net in allowed):
        return
    raise TargetRefused(
        f"resolves to {address}, a {reason} address; "
        "allow its network in [notifier] allow_networks to use it"
    )


def check_url_syntax(url: str) -> tuple[str, int]:
    """Host and port of an http(s) URL, or :class:`TargetRefused`."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise TargetRefused("must be an http:// or https:// URL")
    if not parts.hostname:
        raise TargetRefused("has no host")
    if parts.username or parts.password:
        raise TargetRefused("must not carry credentials")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


class ResolveCache:
    """Resolved addresses kept for a short time, so deliveries do not each ask the resolver.

    Safe against rebinding because deliveries connect to the cached, checked address itself.
    """

    def __init__(self, ttl: float = 30.0, size: int = 10_000) -> None:
        self.ttl = ttl
        self.size = size
        self._entries: dict[tuple[str, int], tuple[float, list[IPAddress]]] = {}

    def get(self, host: str, port: int) -> list[IPAddress] | None:
        """Fresh addresses of ``host``, or ``None``."""
        entry = self._entries.get((host, port))
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, host: str, port: int, addresses: list[IPAddress]) -> None:
        """Remember ``addresses`` for ``ttl`` seconds."""
        if len(self._entries) >= self.size:
            self._entries.clear()  # crude, and rare: one resolution per host afterwards.
        self._entries[(host, port)] = (time.monotonic() + self.ttl, addresses)


async def check_url(
    url: str, allowed: tuple[IPNetwork, ...], cache: ResolveCache | None = None
) -> list[IPAddress]:
    """Resolve the URL's host and refuse it if any address it resolves to is not allowed.

    Every address counts, not only the first: a client may connect to any of them. Returns the
    checked addresses, in the resolver's order of preference. Cached addresses are checked
    again (the allowed networks may differ between callers).
    """
    host, port = check_url_syntax(url)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        check_address(literal, allowed)
        return [literal]
    cached = cache.get(host, port) if cache is not None else None
    if cached is not None:
        for address in cached:
            check_address(address, allowed)
        return cached
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"host {host!r} does not resolve: {exc}") from None
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        check_address(address, allowed)
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise TargetRefused(f"host {host!r} does not resolve")
    if cache is not None:
        cache.put(host, port, addresses)
    return addresses


def pinned_url(url: str, address: IPAddress) -> tuple[str, str, str | None]:
    """``url`` with its host replaced by ``address``, the ``Host`` header it needs, and the
    name to send as TLS SNI and verify the certificate against (``None`` for plain http or an
    address literal)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc_host = f"[{address}]" if address.version == 6 else str(address)
    netloc = netloc_host + (f":{parts.port}" if parts.port is not None else "")
    host_header = parts.netloc.rpartition("@")[2]
    sni = host if parts.scheme == "https" and _is_name(host) else None
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")), host_header, sni


def _is_name(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return True
    return False
