"""The ASGI application: built per settings, resources opened in the lifespan."""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from taskgate import __version__
from taskgate.api import routers, stream_subjects
from taskgate.audit.service import record
from taskgate.auth.credentials import AccessTokens
from taskgate.auth.principal import Authenticator
from taskgate.db.engine import create_engine
from taskgate.db.session import Database
from taskgate.events.bus import EventBus, transport_for
from taskgate.governance.changes import GovernanceWatch
from taskgate.governance.grants import load_grants
from taskgate.governance.selection import ProjectDirectory
from taskgate.http.direct_route import DirectRoute
from taskgate.http.docs import OPENAPI_PATH, docs_routes
from taskgate.http.errors import install_error_handlers
from taskgate.http.idempotency import IdempotencyMiddleware
from taskgate.http.middleware import (
    BodyGuardMiddleware,
    Metrics,
    TraceMiddleware,
)
from taskgate.http.ratelimit import RateLimiter, RateLimitMiddleware
from taskgate.identity import stream_tickets
from taskgate.jobs import approval_waiters
from taskgate.logs import configure_logging
from taskgate.master_secret import master_secret
from taskgate.openapi import install_openapi
from taskgate.ops.endpoints import router as ops_router
from taskgate.ops.housekeeping import Housekeeping
from taskgate.ops.lifecycle import Component, Components
from taskgate.runtime.services import RuntimeServices
from taskgate.settings import Settings, get_settings
from taskgate.tasks.intake import TaskIntake

log = structlog.get_logger()
# Inbound webhooks are verified over their raw body, whatever its type.
RAW_BODY_PREFIXES = ("/api/v1/webhooks/",)


class _LateBound:
    """Middleware built before the lifespan opens the database reach it through here."""

    def __init__(self) -> None:
        self.db: Database | None = None
        self.authenticator: Authenticator | None = None


def create_app(
    settings: Settings | None = None,
    components: list[Component] | None = None,
    services: RuntimeServices | None = None,
) -> FastAPI:
    """The app for ``settings``, running ``components`` (a worker, the scheduler…) in its
    lifespan. ``services``: the runtime services its API and embedded worker share, e.g. with
    a model provider or sandbox of a test's own; by default made from ``settings``."""
    settings = settings or get_settings()
    configure_logging(settings)
    secret = master_secret(settings)
    engine = create_engine(settings)
    db = Database(engine)
    tokens = AccessTokens(secret, settings.auth.access_token_ttl_seconds)
    authenticator = Authenticator(
        db, tokens, settings.auth.principal_cache_seconds, load_grants=load_grants
    )
    limiter = RateLimiter(settings.rate_limit, settings.redis_url)
    metrics = Metrics()
    housekeeping = Housekeeping(db, authenticator)
    bus = EventBus(settings, db)
    services = services if services is not None else RuntimeServices(settings)
    projects = ProjectDirectory(db, settings.auth.principal_cache_seconds)

    def forget_grants() -> None:
        authenticator.invalidate_all()
        projects.invalidate()

    announcer = transport_for(
        settings, secrets.token_hex(6), f"{settings.streams.channel}_governance"
    )
    watch = GovernanceWatch(settings, db, forget_grants, announcer)
    parts = Components(db, [housekeeping, bus, watch, *(components or [])])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            stack.push_async_callback(db.dispose)
            stack.push_async_callback(authenticator.close)
            stack.push_async_callback(limiter.close)
            # After the parts that use them have stopped (it closes only what it opened).
            stack.push_async_callback(services.aclose)
            await parts.start(app)
            stack.push_async_callback(parts.stop)
            yield

    app = FastAPI(
        title="taskgate",
        version=__version__,
        description="Self-hosted orchestrator: tasks, sandboxed scripts, AI agents, workflows, "
        "schedules and live events behind one API.",
        lifespan=lifespan,
        openapi_url=OPENAPI_PATH,
        # Our own /docs and /redoc (taskgate/http/docs.py) serve their assets offline.
        docs_url=None,
        redoc_url=None,
        # Tracing and metrics are ours (X-Trace-ID, /metrics); FastAPI's OpenTelemetry hooks
        # would only add per-request provider look-ups.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.settings = settings
    app.state.db = db
    # Group commit pays off where commits are round trips; SQLite has one writer anyway.
    app.state.task_intake = TaskIntake(db) if db.dialect == "postgresql" else None
    app.state.bus = bus
    app.state.services = services
    # What resumes after an approval's decision, and where streams find their subjects: the
    # features' registrations (jobs.py, api.py).
    app.state.approval_waiters = approval_waiters()
    app.state.stream_subjects = stream_subjects(db)
    app.state.tokens = tokens
    app.state.authenticator = authenticator
    app.state.redeem_stream_ticket = functools.partial(stream_tickets.redeem, db, authenticator)
    # Authorization denials (taskgate.governance.access), audited after the request's rollback.
    app.state.record_denial = lambda values: db.in_background(lambda: record(db, values))
    app.state.projects = projects
    app.state.limiter = limiter
    app.state.metrics = metrics
    app.state.housekeeping = housekeeping
    app.state.components = parts
    app.state.cursor_key = hmac.new(secret.encode(), b"cursor", hashlib.sha256).digest()
    app.state.capabilities = _capabilities(settings)
    install_error_handlers(app)
    install_openapi(app)
    for router in routers():
        # The routes are taken as they are (their paths and tags are set on the router)
        # rather than through include_router, whose per-request matching costs ~3 us more
        # per route tried before the right one: a third of a cached request with 100 routes.
        app.router.routes.extend(router.routes)
    documentation = docs_routes(app.title)
    app.router.routes.extend(documentation)
    # The documentation routes and the operations routes (probes and scrapes, a few a minute)
    # go last: every API request would otherwise try them before its own, at about a
    # microsecond each.
    last_paths = {app.openapi_url} | {getattr(r, "path", None) for r in documentation}
    last_paths |= {getattr(r, "path", None) for r in ops_router.routes}
    last = [r for r in app.router.routes if getattr(r, "path", None) in last_paths]
    # The hottest endpoints (DirectRoutes, each with a literal path) are tried first.
    first = [r for r in app.router.routes if isinstance(r, DirectRoute)]
    middle = [r for r in app.router.routes if r not in last and r not in first]
    app.router.routes[:] = first + middle + last

    app.add_middleware(
        IdempotencyMiddleware,
        db=db,
        authenticator=authenticator,
        ttl_seconds=settings.http.idempotency_ttl_seconds,
    )
    app.add_middleware(
        RateLimitMiddleware, limiter=limiter, authenticator=authenticator, projects=projects
    )
    app.add_middleware(
        BodyGuardMiddleware, max_bytes=settings.http.max_body_bytes, raw_prefixes=RAW_BODY_PREFIXES
    )
    if settings.http.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.http.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Trace-ID", "ETag", "Location", "X-Session-ID", "Retry-After"],
        )
    app.add_middleware(
        TraceMiddleware,
        metrics=metrics,
        trust_forwarded=settings.http.trust_forwarded_for,
        access_log=settings.log_level.upper() == "DEBUG",
    )
    return app


def _capabilities(settings: Settings) -> dict[str, Any]:
    return {
        "database": "sqlite" if settings.is_sqlite else "postgresql",
        "redis": settings.redis_url is not None,
        "rate_limits": settings.rate_limit.model_dump() if settings.rate_limit.enabled else None,
        "limits": {"max_body_bytes": settings.http.max_body_bytes, "page_size_max": 100},
    }
