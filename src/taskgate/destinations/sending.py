"""One delivery request: build it for the destination, send it through the URL policy."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import httpx

from taskgate.models import Destination
from taskgate.outbound.adapters import (
    DestinationConfigError,
    DestinationType,
    OutboundRequest,
    build_delivery,
)
from taskgate.outbound.guarded_http import GuardedClient, fetch_limited
from taskgate.outbound.ssrf import BlockedURLError

EXCERPT_BYTES = 1024


@dataclass(frozen=True)
class SendOutcome:
    success: bool
    status_code: int | None
    latency_ms: int | None
    response_excerpt: str | None
    error: str | None
    # Nothing a retry could change (the destination's own configuration is unusable).
    permanent: bool = False


def prepare(
    destination: Destination, secret: str | None, document: Mapping[str, Any]
) -> OutboundRequest:
    """Raises `DestinationConfigError`."""
    return build_delivery(
        cast(DestinationType, destination.destination_type),
        destination.destination_config,
        secret,
        document,
        now=int(time.time()),
    )


async def send(
    client: GuardedClient,
    destination: Destination,
    secret: str | None,
    document: Mapping[str, Any],
    *,
    timeout: float,
) -> SendOutcome:
    try:
        request = prepare(destination, secret, document)
    except DestinationConfigError as exc:
        return SendOutcome(False, None, None, None, f"invalid destination: {exc}", permanent=True)
    started = time.perf_counter()
    try:
        response = await fetch_limited(
            client,
            request.method,
            request.url,
            headers=request.headers,
            content=request.body,
            max_bytes=EXCERPT_BYTES,
            total_timeout=timeout,
        )
    except BlockedURLError as exc:
        # Refused at connection time: the host now resolves somewhere the policy forbids.
        return SendOutcome(False, None, _elapsed(started), None, str(exc))
    except httpx.TimeoutException as exc:
        error = _scrub(f"timed out: {exc}", request.url)
        return SendOutcome(False, None, _elapsed(started), None, error)
    except httpx.HTTPError as exc:
        error = _scrub(f"{type(exc).__name__}: {exc}", request.url)
        return SendOutcome(False, None, _elapsed(started), None, error)
    excerpt = response.text or None
    if response.is_success:
        return SendOutcome(True, response.status_code, response.elapsed_ms, excerpt, None)
    if 300 <= response.status_code < 400:
        error = f"HTTP {response.status_code}: redirects are not followed"
    else:
        error = f"HTTP {response.status_code}"
    return SendOutcome(False, response.status_code, response.elapsed_ms, excerpt, error)


def _elapsed(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


def _scrub(message: str, url: str) -> str:
    """Never let a URL (a chat webhook URL is a credential) into a stored error."""
    if url in message:
        message = message.replace(url, httpx.URL(url).host or "the destination")
    return message[:1000]
