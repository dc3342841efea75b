"""Sign-in pages (placeholder until the sign-in flow lands)."""

from __future__ import annotations

from typing import Any

SIGNIN_ROUTES: list[Any] = []
