"""The outbound URL policy: taskgate never calls a private or loopback address unless allowed.

`check_url` validates a URL when a user saves it (a destination, a workflow HTTP step).
`guarded_client` re-checks at connection time, which is the check that counts: its network
backend resolves the host, refuses the connection if any address is disallowed and then
connects to exactly the addresses it checked, so a DNS answer that changes between the two
checks (DNS rebinding) cannot steer a request inside. TLS still verifies the certificate
against the host name, and connections are pooled per host name, as with any httpx client.

Error messages name the host, never the URL: a chat webhook URL is itself a credential.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Any

import httpcore
import httpx

from taskgate import __version__

IPAddress = IPv4Address | IPv6Address

MiB = 1024 * 1024
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
    _refuse_disallowed(host, addresses, policy)


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


def _refuse_disallowed(host: str, addresses: Iterable[IPAddress], policy: URLPolicy) -> None:
    for address in addresses:
        if not address_allowed(address, policy):
            kind = classify_address(address)
            where = f"{host!r} resolves to {address}" if host != str(address) else str(address)
            raise BlockedURLError(f"{where}, a {kind} address", host=host)


def _normalize_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


class _GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """Resolves, checks, then connects to the checked addresses, in resolver order."""

    def __init__(self, policy: URLPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        if self._policy.host_is_allowlisted(host):
            targets = [host]
        else:
            try:
                addresses = await resolve(host, port, timeout=timeout)
            except TimeoutError as exc:
                raise httpcore.ConnectTimeout(f"resolving {host!r} timed out") from exc
            except OSError as exc:
                raise httpcore.ConnectError(f"cannot resolve host {host!r}: {exc}") from exc
            _refuse_disallowed(host, addresses, self._policy)
            targets = [str(a) for a in addresses]

        last_error: httpcore.ConnectError | None = None
        for target in targets:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise httpcore.ConnectTimeout(f"connecting to {host!r} timed out")
            try:
                return await self._inner.connect_tcp(
                    target,
                    port,
                    timeout=remaining,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                last_error = exc
        assert last_error is not None
        raise last_error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise BlockedURLError("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


# Most specific first: the first match wins.
_HTTPCORE_ERRORS: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    """Raise httpcore's errors as httpx's, as httpx's own transport does."""
    try:
        yield
    except Exception as exc:
        for source, target in _HTTPCORE_ERRORS:
            if isinstance(exc, source):
                raise target(str(exc)) from exc
        raise


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None:
            await aclose()


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport whose every connection goes through the URL policy."""

    def __init__(
        self,
        policy: URLPolicy,
        *,
        ssl_context: ssl.SSLContext | None = None,
        limits: httpx.Limits | None = None,
    ) -> None:
        limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        self._policy = policy
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context or httpcore.default_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedNetworkBackend(policy),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in self._policy.allowed_schemes:
            raise BlockedURLError(f"scheme {url.scheme!r} is not allowed", host=url.host or None)
        if not url.raw_host:
            raise BlockedURLError("the URL has no host")
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            core_response = await self._pool.handle_async_request(core_request)
        assert isinstance(core_response.stream, AsyncIterable)
        return httpx.Response(
            status_code=core_response.status,
            headers=core_response.headers,
            stream=_ResponseStream(core_response.stream),
            extensions=core_response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


class GuardedClient(httpx.AsyncClient):
    """An `httpx.AsyncClient` bound to a URL policy; see `guarded_client`."""

    def __init__(
        self,
        policy: URLPolicy,
        *,
        timeout: float,
        max_response_bytes: int,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(
            transport=GuardedTransport(policy, ssl_context=ssl_context),
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,
            headers={"user-agent": f"taskgate/{__version__}", "accept-encoding": "identity"},
        )
        self.policy = policy
        self.total_timeout = timeout
        self.max_response_bytes = max_response_bytes


def guarded_client(
    policy: URLPolicy,
    *,
    timeout: float = 10.0,
    max_response_bytes: int = MiB,
    ssl_context: ssl.SSLContext | None = None,
) -> GuardedClient:
    """A client that refuses, at connection time, any target the policy does not allow.

    Redirects are not followed (callers treat a 3xx as a failure); a caller that forces
    `follow_redirects=True` still has every hop checked. Proxies and `.netrc` from the
    environment are ignored (`trust_env=False`): a proxy would make the address check moot.
    Responses are requested uncompressed so that `max_response_bytes` bounds memory.
    `BlockedURLError` propagates as is; everything else raises `httpx.HTTPError`.
    """
    return GuardedClient(
        policy, timeout=timeout, max_response_bytes=max_response_bytes, ssl_context=ssl_context
    )


@dataclass(frozen=True)
class LimitedResponse:
    status_code: int
    headers: dict[str, str]
    body: bytes
    truncated: bool
    elapsed_ms: int

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


async def fetch_limited(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    max_bytes: int | None = None,
    total_timeout: float | None = None,
    **kwargs: Any,
) -> LimitedResponse:
    """Send a request and read at most `max_bytes` of the response body.

    Limits default to the `GuardedClient`'s: `max_response_bytes`, and its `timeout` for the
    whole exchange (httpx's own timeouts apply per phase, so a server dripping bytes could
    otherwise hold a worker indefinitely). Exceeding the total raises `httpx.ReadTimeout`.
    """
    limit = max_bytes if max_bytes is not None else getattr(client, "max_response_bytes", MiB)
    deadline = (
        total_timeout if total_timeout is not None else getattr(client, "total_timeout", None)
    )
    started = time.perf_counter()
    body = bytearray()
    truncated = False
    try:
        async with asyncio.timeout(deadline):
            async with client.stream(method, url, **kwargs) as response:
                async for chunk in response.aiter_bytes():
                    room = limit - len(body)
                    if len(chunk) > room:
                        body += chunk[:room]
                        truncated = True
                        break
                    body += chunk
    except TimeoutError as exc:
        raise httpx.ReadTimeout(f"no complete response within {deadline} s") from exc
    return LimitedResponse(
        status_code=response.status_code,
        headers=dict(response.headers.items()),
        body=bytes(body),
        truncated=truncated,
        elapsed_ms=round((time.perf_counter() - started) * 1000),
    )
