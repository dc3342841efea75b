"""The staff web interface: server-rendered pages on the same services as the API."""

from __future__ import annotations

from pathlib import Path

from gateway.web.signin import SIGNIN_ROUTES

TEMPLATE_DIR = Path(__file__).parent / "templates"
WEB_ROUTES = [*SIGNIN_ROUTES]
