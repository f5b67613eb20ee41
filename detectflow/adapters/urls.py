"""The SSRF guard: provider URLs may not point at link-local or cloud metadata hosts.

Whoever may write a provider config can make the server (``test-provider``)
and the dataflow connect wherever the URL says. On a cloud VM that includes
the instance metadata service, which hands out credentials to anyone on the
box; it and everything else link-local (169.254.0.0/16, fe80::/10) are
refused unless the operator opts in with ``allow_link_local=True`` (setting
``DETECTFLOW_ALLOW_LINK_LOCAL_PROVIDER_URLS``). Loopback and private
networks stay allowed: simulators, tests and LAN detectors live there.

The host is *resolved* and every address it resolves to is checked, so
``http://2852039166/`` (169.254.169.254 as a decimal), every IPv6 form that
embeds an IPv4 address (mapped, compatible, 6to4, Teredo, NAT64:
:func:`embedded_ipv4`) and names that merely point at a metadata address
are caught as well as the literal. A host that does not resolve is not refused here (nothing can be
reached through it now); the check runs again on every provider test. What
it cannot stop is a name re-pointed after the check (DNS rebinding), since
the adapters resolve again when they connect.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

from detectflow.core.errors import PermanentProviderError
from detectflow.core.redact import redact_text
from detectflow.core.settings import Settings

__all__ = [
    "GUARDED_SCHEMES",
    "METADATA_ADDRESSES",
    "METADATA_HOSTS",
    "SETTING_NAME",
    "Resolver",
    "UnsafeProviderUrlError",
    "allow_link_local",
    "check_provider_url",
    "embedded_ipv4",
    "refusal_reason",
]

SETTING_NAME = "allow_link_local_provider_urls"
"""The Settings field (env ``DETECTFLOW_ALLOW_LINK_LOCAL_PROVIDER_URLS``) that lifts the guard."""

GUARDED_SCHEMES = frozenset({"http", "https", "grpc", "grpcs", "mqtt", "mqtts"})
_DEFAULT_PORTS = {
    "http": 80,
    "https": 443,
    "grpc": 50051,
    "grpcs": 443,
    "mqtt": 1883,
    "mqtts": 8883,
}

METADATA_HOSTS = frozenset(
    {
        "metadata.google.internal",  # GCP
        "metadata.goog",  # GCP
        "metadata",  # GCP short name
        "instance-data",  # AWS
        "instance-data.ec2.internal",  # AWS
    }
)
"""Names refused before any lookup: outside their cloud they do not resolve at all."""

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OCI, DigitalOcean, OpenStack
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
    )
)
"""Metadata services; the ones outside link-local ranges are why a list is needed."""

_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 well-known prefix
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215 local-use prefix
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # RFC 4291 (deprecated, still routed)

Resolver = Callable[[str, int], Awaitable[list[str]]]
"""``(host, port) -> addresses``; the default asks the system resolver."""


class UnsafeProviderUrlError(PermanentProviderError):
    """The provider URL points at a link-local or cloud metadata address."""

    code = "unsafe_provider_url"


def allow_link_local(settings: Settings) -> bool:
    """The operator's opt-out (``DETECTFLOW_ALLOW_LINK_LOCAL_PROVIDER_URLS``)."""
    return settings.allow_link_local_provider_urls


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def embedded_ipv4(address: Address) -> tuple[ipaddress.IPv4Address, ...]:
    """Every IPv4 address an IPv6 address carries, by each standard embedding.

    IPv4-mapped (``::ffff:a.b.c.d``), IPv4-compatible (``::a.b.c.d``), 6to4
    (``2002:AABB:CCDD::``), Teredo (``2001:0::``, server and client), and
    NAT64 (``64:ff9b::a.b.c.d`` and the local-use ``64:ff9b:1::/48``). A
    stack or translator on the way may deliver any of them to the IPv4
    address inside, so the guard checks each one as well as the IPv6 form.
    """
    if isinstance(address, ipaddress.IPv4Address):
        return ()
    found: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _NAT64 or address in _NAT64_LOCAL:
        found.append(low32)
    if address in _IPV4_COMPATIBLE and int(address) > 1:  # not :: nor ::1
        found.append(low32)
    return tuple(found)


def refusal_reason(address: str) -> str | None:
    """Why connecting to ``address`` is refused, or None when it is allowed."""
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    forms = (parsed, *embedded_ipv4(parsed))
    inside = "" if len(forms) == 1 else " (or embeds one)"
    if any(form in METADATA_ADDRESSES for form in forms):
        return f"{address} is a cloud metadata address{inside}"
    if any(form.is_link_local for form in forms):
        return f"{address} is link-local{inside}"
    return None


async def _system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def check_provider_url(
    url: str, *, allow_link_local: bool = False, resolver: Resolver | None = None
) -> tuple[str, ...]:
    """Refuse ``url`` when its host is (or resolves to) a link-local or metadata address.

    Returns the addresses checked: empty for schemes the guard does not cover
    (a vendor adapter's own kind of endpoint), for a host that does not
    resolve, and when ``allow_link_local`` lifts the guard. Raises
    :class:`UnsafeProviderUrlError` naming the address and the way out.
    """
    if allow_link_local:
        return ()
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return ()  # not a URL this guard can read; the adapter refuses it itself
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".").lower()
    if scheme not in GUARDED_SCHEMES or not host:
        return ()
    if host in METADATA_HOSTS:
        _refuse(url, f"{host} is a cloud metadata host")
    try:
        addresses = await (resolver or _system_resolver)(host, port or _DEFAULT_PORTS[scheme])
    except (OSError, UnicodeError):
        return ()
    _check_all(url, addresses)
    return tuple(addresses)


def _check_all(url: str, addresses: Iterable[str]) -> None:
    for address in addresses:
        reason = refusal_reason(address)
        if reason is not None:
            _refuse(url, reason)


def _refuse(url: str, reason: str) -> None:
    raise UnsafeProviderUrlError(
        f"provider URL {redact_text(url)!r} refused: {reason}; set "
        f"DETECTFLOW_{SETTING_NAME.upper()}=true to allow link-local and metadata addresses"
    )
