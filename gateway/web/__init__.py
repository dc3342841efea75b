"""The staff web interface: server-rendered pages on the same services as the API."""

from __future__ import annotations

from pathlib import Path

from litestar import get
from litestar.datastructures import CacheControlHeader
from litestar.openapi.plugins import JsonRenderPlugin, OpenAPIRenderPlugin, SwaggerRenderPlugin, YamlRenderPlugin
from litestar.response import File
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

from gateway.auth.guards import PUBLIC
from gateway.web.admin import ADMIN_ROUTES
from gateway.web.care_plan_pages import CARE_PLAN_ROUTES
from gateway.web.casework import CASEWORK_ROUTES
from gateway.web.dpo import DPO_ROUTES
from gateway.web.plan_pages import PLAN_ROUTES
from gateway.web.referral_pages import REFERRAL_ROUTES
from gateway.web.reports import REPORT_ROUTES
from gateway.web.signin import SIGNIN_ROUTES

TEMPLATE_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"

# The stylesheet is public and holds nothing personal; an hour of caching spares a request per page.
_STATIC = create_static_files_router(
    path="/static",
    directories=[STATIC_DIR],
    opt={PUBLIC: True},
    cache_control=CacheControlHeader(max_age=3600, public=True),
)


# Browsers ask for /favicon.ico whatever a page links; the pages link the SVG, and old browsers take the ICO.
@get("/favicon.ico", opt={PUBLIC: True}, include_in_schema=False, cache_control=CacheControlHeader(max_age=86400))
async def favicon() -> File:
    return File(STATIC_DIR / "favicon.ico", content_disposition_type="inline", media_type="image/x-icon")


# The API reference at /schema is Swagger UI 5.32.0, its dist files copied unchanged from the npm package
# swagger-ui-dist into static/swagger-ui/ with its licence and notice, so the page renders without reaching any other
# host (Litestar's default loads its viewers, their fonts and its favicon from CDNs). The description it shows is
# written into the page, so Swagger UI's online validator, which it calls only for a description loaded by URL, is
# never asked. The JSON and YAML documents stay beside it.
SWAGGER_UI = "/static/swagger-ui"


def schema_viewers() -> list[OpenAPIRenderPlugin]:
    """The renderers under /schema: Swagger UI at its root, the description itself as openapi.json and openapi.yaml."""
    return [
        SwaggerRenderPlugin(
            path="/",
            js_url=f"{SWAGGER_UI}/swagger-ui-bundle.js",
            css_url=f"{SWAGGER_UI}/swagger-ui.css",
            standalone_preset_js_url=f"{SWAGGER_UI}/swagger-ui-standalone-preset.js",
            favicon="<link rel='icon' href='/static/favicon.svg' type='image/svg+xml'>",
        ),
        JsonRenderPlugin(),
        YamlRenderPlugin(),
    ]


# Other areas of the interface add their route lists here (their pages use gateway/web/pages.py; see docs/web.md).
WEB_ROUTES: list[ControllerRouterHandler] = [
    *SIGNIN_ROUTES,
    *CASEWORK_ROUTES,
    *REFERRAL_ROUTES,
    *PLAN_ROUTES,
    *CARE_PLAN_ROUTES,
    *DPO_ROUTES,
    *ADMIN_ROUTES,
    *REPORT_ROUTES,
    _STATIC,
    favicon,
]
