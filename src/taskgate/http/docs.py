"""The API reference pages (/docs, /redoc) with their assets served by the gateway itself.

FastAPI's own pages load Swagger UI and ReDoc from a CDN and fonts from Google, so they are
blank on an offline or air-gapped install; the ``fastapi-offline`` package ships the same
distribution files, and they are served here under ``/docs/assets/``.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

DOCS_PATH = "/docs"
REDOC_PATH = "/redoc"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"
ASSETS_PATH = "/docs/assets"
OPENAPI_PATH = "/openapi.json"
# Swagger UI would otherwise send the document to validator.swagger.io for a badge.
_SWAGGER_PARAMETERS = {"validatorUrl": None}


def docs_routes(title: str) -> list[BaseRoute]:
    """The pages and their static assets, as routes to append to the app's."""
    router = APIRouter(include_in_schema=False)

    @router.get(DOCS_PATH)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{OPENAPI_PATH}",
            title=f"{title} - Swagger UI",
            oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT_PATH}",
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            swagger_ui_parameters=_SWAGGER_PARAMETERS,
        )

    @router.get(OAUTH2_REDIRECT_PATH)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @router.get(REDOC_PATH)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{OPENAPI_PATH}",
            title=f"{title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            with_google_fonts=False,
        )

    assets = StaticFiles(directory=str(files("fastapi_offline") / "static"))
    return [*router.routes, Mount(ASSETS_PATH, app=assets, name="docs-assets")]
