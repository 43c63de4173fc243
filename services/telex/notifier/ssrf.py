"""Refuse webhook targets on private networks (server-side request forgery).

The check runs on the addresses a host name resolves to, at subscription time and before every
request and every redirect hop, so a public name that resolves (or is re-pointed) to an internal
address is refused. Operators can allow networks explicitly (``[notifier] allow_networks``).

Known limit: the HTTP client resolves the name again when it connects, so a DNS server that
answers differently within milliseconds (DNS rebinding) could slip past; pinning the connection
to the checked address would close that.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Beyond what ``ipaddress`` calls private: shared address space (carrier-grade NAT) and NAT64,
# whose addresses embed an IPv4 address that may itself be internal.
_EXTRA_BLOCKED: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("100.64.0.0/10"),
    ipaddress.ip_network("64:ff9b::/96"),
    ipaddress.ip_network("64:ff9b:1::/48"),
)


class TargetRefused(ValueError):
    """A URL that must not be called; the message says why."""


def parse_networks(networks: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Networks from CIDR strings (already validated by the config)."""
    return tuple(ipaddress.ip_network(n, strict=False) for n in networks)


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


async def check_url(url: str, allowed: tuple[IPNetwork, ...]) -> None:
    """Resolve the URL's host and refuse it if any address it resolves to is not allowed.

    Every address counts, not only the first: the client may connect to any of them.
    """
    host, port = check_url_syntax(url)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        check_address(literal, allowed)
        return
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"host {host!r} does not resolve: {exc}") from None
    if not infos:
        raise TargetRefused(f"host {host!r} does not resolve")
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        check_address(address, allowed)
