"""Liveness, readiness, Prometheus metrics and the capability report."""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from taskgate import __version__
from taskgate.db.session import Database
from taskgate.errors import ServiceUnavailable, Unauthorized
from taskgate.http.app_state import AppSettings
from taskgate.http.auth import CurrentPrincipal
from taskgate.openapi import errors
from taskgate.ops.lifecycle import not_ready_reason
from taskgate.settings import HTTPSettings

router = APIRouter(tags=["operations"])


@router.get("/health", summary="Liveness")
async def health() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


@router.get("/readiness", summary="Readiness", responses=errors(503))
async def readiness(request: Request) -> dict[str, Any]:
    db: Database = request.app.state.db
    reason = await not_ready_reason(db)
    if reason is not None:
        raise ServiceUnavailable(reason)
    if not request.app.state.components.running:
        raise ServiceUnavailable("Starting up.")
    return {"status": "ready", "database": db.dialect}


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics(request: Request, settings: AppSettings) -> Response:
    _check_scrape(settings.http, request.headers.get("authorization"))
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )


def _check_scrape(http: HTTPSettings, authorization: str | None) -> None:
    """Raise ``Unauthorized`` unless the scrape may read the metrics (routes, traffic and error
    rates are worth hiding from the internet)."""
    if http.metrics_public:
        return
    if http.metrics_token is None:
        raise Unauthorized(
            "Metrics are closed: set TASKGATE_HTTP__METRICS_TOKEN and scrape with it."
        )
    scheme, _, given = (authorization or "").partition(" ")
    expected = http.metrics_token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        raise Unauthorized("Send the metrics token as a bearer token.")


@router.get("/api/v1/capabilities", summary="Enabled services and features", responses=errors(401))
async def capabilities(request: Request, principal: CurrentPrincipal) -> dict[str, Any]:
    report: dict[str, Any] = dict(request.app.state.capabilities)
    report["version"] = __version__
    return report
