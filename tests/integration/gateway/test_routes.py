"""Every route is either declared public or guarded by a scope and roles; the schema matches the models."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from litestar import Litestar
from litestar.routes import HTTPRoute

from audit.events import Action
from gateway.app import OPENAPI_PATH
from gateway.auth.guards import AUDIT, PUBLIC, ROLES, SCOPE
from gateway.runtime import Runtime
from tenants.models import Base, Role, Scope

REPO = Path(__file__).resolve().parents[3]
# Routes anyone may call: probes, OAuth and key metadata, the token endpoint, problem descriptions, sign-in pages,
# the audit log's latest checkpoint.
PUBLIC_PREFIXES = (
    "/health/",
    "/.well-known/",
    "/oauth/token",
    "/problems/",
    "/login",
    "/logout",
    "/account/",
    "/static",
    "/audit/checkpoint",
)


def test_every_route_declares_access(app: Litestar) -> None:
    undeclared = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or route.path.startswith(OPENAPI_PATH):
            continue
        for handler in route.route_handlers:
            if handler.http_methods == {"OPTIONS"}:
                continue  # Litestar's automatic CORS preflight answer, which returns no data
            opt = handler.opt
            if opt.get(PUBLIC):
                if route.path != "/" and not route.path.startswith(PUBLIC_PREFIXES):
                    undeclared.append(f"{route.path}: public but not on the public list")
                continue
            if opt.get(SCOPE) not in set(Scope) or not opt.get(ROLES) or not set(opt[ROLES]) <= set(Role):
                undeclared.append(f"{route.path}: no scope/roles declared")
    assert undeclared == []


# Routes that touch no tenant data, and why: anything else under /api must declare the audit action it records.
UNAUDITED = {"/api/v1/directory/tenants": "public profiles agencies publish about themselves"}


def test_every_api_route_declares_its_audit_action(app: Litestar) -> None:
    missing = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or not route.path.startswith("/api/"):
            continue
        for handler in route.route_handlers:
            if handler.http_methods == {"OPTIONS"}:
                continue
            action = handler.opt.get(AUDIT, "undeclared")
            if action == "undeclared" or (action is None and route.path not in UNAUDITED):
                missing.append(f"{sorted(handler.http_methods)} {route.path}")
            elif action is not None:
                assert action in set(Action), route.path
    assert missing == []


def test_api_routes_are_never_public(app: Litestar) -> None:
    for route in app.routes:
        if isinstance(route, HTTPRoute) and route.path.startswith("/api/"):
            assert all(not h.opt.get(PUBLIC) for h in route.route_handlers), route.path


def test_no_direct_primary_key_reads_outside_access_functions() -> None:
    """`session.get(Model, id)` skips tenant scoping; only access functions may reach rows by id."""
    offenders = []
    for package in ("tenants", "audit", "exchange", "gateway"):
        for path in (REPO / package).rglob("*.py"):
            if path.name == "access.py":
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if re.search(r"\bsession\.(get|get_one)\(", line):
                    offenders.append(f"{path.relative_to(REPO)}:{number}")
    assert offenders == []


async def test_migrations_produce_exactly_the_models(runtime: Runtime) -> None:
    async with runtime.engine.connect() as connection:
        differences = await connection.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync, opts={"compare_type": False}), Base.metadata)
        )
    assert differences == []


LAYERS = {"tenants": set(), "audit": {"tenants"}, "exchange": {"audit", "tenants"}}


def test_dependencies_point_one_way() -> None:
    """gateway -> exchange -> audit -> tenants: a package imports only the packages below it, never gateway."""
    wrong = []
    for package, allowed in LAYERS.items():
        for path in (REPO / package).rglob("*.py"):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                match = re.match(r"\s*(?:from|import) (tenants|audit|exchange|gateway)\b", line)
                if match and match.group(1) != package and match.group(1) not in allowed:
                    wrong.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert wrong == []


def test_every_api_route_that_reads_tenant_data_confirms_its_client_in_its_transaction(app: Litestar) -> None:
    """A bearer token's client is confirmed (not revoked, tenant active) inside `tenant_transaction` for routes that
    record an audit action, and before the handler for every other route (gateway.app._guard_api_routes): so every
    API handler with an audit action must open its tenant transaction, directly or through a helper of its module."""
    for route in app.routes:
        if not route.path.startswith("/api/"):
            continue
        for handler in getattr(route, "route_handlers", []):
            if handler.opt.get(AUDIT) is None:
                continue
            module = inspect.getsource(inspect.getmodule(handler.fn))  # type: ignore[arg-type]
            source = inspect.getsource(handler.fn)
            helpers = [name for name in re.findall(r"await (_\w+)\(", source) if f"def {name}(" in module]
            opened = "tenant_transaction(" in source or any(
                "tenant_transaction(" in module.split(f"def {name}(", 1)[1].split("\ndef ", 1)[0] for name in helpers
            )
            assert opened, f"{route.path} {sorted(handler.http_methods)} reads data without tenant_transaction"
