"""Pure ASGI middleware: tracing, metrics, body limits, content types, security headers."""

from __future__ import annotations

import json
import random
import re
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from itertools import accumulate

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskgate.errors import error_body
from taskgate.http.context import client_ip_var, trace_id_var
from taskgate.http.errors import failure_error

log = structlog.get_logger("taskgate.access")

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_TRACE_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")
_JSON_TYPES = ("application/json", "application/merge-patch+json")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _tracing_headers(scope: Scope) -> tuple[bytes | None, bytes | None, bytes | None]:
    """X-Trace-ID, traceparent and X-Forwarded-For in one pass over the headers."""
    given = parent = forwarded = None
    for key, value in scope["headers"]:
        if key == b"x-trace-id":
            given = value
        elif key == b"traceparent":
            parent = value
        elif key == b"x-forwarded-for":
            forwarded = value
    return given, parent, forwarded


def incoming_trace_id(given: bytes | None, parent: bytes | None) -> str:
    if given and _TRACE_ID.match(text := given.decode("latin-1")):
        return text
    if parent and (match := _TRACEPARENT.match(parent.decode("latin-1").strip().lower())):
        return match.group(1)
    # Unique, not secret: the cheap generator is enough and costs a fraction of urandom.
    return f"{random.getrandbits(128):032x}"


def client_ip(scope: Scope, forwarded: bytes | None) -> str:
    """The first X-Forwarded-For address (pass it only when the proxy is trusted), else the
    peer's."""
    if forwarded:
        return forwarded.decode("latin-1").split(",")[0].strip()
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


async def send_error(
    send: Send, status: int, code: str, message: str, extra: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    body = json.dumps(error_body(code, message, trace_id_var.get())).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*headers, *extra]})
    await send({"type": "http.response.body", "body": body})


_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_BUCKET_LABELS = [*(repr(float(b)) for b in _LATENCY_BUCKETS), "+Inf"]  # as Prometheus writes them


class Metrics:
    """Requests and their latency per route template, for Prometheus.

    Requests add to plain counts that the registry reads when scraped: prometheus_client's
    own metric objects take a lock per update, which made them the dearest part of a
    request's bookkeeping.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._requests: dict[tuple[str, str, int], int] = {}
        # Per (method, route): a count per latency bucket (the last for +Inf), then the sum.
        self._latencies: dict[tuple[str, str], list[float]] = {}
        self.registry.register(self)

    def observe(self, method: str, route: str, status: int, elapsed: float) -> None:
        key = (method, route, status)
        self._requests[key] = self._requests.get(key, 0) + 1
        tally = self._latencies.get(key[:2])
        if tally is None:
            tally = self._latencies[key[:2]] = [0.0] * (len(_LATENCY_BUCKETS) + 2)
        tally[bisect_left(_LATENCY_BUCKETS, elapsed)] += 1
        tally[-1] += elapsed

    def describe(self) -> list[Metric]:
        return list(self.collect())

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "taskgate_http_requests",
            "HTTP requests by route template, method and status.",
            labels=["method", "route", "status"],
        )
        for (method, route, status), count in list(self._requests.items()):
            requests.add_metric([method, route, str(status)], count)
        yield requests
        latency = HistogramMetricFamily(
            "taskgate_http_request_duration_seconds",
            "HTTP request latency by route template.",
            labels=["method", "route"],
        )
        for (method, route), tally in list(self._latencies.items()):
            cumulative = accumulate(tally[:-1])
            latency.add_metric(
                [method, route], list(zip(_BUCKET_LABELS, cumulative, strict=True)), tally[-1]
            )
        yield latency


SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
# Headers that middleware inside TraceMiddleware wants on the response, added by its one send
# wrapper: a wrapper per middleware would cost every request a closure and an await per message.
_RESPONSE_HEADERS = "taskgate.response_headers"


def add_response_headers(scope: Scope, headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Have TraceMiddleware add ``headers`` to the response (also to one it answers 500 in
    place of the app); False when it is not in the stack and the caller must add them."""
    extra: list[tuple[bytes, bytes]] | None = scope.get(_RESPONSE_HEADERS)
    if extra is None:
        return False
    extra.extend(headers)
    return True


def with_headers(start: Message, extra: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The headers of a response start with ``extra`` added.

    A 429 that names its own budget (the login limiter's) keeps it: the rate limit headers
    the middleware computed for the request's general budget are left out of it."""
    headers = start.get("headers", ())
    if start["status"] == 429 and any(name == b"x-ratelimit-limit" for name, _ in headers):
        extra = [header for header in extra if not header[0].startswith(b"x-ratelimit-")]
    return [*headers, *extra]


class TraceMiddleware:
    """Trace id in and out, security headers, Prometheus counters per route template, and a
    log line for failed or slow requests (every request at DEBUG)."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        *,
        trust_forwarded: bool,
        access_log: bool,
        slow_seconds: float = 1.0,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.trust_forwarded = trust_forwarded
        self.access_log = access_log
        self.slow_seconds = slow_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given, parent, forwarded = _tracing_headers(scope)
        trace_id = incoming_trace_id(given, parent)
        # Logs read the trace id from here (taskgate.logs.add_trace_id).
        trace_token = trace_id_var.set(trace_id)
        ip_token = client_ip_var.set(client_ip(scope, forwarded if self.trust_forwarded else None))
        extra = [(b"x-trace-id", trace_id.encode()), *SECURITY_HEADERS]
        scope[_RESPONSE_HEADERS] = extra
        started = time.perf_counter()
        status = 500
        started_response = False

        async def send_with_trace(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status = message["status"]
                started_response = True
                message["headers"] = with_headers(message, extra)
            await send(message)

        try:
            await self.app(scope, receive, send_with_trace)
        except Exception as exc:
            if scope["type"] != "http" or started_response:
                log.exception("unhandled_error", path=scope.get("path"))
                raise
            error = failure_error(exc, scope.get("path"))
            status = error.status
            headers = [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
            await send_error(send, status, error.code, error.message, [*headers, *extra])
        finally:
            if scope["type"] == "http":
                self._observe(scope, status, time.perf_counter() - started)
            client_ip_var.reset(ip_token)
            trace_id_var.reset(trace_token)

    def _observe(self, scope: Scope, status: int, elapsed: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        method = scope["method"]
        self.metrics.observe(method, template, status, elapsed)
        # Every request is counted in the metrics; a log line per request would cost more
        # than the rest of a cached request, so only failures and slow ones get one unless
        # the access log is asked for (log level DEBUG).
        if status >= 500 or elapsed >= self.slow_seconds:
            log.warning("request", method=method, path=template, status=status, ms=_ms(elapsed))
        elif self.access_log and template not in ("/health", "/metrics"):
            log.debug("request", method=method, path=template, status=status, ms=_ms(elapsed))


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


class BodyGuardMiddleware:
    """Refuse bodies over the limit while they stream in, and bodies that are not JSON."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, raw_prefixes: tuple[str, ...]) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.raw_prefixes = raw_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await send_error(send, 413, "PAYLOAD_TOO_LARGE", self._too_large())
            return
        if not self._content_type_ok(scope, length):
            await send_error(send, 415, "UNSUPPORTED_MEDIA_TYPE", "Send application/json.")
            return
        received = 0
        too_large = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Stop reading: the app sees a disconnect and we answer 413 ourselves.
                    too_large = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not too_large:
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not too_large:
                raise
        if too_large:
            await send_error(send, 413, "PAYLOAD_TOO_LARGE", self._too_large())

    def _too_large(self) -> str:
        return f"Request body is larger than {self.max_bytes} bytes."

    def _content_type_ok(self, scope: Scope, length: str | None) -> bool:
        path: str = scope["path"]
        if not path.startswith(("/api/", "/v1/")) or path.startswith(self.raw_prefixes):
            return True
        content_type = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
        if not content_type:
            # An empty body (e.g. POST /cancel) needs no type.
            return length in (None, "0") and _header(scope, b"transfer-encoding") is None
        return content_type in _JSON_TYPES or content_type.endswith("+json")
