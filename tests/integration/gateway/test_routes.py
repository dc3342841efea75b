"""Every route is either declared public or guarded by a scope and roles; the schema matches the models."""

from __future__ import annotations

import ast
import inspect
import re
from dataclasses import dataclass
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from litestar import Litestar
from litestar.routes import HTTPRoute

from audit.events import Action
from gateway.app import OPENAPI_PATH
from gateway.auth.guards import AUDIT, GUARDS, PUBLIC, ROLES, SCOPE
from gateway.runtime import Runtime
from tenants.models import Base, Role, Scope

REPO = Path(__file__).resolve().parents[3]
# Routes anyone may call: probes, OAuth and key metadata, the token endpoint, problem descriptions, sign-in pages,
# the audit log's latest checkpoint, the witness endpoint peers send their checkpoints to.
PUBLIC_PREFIXES = (
    "/health/",
    "/.well-known/",
    "/oauth/token",
    "/problems/",
    "/login",
    "/logout",
    "/account/",
    "/static",
    "/favicon.ico",
    "/audit/checkpoint",
    "/metrics",  # the metrics token, or loopback only (gateway/controllers/metrics.py)
    "/witness/add-checkpoint",  # a peer's signed checkpoint, checked against its pinned key (audit/peer_witness.py)
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
            # The guards are registered on the routers (gateway.app): a route mounted beside them would be open.
            if not set(GUARDS) <= {guard for layer in handler.ownership_layers for guard in layer.guards or ()}:
                undeclared.append(f"{route.path}: declares its needs but is not under a guarded router")
    assert undeclared == []


# Routes that touch no tenant data, and why: every other route that is not public, API or staff page, must declare
# the audit action it records.
UNAUDITED = {
    "/api/v1/directory/tenants": "public profiles agencies publish about themselves",
    "/cases/new": "an empty form",
    "/admin/invite": "an empty form",
    "/admin/clients/new": "an empty form",
}


def test_every_route_declares_its_audit_action(app: Litestar) -> None:
    missing = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or route.path.startswith(OPENAPI_PATH):
            continue
        for handler in route.route_handlers:
            if handler.http_methods == {"OPTIONS"} or handler.opt.get(PUBLIC):
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
    """`session.get(Model, id)` skips tenant scoping; only access functions may reach rows by id, and they live in
    the areas' access.py modules (tests/unit/tenants/test_access.py holds them to one implementation)."""
    offenders = []
    for package in ("tenants", "audit", "exchange", "gateway"):
        for path in (REPO / package).rglob("*.py"):
            if path.name == "access.py":
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if re.search(r"\bsession\.(get|get_one)\(|^async def access_\w+\(\s*session|\bRowAccess\(", line):
                    offenders.append(f"{path.relative_to(REPO)}:{number}")
    assert offenders == []


async def test_migrations_produce_exactly_the_models(runtime: Runtime) -> None:
    async with runtime.engine.connect() as connection:
        differences = await connection.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync, opts={"compare_type": False}), Base.metadata)
        )
    assert differences == []


# The code's own packages, bottom first: each imports only those below it (gateway -> exchange -> audit -> tenants).
PACKAGES = ("tenants", "audit", "exchange", "gateway")
LAYERS = {
    "tenants": set(),
    "audit": {"tenants"},
    "exchange": {"audit", "tenants"},
    "gateway": {"exchange", "audit", "tenants"},
}
# The exchange's areas (and its three shared modules) with the others each may import, through public names only.
# The transport carries every area's envelopes, so its inbox applies them through the areas' services. An arrow
# added here is a new seam between areas: draw it on purpose.
EXCHANGE_AREAS = {
    "context": {"deps"},  # one request's session, principal, audit scope and collaborators
    "deps": {"cases", "letters"},  # the collaborators: data keys, age rules, the letter renderer
    "errors": {"cases"},  # a refusal carries the sharing policy's decision
    "cases": {"context", "deps", "referrals", "transport"},  # a withdrawal is announced to the referrals' recipients
    "letters": {"cases", "context", "deps", "referrals", "transport"},
    "referrals": {"cases", "context", "deps", "errors", "letters", "reports", "transport"},
    "plans": {"cases", "context", "deps", "errors", "referrals"},
    "reports": {"cases", "context", "deps", "referrals"},
    "transport": {"cases", "deps", "letters", "plans", "referrals"},
}


@dataclass(frozen=True, slots=True)
class Import:
    line: int
    module: str  # what `import module` names, or the module of `from module import name`
    name: str | None  # the name `from module import name` takes
    bound: str  # the name the import binds in the importing module


def _module_of(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.Module, me: str, is_package: bool) -> list[Import]:
    """Every import of a module at any depth (in functions and TYPE_CHECKING blocks too), relative ones resolved."""
    here = me.split(".") if is_package else me.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(node.lineno, alias.name, None, alias.asname or alias.name.split(".")[0]))
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                module = ".".join([*here[: len(here) - node.level + 1], *([module] if module else [])])
            for alias in node.names:
                found.append(Import(node.lineno, module, alias.name, alias.asname or alias.name))
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _area(dotted: str) -> str | None:
    parts = dotted.split(".")
    return parts[1] if parts[0] == "exchange" and len(parts) > 1 else None


def layering_problems(root: Path) -> list[str]:
    """Imports against the layers, between exchange areas without a declared seam, and of another module's private
    names (`from module import _name`, or `module._name` after importing the module)."""
    problems: set[tuple[str, int, str]] = set()
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            me = _module_of(path, root)
            tree = ast.parse(path.read_text(encoding="utf-8"))
            imports = [i for i in _imports(tree, me, path.name == "__init__.py") if i.module.split(".")[0] in PACKAGES]
            where = str(path.relative_to(root))
            bound = {}
            for imp in imports:
                target = imp.module if imp.name is None else f"{imp.module}.{imp.name}"
                # `import a.b` binds the package `a`; any other import binds what it names.
                whole_package = imp.name is None and imp.bound == imp.module.split(".")[0]
                bound[imp.bound] = imp.bound if whole_package else target
                if imp.module.split(".")[0] not in {me.split(".")[0], *LAYERS[me.split(".")[0]]}:
                    problems.add((where, imp.line, f"imports {imp.module}, a layer above {package}"))
                mine, theirs = _area(me), _area(target)
                if mine and theirs and theirs != mine and theirs not in EXCHANGE_AREAS[mine]:
                    seam = f"exchange.{mine} imports exchange.{theirs}, an undeclared seam"
                    problems.add((where, imp.line, seam))
                if imp.name is not None and _private(imp.name) and imp.module != me:
                    problems.add((where, imp.line, f"imports the private name {target}"))
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Attribute) and _private(node.attr)):
                    continue
                chain, base = [node.attr], node.value
                while isinstance(base, ast.Attribute):
                    chain.append(base.attr)
                    base = base.value
                if isinstance(base, ast.Name) and base.id in bound:
                    owner = ".".join([bound[base.id], *reversed(chain[1:])])
                    if owner != me:
                        problems.add((where, node.lineno, f"uses the private name {owner}.{node.attr}"))
    return [f"{where}:{line}: {text}" for where, line, text in sorted(problems)]


def test_dependencies_point_one_way_and_no_private_name_crosses_a_module() -> None:
    """gateway -> exchange -> audit -> tenants, subpackages included; exchange areas meet only at declared seams."""
    assert layering_problems(REPO) == []


def test_the_layering_check_finds_each_kind_of_fault(tmp_path: Path) -> None:
    """The check above fails on what it forbids: shown on a tree made of nothing but faults."""
    for package in PACKAGES:
        (tmp_path / package).mkdir()
    (tmp_path / "exchange" / "cases").mkdir()
    (tmp_path / "exchange" / "cases" / "services.py").write_text(
        "from gateway.app import create_app\n"
        "from exchange.reports.services import outcome_of\n"
        "from exchange.plans.services import _require_issuer\n"
        "from exchange.cases import access\n"
        "import tenants.access\n"
        "access._internal()\n"
        "tenants.access._user_permits\n"
    )
    (tmp_path / "audit" / "verify.py").write_text("def check() -> None:\n    from exchange.cases import services\n")
    assert layering_problems(tmp_path) == [
        "audit/verify.py:2: imports exchange.cases, a layer above audit",
        "exchange/cases/services.py:1: imports gateway.app, a layer above exchange",
        "exchange/cases/services.py:2: exchange.cases imports exchange.reports, an undeclared seam",
        "exchange/cases/services.py:3: exchange.cases imports exchange.plans, an undeclared seam",
        "exchange/cases/services.py:3: imports the private name exchange.plans.services._require_issuer",
        "exchange/cases/services.py:6: uses the private name exchange.cases.access._internal",
        "exchange/cases/services.py:7: uses the private name tenants.access._user_permits",
    ]


def test_every_api_route_that_reads_tenant_data_confirms_its_client_in_its_transaction(app: Litestar) -> None:
    """A bearer token's client is confirmed (not revoked, tenant active) inside the request's context for routes that
    record an audit action, and before the handler for every other route (gateway.auth.guards.confirm_client_first):
    so every API handler with an audit action must receive its context (`ctx`) or open it, directly or through a
    helper of its module."""
    for route in app.routes:
        if not route.path.startswith("/api/"):
            continue
        for handler in getattr(route, "route_handlers", []):
            if handler.opt.get(AUDIT) is None:
                continue
            module = inspect.getsource(inspect.getmodule(handler.fn))  # type: ignore[arg-type]
            source = inspect.getsource(handler.fn)
            helpers = [name for name in re.findall(r"await (_\w+)\(", source) if f"def {name}(" in module]
            injected = "ctx" in inspect.signature(handler.fn).parameters and "ctx" in handler.resolve_dependencies()
            opened = "open_context(" in source or any(
                "open_context(" in module.split(f"def {name}(", 1)[1].split("\ndef ", 1)[0] for name in helpers
            )
            assert injected or opened, f"{route.path} {sorted(handler.http_methods)} reads data without its context"
