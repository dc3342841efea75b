"""The accepted calendar: every date and time field of every request body refuses the calendar's ends, at any offset."""

from __future__ import annotations

import datetime as dt
import importlib
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest

from audit.schemas import SubjectLookupIn
from exchange.cases.schemas import CaseIn, ConsentIn
from exchange.plans.schemas import PlanIn
from exchange.referrals.schemas import ReferralIn
from gateway.validation import field_error, sentence
from tenants.calendar import END_INSTANT, FIRST_INSTANT, OutOfCalendar, check_calendar, in_calendar
from tenants.schemas import Strict

REPO = Path(__file__).resolve().parents[3]
# Every area's wire shapes: tenants/schemas.py, audit/schemas.py and exchange/<area>/schemas.py.
SCHEMAS = sorted(p for package in ("tenants", "audit", "exchange") for p in (REPO / package).rglob("schemas.py"))
NOW = dt.datetime.now(dt.UTC)
SOON = (NOW + dt.timedelta(days=10)).isoformat()
ID = str(uuid.uuid4())
TASK = {
    "title": "t",
    "to_tenant_id": ID,
    "expected_result": "r",
    "complete_by": SOON,
    "purpose": "p",
    "problem": "p",
    "requested_service": "s",
    "subject_ids": [ID],
    "categories": ["identity"],
    "legal_basis": {"type": "consent"},
}
BODIES: dict[type[Strict], dict[str, Any]] = {
    CaseIn: {"title": "t", "subjects": [{"ref": "c", "full_name": "n", "role": "child", "birth_date": "2015-01-01"}]},
    ConsentIn: {
        "subject_id": ID,
        "given_by": {"name": "n", "relation": "parent"},
        "purposes": ["p"],
        "categories": ["identity"],
        "recipients": {"kinds": ["ngo"]},
        "valid_until": SOON,
        "valid_from": SOON,
    },
    ReferralIn: {
        "case_id": ID,
        "to_tenant_id": ID,
        "kind": "referral",
        "purpose": "p",
        "problem": "p",
        "requested_service": "s",
        "urgency": "routine",
        "respond_by": SOON,
        "complete_by": SOON,
        "subject_ids": [ID],
        "categories": ["identity"],
        "legal_basis": {"type": "consent"},
    },
    SubjectLookupIn: {"full_name": "n", "birth_date": "2015-01-01"},
    PlanIn: {
        "case_id": ID,
        "title": "t",
        "period_from": "2026-01-01",
        "period_until": "2026-06-30",
        "tasks": [{**TASK, "respond_by": SOON}],
    },
}
# Every date or time a request body takes, by the body it comes in and its path there.
FIELDS = [
    (CaseIn, ("subjects", 0, "birth_date"), "date"),
    (ConsentIn, ("valid_until",), "instant"),
    (ConsentIn, ("valid_from",), "instant"),
    (ReferralIn, ("respond_by",), "instant"),
    (ReferralIn, ("complete_by",), "instant"),
    (PlanIn, ("period_from",), "date"),
    (PlanIn, ("period_until",), "date"),
    (PlanIn, ("tasks", 0, "complete_by"), "instant"),
    (PlanIn, ("tasks", 0, "respond_by"), "instant"),
    (SubjectLookupIn, ("birth_date",), "date"),
]
OUTSIDE = {
    "date": ["0001-01-01", "9999-12-31", "1899-12-31", "2201-01-01"],
    "instant": [
        "0001-01-01T00:00:00+14:00",
        "0001-01-01T00:00:00-14:00",
        "9999-12-31T23:59:59+14:00",
        "9999-12-31T23:59:59-14:00",
        "1899-12-31T23:59:59Z",
        "1900-01-01T13:59:00+14:00",
        "2201-01-01T00:00:00Z",
        "2200-12-31T23:00:00-14:00",
    ],
}
INSIDE = {
    "date": ["1900-01-01", "2200-12-31"],
    "instant": [
        "1900-01-01T00:00:00Z",
        "1900-01-01T14:00:00+14:00",
        "2200-12-31T23:59:59.999999Z",
        "2200-12-31T09:59:59-14:00",
    ],
}


def _with(body: dict[str, Any], path: tuple[str | int, ...], value: str) -> dict[str, Any]:
    copy = msgspec.json.decode(msgspec.json.encode(body))
    target = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return copy


def _dotted(path: tuple[str | int, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


@pytest.mark.parametrize(("schema", "path", "kind"), FIELDS, ids=[f"{s.__name__}.{_dotted(p)}" for s, p, _ in FIELDS])
def test_every_date_field_refuses_the_ends_of_the_calendar(
    schema: type[Strict], path: tuple[Any, ...], kind: str
) -> None:
    for value in OUTSIDE[kind]:
        with pytest.raises(msgspec.ValidationError) as refused:
            msgspec.convert(_with(BODIES[schema], path, value), schema)
        error = field_error(str(refused.value))
        assert (error.code, error.field) == ("calendar", _dotted(path)), (value, str(refused.value))
        assert sentence(error) == f"{_dotted(path)} must lie between 1900-01-01 and 2200-12-31."
    for value in INSIDE[kind]:
        msgspec.convert(_with(BODIES[schema], path, value), schema)


def _date_fields(struct: type[msgspec.Struct]) -> set[str]:
    found = set()
    for field in msgspec.inspect.type_info(struct).fields:  # type: ignore[union-attr]  # a Struct's info
        kinds = getattr(field.type, "types", (field.type,))
        inner = [getattr(k, "type", k) for k in kinds]
        if any(isinstance(k, msgspec.inspect.DateType | msgspec.inspect.DateTimeType) for k in inner):
            found.add(field.name)
    return found


def test_the_table_names_every_date_field_of_every_request_body() -> None:
    """A new date field is refused outside the calendar by Strict; this keeps it in the table above, tested."""
    modules = [importlib.import_module(".".join(p.relative_to(REPO).with_suffix("").parts)) for p in SCHEMAS]
    bodies = {v for m in modules for v in vars(m).values() if isinstance(v, type) and issubclass(v, Strict)}
    declared = {(struct.__name__, name) for struct in bodies for name in _date_fields(struct)}
    nested = {"subjects": "SubjectIn", "tasks": "PlanTaskIn"}
    tabled = {
        (nested.get(str(path[0]), schema.__name__) if len(path) > 1 else schema.__name__, str(path[-1]))
        for schema, path, _ in FIELDS
    }
    assert declared == tabled


def test_instants_are_bounded_in_utc_whatever_their_offset() -> None:
    assert in_calendar(FIRST_INSTANT)
    assert not in_calendar(END_INSTANT)
    assert not in_calendar(dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=14))))  # no UTC instant at all
    assert not in_calendar(dt.datetime.max.replace(tzinfo=dt.timezone(dt.timedelta(hours=-14))))
    assert in_calendar(dt.datetime(2200, 12, 31, 23, 59))  # a naive time is read as UTC
    with pytest.raises(OutOfCalendar) as refused:
        check_calendar("since", dt.date(9999, 12, 31))
    assert refused.value.field == "since"
    check_calendar("since", None)
