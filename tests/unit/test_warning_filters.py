"""A deprecated API called from casebridge's code fails the suite; one called from a library's code is only shown."""

from __future__ import annotations

import functools
import types
import uuid
import warnings
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import types as key_types
from cryptography.utils import CryptographyDeprecationWarning
from litestar import Litestar, get
from litestar.exceptions import LitestarDeprecationWarning
from litestar.params import FromPath, HeaderParameter
from sqlalchemy.engine.result import IteratorResult, SimpleResultMetaData
from sqlalchemy.exc import SADeprecationWarning
from sqlalchemy.orm import declarative_mixin

# Modules of each kind the filters in pyproject.toml name, as warnings see them (Alembic loads scripts by file name).
CASEBRIDGE_MODULES = [
    "gateway.web.dpo",
    "exchange.reports.services",
    "audit.verify",
    "tenants.keys",
    "tests.factories",
    "env_py",
    "0001_tenants_py",
]
LIBRARY_MODULES = ["advanced_alchemy.repository", "gatewayish", "tests_of_someone_else", "litestar.app"]


def call_from(module: str, function: Callable[[], object]) -> object:
    """Calls `function` from a frame of `module`: warnings name the module of the frame their stacklevel points at."""
    code = compile("function()", f"<{module}>", "eval")
    return types.FunctionType(code, {"__name__": module, "function": function})()


def deprecated_api(category: type[Warning]) -> Callable[[], None]:
    """A library function deprecated the usual way: the warning points at its caller."""

    def api() -> None:
        warnings.warn("api() is deprecated, use new_api()", category, stacklevel=2)

    return api


def rows() -> IteratorResult[uuid.UUID, str]:
    return IteratorResult(SimpleResultMetaData(["id", "name"]), iter([(uuid.uuid4(), "Семья")]))


@pytest.mark.parametrize(
    "category", [DeprecationWarning, PendingDeprecationWarning, FutureWarning, CryptographyDeprecationWarning]
)
@pytest.mark.parametrize("module", CASEBRIDGE_MODULES)
def test_a_deprecated_call_from_casebridge_code_is_an_error(module: str, category: type[Warning]) -> None:
    with pytest.raises(category, match=r"api\(\) is deprecated"):
        call_from(module, deprecated_api(category))


@pytest.mark.parametrize("module", LIBRARY_MODULES)
def test_a_deprecated_call_from_a_library_is_shown_not_raised(module: str) -> None:
    with warnings.catch_warnings(record=True) as shown:  # keeps the suite's filters, records what they let through
        call_from(module, deprecated_api(DeprecationWarning))
    assert [(w.category, str(w.message)) for w in shown] == [(DeprecationWarning, "api() is deprecated, use new_api()")]


@pytest.mark.parametrize("module", ["exchange.reports.services", "tests.unit.test_warning_filters"])
def test_sqlalchemy_deprecations_are_pinned_on_their_casebridge_caller(module: str) -> None:
    """SQLAlchemy walks out of its own frames to name the caller: Result.tuples(), retired in 2.1, fails the suite."""
    with pytest.raises(SADeprecationWarning, match=r"Result\.tuples\(\) method is deprecated"):
        call_from(module, rows().tuples)
    (_, name), *_ = rows()  # the replacement: rows unpack as tuples
    assert name == "Семья"


def test_cryptography_deprecations_are_pinned_on_their_casebridge_caller() -> None:
    """cryptography warns with a UserWarning of its own, from the module attribute the caller reads."""
    retired = functools.partial(getattr, key_types, "PUBLIC_KEY_TYPES")
    with pytest.raises(CryptographyDeprecationWarning, match="Use PublicKeyTypes instead"):
        call_from("tenants.keys", retired)
    with warnings.catch_warnings(record=True) as shown:
        call_from("joserfc.jwk", retired)
    assert [w.category for w in shown] == [CryptographyDeprecationWarning]


def test_only_advanced_alchemy_may_still_use_declarative_mixin() -> None:
    """The one third-party deprecation the suite hides is hidden for its library alone."""
    mixin = functools.partial(declarative_mixin, type("Mixin", (), {}))
    with warnings.catch_warnings(record=True) as shown:
        call_from("advanced_alchemy.mixins.audit", mixin)
    assert shown == []
    with pytest.raises(SADeprecationWarning, match="declarative_mixin decorator"):
        call_from("tenants.models", mixin)


def test_litestar_deprecated_handler_signatures_fail_when_the_app_is_built() -> None:
    """Litestar reports these from its own modules, so they are errors by category, not by module."""

    @get("/cases/{case_id:uuid}")
    async def inferred(case_id: uuid.UUID) -> str:
        return str(case_id)

    @get("/cases/{case_id:uuid}")
    async def declared(case_id: FromPath[uuid.UUID]) -> str:
        return str(case_id)

    with pytest.raises(LitestarDeprecationWarning, match="path parameter 'case_id' declared using deprecated inferred"):
        Litestar(route_handlers=[inferred])
    assert Litestar(route_handlers=[declared]).route_handler_method_map["/cases/{case_id:uuid}"]


def test_litestar_deprecated_parameter_arguments_fail() -> None:
    with pytest.raises(DeprecationWarning, match="Deprecated 'header' parameter"):
        HeaderParameter(header="Idempotency-Key")
    assert HeaderParameter(name="Idempotency-Key").name == "Idempotency-Key"
