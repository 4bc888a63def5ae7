"""An HTTP client that enforces the outbound URL policy when it connects.

Its network backend resolves the host, refuses the connection if any address is disallowed
and then connects to exactly the addresses it checked, so a DNS answer that changes between
`ssrf.check_url` and the request (DNS rebinding) cannot steer a request inside. TLS still
verifies the certificate against the host name, and connections are pooled per host name, as
with any httpx client.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from taskgate import __version__
from taskgate.outbound.ssrf import BlockedURLError, URLPolicy, refuse_disallowed, resolve

MiB = 1024 * 1024


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
            refuse_disallowed(host, addresses, self._policy)
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
