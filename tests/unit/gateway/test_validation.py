"""Validation failures become sentences naming the field; the validator's own notation never reaches a person."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import pytest

from exchange.cases.schemas import CaseIn, ConsentIn
from exchange.referrals.schemas import ReferralIn
from gateway.validation import FieldError, field_error, from_litestar, sentence
from gateway.web.i18n import gettext_for
from tenants.schemas import ProfileUpdate
from tests.validator_words import VALIDATOR_WORDS

ID = str(uuid.uuid4())
# Real failures of real bodies: whatever msgspec says about them, the sentence must be plain.
BAD_BODIES: list[tuple[type[Any], Any, str, str]] = [
    (CaseIn, {}, "title", "required"),
    (CaseIn, [], "", "type"),
    (CaseIn, {"title": 5, "subjects": []}, "title", "type"),
    (CaseIn, {"title": "", "subjects": []}, "title", "empty"),
    (CaseIn, {"title": "x" * 301, "subjects": []}, "title", "too_long"),
    (CaseIn, {"title": "t", "subjects": []}, "subjects", "none_chosen"),
    (CaseIn, {"title": "t", "subjects": [{"ref": "r", "full_name": "n", "role": "kid"}]}, "subjects[0].role", "choice"),
    (
        CaseIn,
        {"title": "t", "subjects": [{"ref": "r", "full_name": "n", "role": "child", "birth_date": "2020-13-01"}]},
        "subjects[0].birth_date",
        "type",
    ),
    (
        CaseIn,
        {"title": "t", "subjects": [{"ref": "r", "full_name": "n", "role": "child", "identifiers": {"snils": "1"}}]},
        "subjects[0].identifiers.snils",
        "format",
    ),
    (
        CaseIn,
        {"title": "t", "subjects": [{"ref": "r", "full_name": "n", "role": "child"}], "owner": 1},
        "owner",
        "unknown",
    ),
    (
        CaseIn,
        {"title": "t", "subjects": [{"ref": "r", "full_name": "n", "role": "child"}], "key_worker_id": "no"},
        "key_worker_id",
        "type",
    ),
    (
        ConsentIn,
        {
            "subject_id": ID,
            "given_by": {"name": "a", "relation": "self"},
            "purposes": ["a"],
            "categories": [],
            "recipients": {},
            "valid_until": "2030-01-01T00:00:00Z",
        },
        "categories",
        "none_chosen",
    ),
    (
        ConsentIn,
        {
            "subject_id": ID,
            "given_by": {"name": "a", "relation": "self"},
            "purposes": ["a"],
            "categories": ["identity"],
            "recipients": {},
            "valid_until": "soon",
        },
        "valid_until",
        "type",
    ),
    (ReferralIn, {"legal_basis": {"type": "hearsay"}}, "legal_basis.type", "choice"),
    (ReferralIn, {"legal_basis": {}}, "legal_basis.type", "required"),
    (
        ReferralIn,
        {
            "case_id": ID,
            "to_tenant_id": ID,
            "kind": "referral",
            "purpose": "Bad",
            "problem": "p",
            "requested_service": "r",
            "urgency": "routine",
            "respond_by": "2030-01-01T00:00:00Z",
            "complete_by": "2030-01-01T00:00:00Z",
            "subject_ids": [ID] * 30,
            "categories": ["identity"],
            "legal_basis": {"type": "consent"},
        },
        "purpose",
        "format",
    ),
    (
        ProfileUpdate,
        {"contacts": {}, "services": [], "opening_hours": [{"days": ["mo"], "opens_at": "25:00", "closes_at": "1"}]},
        "opening_hours[0].opens_at",
        "format",
    ),
    (ProfileUpdate, {"contacts": {}, "services": [{"name": "n", "problems": [1]}]}, "services[0].problems[0]", "type"),
]


@pytest.mark.parametrize(("schema", "body", "field", "code"), BAD_BODIES)
def test_each_failure_names_its_field_in_a_plain_sentence(schema: type[Any], body: Any, field: str, code: str) -> None:
    with pytest.raises(msgspec.ValidationError) as refused:
        msgspec.convert(body, schema)
    error = field_error(str(refused.value))
    assert (error.field, error.code) == (field, code), str(refused.value)
    for language in ("en", "ru"):
        text = sentence(
            FieldError("Поле" if language == "ru" else field, error.code, error.limit), gettext_for(language)
        )
        assert not VALIDATOR_WORDS.search(text), text
        assert "%(" not in text


def test_litestar_reports_are_read_too() -> None:
    """Litestar moves the path of a body's failure into `key` and cuts it off the message; an empty body is its own
    message ("'data'"), which the issue saw as the whole detail."""
    errors = from_litestar(
        [
            {"message": "Invalid enum value 'kid'", "key": "subjects[0].role", "source": "body"},
            {"message": "Object missing required field `type`", "key": "legal_basis", "source": "body"},
            {"message": "'data'", "key": "data", "source": "body"},
            {"message": "Expected `int` <= 200", "key": "limit", "source": "query"},
            {"message": "Expected `int` > 0", "key": "size", "source": "query"},
            "not a dict",
        ]
    )
    assert [(e.field, e.code, e.limit) for e in errors] == [
        ("subjects[0].role", "choice", ""),
        ("legal_basis.type", "required", ""),
        ("", "body_required", ""),
        ("limit", "too_large", "200"),
        ("size", "too_small", "1"),
    ]
    assert [sentence(e) for e in errors] == [
        "subjects[0].role is not one of the allowed values.",
        "legal_basis.type is required.",
        "The request needs a body, and this one has none.",
        "limit must be at most 200.",
        "size must be at least 1.",
    ]


def test_the_calendar_sentence_and_its_member() -> None:
    error = field_error("outside the calendar `valid_until` - at `$`")
    assert error.as_member() == {
        "field": "valid_until",
        "code": "calendar",
        "limit": "1900-01-01 to 2200-12-31",
        "message": "valid_until must lie between 1900-01-01 and 2200-12-31.",
    }
    nested = field_error("outside the calendar `birth_date` - at `$.subjects[1]`")
    assert nested.field == "subjects[1].birth_date"


def test_an_unknown_message_is_still_a_sentence() -> None:
    error = field_error("Some future msgspec wording - at `$.title`")
    assert (error.field, error.code, sentence(error)) == ("title", "invalid", "title is not valid.")
