"""SSRF guard: decide where a URL may be fetched from, before every request and every redirect.

A URL passes only if its scheme is http(s), its host is not an oddly encoded IP (decimal
`2130706433`, octal `0177.0.0.1`, hex `0x7f.1`, short forms like `127.1`, all of which
libc would happily resolve to loopback) and every address it resolves to is globally routable:
loopback, private, link-local, multicast, reserved, unspecified, shared (CGNAT) and
IPv4-mapped/6to4/Teredo wrappers of those are refused. The only exceptions are the configured
`allow_hosts` and `host_overrides` (the offline world's server, like curl --resolve). The guard
returns the address to connect to, so the caller pins the connection to the checked address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

Resolver = Callable[[str, int], Awaitable[list[str]]]

_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+))*\.?$", re.IGNORECASE)


class BlockedURL(ValueError):
    """The URL may not be fetched; the message says why."""


@dataclass(frozen=True)
class Target:
    url: str
    scheme: str
    host: str  # as written in the URL (used for the Host header and TLS)
    port: int
    connect_host: str  # address actually dialled (checked or overridden)
    connect_port: int


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({info[4][0] for info in infos})


def address_problem(address: str) -> str | None:
    """Why an address is not publicly routable (None if it is)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        for inner in (ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None):
            if inner is not None:
                problem = address_problem(str(inner))
                if problem:
                    return f"{problem} (wrapped in IPv6 {ip})"
    for attribute in (
        "is_loopback",
        "is_private",
        "is_link_local",
        "is_multicast",
        "is_reserved",
        "is_unspecified",
    ):
        if getattr(ip, attribute):
            return f"{ip} is {attribute[3:].replace('_', '-')}"
    if not ip.is_global:
        return f"{ip} is not globally routable"
    return None


def check_host_syntax(host: str) -> None:
    """Refuse IP spellings that only libc understands (they are how SSRF filters get bypassed)."""
    if not host:
        raise BlockedURL("the URL has no host")
    if _NUMERIC_HOST.match(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise BlockedURL(f"host {host!r} is an oddly encoded IP address; refused") from None


async def check_url(
    url: str,
    *,
    allow_hosts: list[str] | tuple[str, ...] = (),
    host_overrides: dict[str, str] | None = None,
    resolver: Resolver = system_resolver,
) -> Target:
    """The checked connection target for `url`, or BlockedURL."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise BlockedURL(f"only http and https URLs can be visited, not {scheme or 'a scheme-less URL'}")
    if parts.username or parts.password:
        raise BlockedURL("URLs with credentials are refused")
    try:
        host = (parts.hostname or "").rstrip(".").lower()
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:
        raise BlockedURL(f"malformed URL: {exc}") from None
    overrides = {k.lower(): v for k, v in (host_overrides or {}).items()}
    if host in overrides:
        connect_host, _, connect_port = overrides[host].rpartition(":")
        return Target(url, scheme, host, port, connect_host or overrides[host], int(connect_port or port))
    check_host_syntax(host)
    if host in {h.lower() for h in allow_hosts}:
        return Target(url, scheme, host, port, host, port)
    try:
        addresses = await resolver(host, port)
    except (OSError, UnicodeError) as exc:
        raise BlockedURL(f"cannot resolve {host!r}: {exc}") from None
    if not addresses:
        raise BlockedURL(f"{host!r} resolves to no address")
    for address in addresses:
        problem = address_problem(address)
        if problem:
            raise BlockedURL(f"refused {host!r}: {problem} (not a public address)")
    return Target(url, scheme, host, port, addresses[0], port)
