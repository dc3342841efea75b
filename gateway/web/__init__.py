"""The staff web interface: server-rendered pages on the same services as the API."""

from __future__ import annotations

from pathlib import Path

from litestar.datastructures import CacheControlHeader
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

from gateway.auth.guards import PUBLIC
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

WEB_ROUTES: list[ControllerRouterHandler] = [*SIGNIN_ROUTES, _STATIC]
