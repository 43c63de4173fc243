"""Rules shared by telex's two outbound HTTP clients: the poller (to sources) and the notifier
(to webhook receivers).

Which addresses they may call (the server-side request forgery guard: only public unicast
addresses unless the operator allows a network) and how to read a ``Retry-After`` answer.
"""

from __future__ import annotations

import ipaddress
import time
from email.utils import parsedate_to_datetime

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

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
