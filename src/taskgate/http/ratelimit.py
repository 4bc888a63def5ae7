"""Per-principal rate limits (sliding window counter) with the headers of the API contract.

Each budget ``N/period`` counts hits in fixed windows of one period and weighs the previous
window by how much of it still overlaps the sliding window ending now, so a burst at a window
boundary cannot get 2N through. Counts live in process memory, or in Redis when configured so
that every replica spends one budget (one round trip per request, atomically in a script).
"""

from __future__ import annotations

import math
import re
import time
import uuid
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskgate.auth.principal import Authenticator, Principal
from taskgate.errors import NotFound, RateLimited, Unauthorized
from taskgate.http.auth import principal_from_scope
from taskgate.http.context import client_ip_var
from taskgate.http.middleware import add_response_headers, send_error, with_headers
from taskgate.http.projects import ProjectSelector, request_principal, requested_project
from taskgate.settings import RateLimitSettings

log = structlog.get_logger()
_MODEL_PATHS = re.compile(r"^/v1/chat/|^/api/v1/sessions/[^/]+/messages$")
_EXEMPT = ("/health", "/readiness", "/metrics", "/docs", "/redoc", "/openapi.json")
_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_BUDGET = re.compile(r"^\s*(\d+)\s*(?:/|per)\s*(\d+)?\s*(second|minute|hour|day)s?\s*$")


@dataclass(frozen=True)
class Budget:
    amount: int
    seconds: int

    @classmethod
    def parse(cls, text: str, name: str) -> Budget:
        match = _BUDGET.match(text.lower())
        if match is None or int(match.group(1)) < 1:
            raise ValueError(f"{name}: {text!r} is not a budget like '120/minute'")
        multiple = int(match.group(2) or 1)
        return cls(int(match.group(1)), multiple * _PERIODS[match.group(3)])


class Decision(NamedTuple):
    """A tuple rather than a frozen dataclass: one is made per request, at a third of the cost."""

    allowed: bool
    limit: int
    remaining: int
    reset: int  # epoch seconds when the current window ends
    retry_after: int  # seconds until one more request would be allowed (0 when allowed)

    def headers(self) -> list[tuple[bytes, bytes]]:
        headers = [
            (b"x-ratelimit-limit", str(self.limit).encode()),
            (b"x-ratelimit-remaining", str(self.remaining).encode()),
            (b"x-ratelimit-reset", str(self.reset).encode()),
        ]
        if not self.allowed:
            headers.append((b"retry-after", str(self.retry_after).encode()))
        return headers


def decide(budget: Budget, now: float, previous: int, current: int, counted: bool) -> Decision:
    """The verdict from the two window counts; ``current`` includes this hit when counted."""
    window = budget.seconds
    start = math.floor(now / window) * window
    overlap = 1 - (now - start) / window
    used = previous * overlap + current
    reset = int(start + window)
    if counted:
        remaining = max(0, math.floor(budget.amount - used))
        return Decision(True, budget.amount, remaining, reset, 0)
    # When will previous * overlap' + current' + 1 <= amount hold again?
    if current + 1 <= budget.amount and previous > 0:
        wait = start + window * (1 - (budget.amount - 1 - current) / previous) - now
    else:
        # Only once the current window is the previous one, weighed down enough.
        wait = reset - now + window * (1 - (budget.amount - 1) / max(current, 1))
    return Decision(False, budget.amount, 0, reset, max(1, math.ceil(wait)))


class WindowStore(Protocol):
    async def hit(self, key: str, budget: Budget, now: float) -> tuple[int, int, bool]:
        """Count a hit if the budget allows: (previous window, current window, counted)."""
        ...

    async def close(self) -> None: ...


class MemoryStore:
    """Counts for this process only."""

    _PRUNE_AT = 50_000

    def __init__(self) -> None:
        # key -> (window index, previous count, current count, when both windows are over)
        self._counts: dict[str, tuple[int, int, int, float]] = {}

    async def hit(self, key: str, budget: Budget, now: float) -> tuple[int, int, bool]:
        index = int(now // budget.seconds)
        stored_index, previous, current, _ = self._counts.get(key, (index, 0, 0, 0.0))
        if stored_index == index - 1:
            previous, current = current, 0
        elif stored_index != index:
            previous, current = 0, 0
        overlap = 1 - (now - index * budget.seconds) / budget.seconds
        counted = previous * overlap + current + 1 <= budget.amount
        if counted:
            current += 1
        if len(self._counts) >= self._PRUNE_AT:
            self._counts = {k: v for k, v in self._counts.items() if v[3] > now}
        self._counts[key] = (index, previous, current, (index + 2) * budget.seconds)
        return previous, current, counted

    async def close(self) -> None:
        self._counts.clear()


_HIT_SCRIPT = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local previous = tonumber(redis.call('GET', KEYS[2]) or '0')
if previous * tonumber(ARGV[2]) + current + 1 > tonumber(ARGV[1]) then
  return {previous, current, 0}
end
current = redis.call('INCR', KEYS[1])
if current == 1 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
return {previous, current, 1}
"""


class RedisStore:
    """Counts shared by every process using the same Redis database."""

    def __init__(self, url: str) -> None:
        self.redis = Redis.from_url(url)
        self.script = self.redis.register_script(_HIT_SCRIPT)

    async def hit(self, key: str, budget: Budget, now: float) -> tuple[int, int, bool]:
        index = int(now // budget.seconds)
        overlap = 1 - (now - index * budget.seconds) / budget.seconds
        keys = [f"taskgate:rl:{key}:{index}", f"taskgate:rl:{key}:{index - 1}"]
        previous, current, counted = await self.script(
            keys=keys, args=[budget.amount, repr(overlap), 2 * budget.seconds]
        )
        return int(previous), int(current), bool(counted)

    async def close(self) -> None:
        await self.redis.aclose()


class RateLimiter:
    """One limiter per process; the counts are shared through Redis when configured."""

    def __init__(self, settings: RateLimitSettings, redis_url: str | None) -> None:
        self.enabled = settings.enabled
        self.store: WindowStore = RedisStore(redis_url) if redis_url else MemoryStore()
        self.standard = Budget.parse(settings.standard, "rate_limit.standard")
        self.model = Budget.parse(settings.model, "rate_limit.model")
        self.login = Budget.parse(settings.login, "rate_limit.login")
        self.anonymous = Budget.parse(settings.anonymous, "rate_limit.anonymous")
        self.project = Budget.parse(settings.project, "rate_limit.project")
        self._store_failed_at = -math.inf

    async def hit(self, budget: Budget, key: str) -> Decision:
        now = time.time()
        try:
            previous, current, counted = await self.store.hit(key, budget, now)
        except (RedisError, OSError):
            # Fail open: an unreachable Redis must not take the API down with it.
            if time.monotonic() - self._store_failed_at > 10:
                self._store_failed_at = time.monotonic()
                log.warning("rate_limit_store_unavailable", exc_info=True)
            return Decision(True, budget.amount, budget.amount, int(now) + budget.seconds, 0)
        return decide(budget, now, previous, current, counted)

    async def check_login(self, ip: str, username: str) -> None:
        decision = await self.hit(self.login, f"login:{ip}:{username.lower()}")
        if not decision.allowed:
            # The login budget's headers: they replace the anonymous budget's on this 429.
            headers = {k.decode(): v.decode() for k, v in decision.headers()}
            raise RateLimited("Too many login attempts; try again later.", headers=headers)

    async def close(self) -> None:
        await self.store.close()


class RateLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        limiter: RateLimiter,
        authenticator: Authenticator,
        projects: ProjectSelector,
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.authenticator = authenticator
        self.projects = projects

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not self.limiter.enabled or path.startswith(_EXEMPT):
            await self.app(scope, receive, send)
            return
        try:
            principal = await principal_from_scope(scope, self.authenticator)
        except Unauthorized:
            principal = None
            scope.setdefault("state", {})["principal_error"] = True
            scope["state"].pop("principal", None)
        if principal is not None:
            model = _MODEL_PATHS.match(path) is not None
            budget = self.limiter.model if model else self.limiter.standard
            key = f"p:{principal.key}:{'model' if model else 'std'}"
        else:
            budget, key = self.limiter.anonymous, f"ip:{client_ip_var.get() or 'unknown'}"
        decision = await self.limiter.hit(budget, key)
        if principal is not None and decision.allowed:
            project_id = await self._project_of(scope, principal)
            if project_id is not None:
                # The headers tell the principal's own budget, unless the project's is spent.
                shared = await self.limiter.hit(self.limiter.project, f"project:{project_id}")
                if not shared.allowed:
                    decision = shared
        headers = decision.headers()
        if not decision.allowed:
            await send_error(send, 429, "RATE_LIMITED", "Too many requests.", headers)
            return
        if add_response_headers(scope, headers):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = with_headers(message, headers)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _project_of(self, scope: Scope, principal: Principal) -> uuid.UUID | None:
        """The project the request works in (its budget is shared by all its principals);
        None when it names one it may not see, which the route answers with a 404."""
        if requested_project(scope) is None:
            return principal.project_id
        try:
            selected = await request_principal(scope, principal, self.projects)
        except NotFound:
            return None
        scope["state"]["request_principal"] = selected
        return selected.project_id
