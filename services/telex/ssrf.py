"""The server-side request forgery guard of telex's outbound HTTP: the poller calling sources
and the notifier calling webhook receivers.

Only public unicast addresses are called, unless the operator allows a network. Every address
a name resolves to counts, not only the first: a client may connect to any of them. The check
runs twice on one resolution (one DNS cache for both clients):

* before each request and each redirect hop (:meth:`AddressPolicy.check_url`), for a clear
  error early;
* at connect time, inside the HTTP client's connector (:func:`guarded_session`: its resolver,
  :class:`GuardedResolver`, hands the connector only checked addresses, and it connects to
  those), so that a name answering differently the second time (DNS rebinding) cannot steer a
  connection elsewhere. TLS still verifies the certificate against, and sends as SNI, the host
  name of the URL. A URL whose host is an address never reaches a resolver: a client
  middleware checks it.

Both layers use only public aiohttp interfaces: ``aiohttp.abc.AbstractResolver`` and a client
middleware.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from collections.abc import Iterable
from urllib.parse import urlsplit

import aiohttp
from aiohttp import ClientHandlerType, ClientMiddlewareType, ClientRequest, ClientResponse
from aiohttp.abc import AbstractResolver, ResolveResult

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Beyond what ``ipaddress`` calls private: shared address space (carrier-grade NAT) and NAT64,
# whose addresses embed an IPv4 address that may itself be internal.
_EXTRA_BLOCKED = (
    ipaddress.ip_network("100.64.0.0/10"),
    ipaddress.ip_network("64:ff9b::/96"),
    ipaddress.ip_network("64:ff9b:1::/48"),
)


def blocked_reason(address: IPAddress) -> str | None:
    """Why ``address`` is not a public unicast address, or ``None`` when it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return blocked_reason(address.ipv4_mapped)
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_unspecified:
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    if any(address in net for net in _EXTRA_BLOCKED if net.version == address.version):
        return "private (NAT)"
    if address.is_private or address.is_reserved or not address.is_global:
        return "private"
    return None


class TargetRefused(ValueError):
    """A URL that must not be called; the message says why."""


class BadUrl(TargetRefused):
    """Not an http(s) URL telex can call."""


class Unresolvable(TargetRefused):
    """The URL's host name does not resolve."""


def parse_networks(networks: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Networks from CIDR strings (already validated by the config)."""
    return tuple(ipaddress.ip_network(n, strict=False) for n in networks)


def check_url_syntax(url: str) -> tuple[str, int]:
    """Host and port of an http(s) URL, or :class:`BadUrl`."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BadUrl(f"is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise BadUrl("must be an http:// or https:// URL")
    if not parts.hostname:
        raise BadUrl("has no host")
    if parts.username or parts.password:
        raise BadUrl("must not carry credentials")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


class Resolver:
    """Host names resolved and kept for a short time, so requests do not each ask the resolver.

    Safe against rebinding because connections go to the cached, checked addresses themselves.
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

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """The addresses of the name ``host``, in the resolver's order of preference."""
        cached = self.get(host, port)
        if cached is not None:
            return cached
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise Unresolvable(f"host {host!r} does not resolve: {exc}") from None
        addresses: list[IPAddress] = []
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise Unresolvable(f"host {host!r} does not resolve")
        self.put(host, port, addresses)
        return addresses


# One cache for the process: the poller and the notifier of one `telex run` resolve a host once.
RESOLVER = Resolver()


class AddressPolicy:
    """Which addresses one outbound client may call.

    Public unicast addresses always; others when ``allow_private`` is set or they fall in one
    of ``networks``. ``origins`` lets single ``host:port`` pairs through unchecked (``telex
    run`` allows its own replay server). ``hint`` names the setting that allows a network, for
    the error message.
    """

    def __init__(
        self,
        networks: Iterable[str] = (),
        *,
        allow_private: bool = False,
        origins: Iterable[str] = (),
        hint: str = "allow_networks",
        resolver: Resolver | None = None,
    ) -> None:
        self.networks = parse_networks(networks)
        self.allow_private = allow_private
        self.origins = frozenset(origins)
        self.hint = hint
        self.resolver = resolver if resolver is not None else RESOLVER

    def check_address(self, address: IPAddress) -> None:
        """Raise :class:`TargetRefused` unless ``address`` may be called."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            mapped: IPAddress = address.ipv4_mapped
            if any(mapped.version == net.version and mapped in net for net in self.networks):
                return
        if any(address.version == net.version and address in net for net in self.networks):
            return
        reason = blocked_reason(address)
        if reason is None or self.allow_private:
            return
        raise TargetRefused(
            f"resolves to {address}, a {reason} address; allow its network in {self.hint} to use it"
        )

    def allows(self, address: IPAddress) -> bool:
        """True when ``address`` may be called."""
        try:
            self.check_address(address)
        except TargetRefused:
            return False
        return True

    async def addresses(self, host: str, port: int) -> list[str]:
        """The checked addresses to connect to for ``host``, in order of preference."""
        host = host.strip("[]")
        origin = f"{host}:{port}" in self.origins or f"[{host}]:{port}" in self.origins
        try:
            resolved = [ipaddress.ip_address(host)]
        except ValueError:
            resolved = await self.resolver.resolve(host, port)
        if not origin:
            for address in resolved:
                self.check_address(address)
        return [str(address) for address in resolved]

    async def check_url(self, url: str) -> list[str]:
        """Refuse ``url`` (:class:`TargetRefused`) unless every address of its host is allowed;
        returns the addresses."""
        host, port = check_url_syntax(url)
        return await self.addresses(host, port)


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver for one client: a name resolves only to the addresses the policy
    allows, and the connection goes to those very addresses."""

    def __init__(self, policy: AddressPolicy) -> None:
        self.policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Every address of ``host`` checked (:class:`TargetRefused` if one is refused)."""
        addresses = await self.policy.addresses(host.rstrip("."), port)
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in addresses
        ]

    async def close(self) -> None:
        """Nothing to release: the policy's resolver is shared by the process."""


def _literal_guard(policy: AddressPolicy) -> ClientMiddlewareType:
    """A client middleware checking a URL whose host is an address: aiohttp connects to those
    without asking the resolver."""

    async def guard(request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        host = (request.url.host or "").strip("[]")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return await handler(request)  # a name: checked by the GuardedResolver
        await policy.addresses(host, request.url.port or 0)
        return await handler(request)

    return guard


# Longest response header line accepted (aiohttp's default is 8 KiB): publishers send long
# content security policies and cookies.
_MAX_HEADER_LINE = 64 * 1024


def guarded_session(
    policy: AddressPolicy,
    ssl_context: ssl.SSLContext,
    *,
    limit: int,
    keepalive_s: float,
    timeout: aiohttp.ClientTimeout,
    headers: dict[str, str] | None = None,
    cookies: bool = True,
    decompress: bool = True,
) -> aiohttp.ClientSession:
    """An aiohttp client whose connections go only where ``policy`` allows.

    No proxy (a proxy would connect on our behalf, unchecked; the environment is not read),
    HTTP/1.1, the given TLS context, at most ``limit`` connections, idle ones kept
    ``keepalive_s``. Redirects are the caller's to follow (and to check, hop by hop).
    """
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(policy),
        use_dns_cache=False,  # the policy's resolver caches, checked
        ssl=ssl_context,
        limit=limit,
        keepalive_timeout=keepalive_s,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        headers=headers,
        cookie_jar=None if cookies else aiohttp.DummyCookieJar(),
        auto_decompress=decompress,
        trust_env=False,
        max_line_size=_MAX_HEADER_LINE,
        max_field_size=_MAX_HEADER_LINE,
        middlewares=(_literal_guard(policy),),
    )
