"""The staff web interface: server-rendered pages on the same services as the API."""

from __future__ import annotations

from pathlib import Path

from litestar.datastructures import CacheControlHeader
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

from gateway.auth.guards import PUBLIC
from gateway.web.admin import ADMIN_ROUTES
from gateway.web.casework import CASEWORK_ROUTES
from gateway.web.dpo import DPO_ROUTES
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

# Other areas of the interface add their route lists here (their pages use gateway/web/pages.py; see docs/web.md).
WEB_ROUTES: list[ControllerRouterHandler] = [
    *SIGNIN_ROUTES,
    *CASEWORK_ROUTES,
    *REFERRAL_ROUTES,
    *DPO_ROUTES,
    *ADMIN_ROUTES,
    *REPORT_ROUTES,
    _STATIC,
]
