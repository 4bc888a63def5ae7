"""The outbound URL policy: taskgate never calls a private or loopback address unless allowed.

`check_url` validates a URL when a user saves it (a destination, a workflow HTTP step).
`guarded_http.guarded_client` re-checks at connection time, which is the check that counts.

Error messages name the host, never the URL: a chat webhook URL is itself a credential.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

import httpx

from taskgate.settings import Settings

IPAddress = IPv4Address | IPv6Address

DEFAULT_RESOLVE_TIMEOUT = 5.0

# Instance metadata services (AWS/GCP/Azure/OCI, ECS task credentials, EKS pod identity,
# Alibaba): never reachable, whatever the policy allows.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "169.254.170.23",
        "100.100.100.200",
        "fd00:ec2::254",
        "fd00:ec2::23",
    )
)
_PRIVATE_NETWORKS = tuple(
    ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)
_THIS_NETWORK = ip_network("0.0.0.0/8")
_NAT64 = ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class URLPolicy:
    """Which outbound targets are allowed.

    `allow_private` admits RFC 1918, CGNAT (100.64/10), unique-local and link-local
    addresses; `allow_loopback` admits 127/8 and ::1. Metadata, unspecified, multicast,
    reserved and IPv4-mapped IPv6 addresses are refused regardless. A host named in
    `allowed_hosts` (exact, case-insensitive) skips the address checks entirely: it is an
    operator's explicit decision, for instance an internal service behind a private IP.
    """

    allow_private: bool = False
    allow_loopback: bool = False
    allowed_hosts: frozenset[str] = frozenset()
    allowed_schemes: tuple[str, ...] = ("http", "https")
    _normalized_hosts: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        hosts = frozenset(_normalize_host(h) for h in self.allowed_hosts)
        object.__setattr__(self, "_normalized_hosts", hosts)
        object.__setattr__(self, "allowed_schemes", tuple(s.lower() for s in self.allowed_schemes))

    def host_is_allowlisted(self, host: str) -> bool:
        return _normalize_host(host) in self._normalized_hosts


class BlockedURLError(Exception):
    """The URL is not allowed by the outbound URL policy (or cannot be checked)."""

    def __init__(self, reason: str, *, host: str | None = None) -> None:
        self.reason = reason
        self.host = host
        super().__init__(f"outbound URL refused: {reason}")


def url_policy(settings: Settings) -> URLPolicy:
    """The configured policy for every outbound request taskgate makes."""
    return URLPolicy(
        allow_private=settings.outbound.allow_private,
        allow_loopback=settings.outbound.allow_loopback,
    )


def classify_address(address: IPAddress) -> str:
    """The class of an address: `public`, `loopback`, `private`, `link-local`, `metadata`,
    `unspecified`, `multicast`, `reserved` or `ipv4-mapped`."""
    if isinstance(address, IPv6Address):
        if address.ipv4_mapped is not None:
            return "ipv4-mapped"
        embedded = address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return classify_address(embedded)
    if address in METADATA_ADDRESSES:
        return "metadata"
    if address.is_unspecified or address in _THIS_NETWORK:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_multicast:
        return "multicast"
    if address.is_link_local:
        return "link-local"
    if any(address in network for network in _PRIVATE_NETWORKS):
        return "private"
    if address.is_global:
        return "public"
    return "reserved"


def address_allowed(address: IPAddress, policy: URLPolicy) -> bool:
    kind = classify_address(address)
    if kind == "public":
        return True
    if kind == "loopback":
        return policy.allow_loopback
    if kind in ("private", "link-local"):
        return policy.allow_private
    return False


async def check_url(
    url: str, policy: URLPolicy, *, timeout: float = DEFAULT_RESOLVE_TIMEOUT
) -> None:
    """Raise `BlockedURLError` unless `url` may be called under `policy`.

    Every address the host resolves to must be allowed, not just the first: the client may
    connect to any of them. A host that does not resolve is refused too.
    """
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise BlockedURLError("not a valid URL") from exc
    scheme = parsed.scheme.lower()
    if scheme not in policy.allowed_schemes:
        allowed = ", ".join(policy.allowed_schemes)
        raise BlockedURLError(f"scheme {scheme or '(none)'!r} is not allowed (allowed: {allowed})")
    host = parsed.raw_host.decode("ascii")
    if not host:
        raise BlockedURLError("the URL has no host")
    if policy.host_is_allowlisted(host):
        return
    port = parsed.port or (443 if scheme == "https" else 80)
    try:
        addresses = await resolve(host, port, timeout=timeout)
    except TimeoutError as exc:
        raise BlockedURLError(f"resolving {host!r} timed out", host=host) from exc
    except OSError as exc:
        raise BlockedURLError(f"cannot resolve host {host!r}", host=host) from exc
    refuse_disallowed(host, addresses, policy)


async def resolve(host: str, port: int, *, timeout: float | None) -> list[IPAddress]:
    """All addresses `host` resolves to, in resolver order, without duplicates."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canonname, sockaddr in infos:
        address = ip_address(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise OSError(f"no addresses for {host!r}")
    return addresses


def refuse_disallowed(host: str, addresses: Iterable[IPAddress], policy: URLPolicy) -> None:
    """Raise `BlockedURLError` for the first of `host`'s addresses that `policy` refuses."""
    for address in addresses:
        if not address_allowed(address, policy):
            kind = classify_address(address)
            where = f"{host!r} resolves to {address}" if host != str(address) else str(address)
            raise BlockedURLError(f"{where}, a {kind} address", host=host)


def _normalize_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()
