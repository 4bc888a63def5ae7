"""Per-principal rate limits (sliding window) with the headers of the API contract."""

from __future__ import annotations

import math
import re
import time

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskgate.errors import RateLimited, Unauthorized
from taskgate.http.auth import principal_from_scope
from taskgate.http.context import client_ip_var
from taskgate.http.middleware import send_error
from taskgate.identity.principal import Authenticator
from taskgate.settings import RateLimitSettings

_MODEL_PATHS = re.compile(r"^/v1/chat/|^/api/v1/sessions/[^/]+/messages$")
_EXEMPT = ("/health", "/readiness", "/metrics", "/docs", "/redoc", "/openapi.json")


class RateLimiter:
    """One limiter per process; the storage is shared through Redis when configured."""

    def __init__(self, settings: RateLimitSettings, redis_url: str | None) -> None:
        self.enabled = settings.enabled
        self.storage: Storage = (
            RedisStorage(_async_uri(redis_url), implementation="redispy")
            if redis_url
            else MemoryStorage()
        )
        self.limiter = SlidingWindowCounterRateLimiter(self.storage)
        self.standard = parse(settings.standard)
        self.model = parse(settings.model)
        self.login = parse(settings.login)
        self.anonymous = parse(settings.anonymous)

    async def hit(self, item: RateLimitItem, *identity: str) -> tuple[bool, int, int]:
        """(allowed, remaining, reset epoch seconds)."""
        allowed = await self.limiter.hit(item, *identity)
        stats = await self.limiter.get_window_stats(item, *identity)
        return allowed, max(0, stats.remaining), math.ceil(stats.reset_time)

    async def check_login(self, ip: str, username: str) -> None:
        allowed, _, reset = await self.hit(self.login, "login", ip, username.lower())
        if not allowed:
            retry = max(1, reset - int(time.time()))
            raise RateLimited(
                "Too many login attempts; try again later.", headers={"Retry-After": str(retry)}
            )


def _async_uri(url: str) -> str:
    return url if url.startswith("async+") else f"async+{url}"


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, limiter: RateLimiter, authenticator: Authenticator) -> None:
        self.app = app
        self.limiter = limiter
        self.authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not self.limiter.enabled or path.startswith(_EXEMPT):
            await self.app(scope, receive, send)
            return
        try:
            principal = await principal_from_scope(scope, self.authenticator)
        except Unauthorized:
            principal = None  # the route itself answers 401
        if principal is not None:
            item = self.limiter.model if _MODEL_PATHS.match(path) else self.limiter.standard
            identity: tuple[str, ...] = (
                "p",
                principal.key,
                "model" if item is self.limiter.model else "std",
            )
        else:
            item, identity = self.limiter.anonymous, ("ip", client_ip_var.get() or "unknown")
        allowed, remaining, reset = await self.limiter.hit(item, *identity)
        headers = [
            (b"x-ratelimit-limit", str(item.amount).encode()),
            (b"x-ratelimit-remaining", str(remaining).encode()),
            (b"x-ratelimit-reset", str(reset).encode()),
        ]
        if not allowed:
            retry = str(max(1, reset - int(time.time()))).encode()
            await send_error(
                send, 429, "RATE_LIMITED", "Too many requests.", [*headers, (b"retry-after", retry)]
            )
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)
