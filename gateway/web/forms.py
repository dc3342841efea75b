"""The staff pages' forms: each one a typed body as the browser posts it, beside its conversion to what a service takes.

A handler receives its form as `data: Annotated[SomeForm, FORM]` (URL-encoded) or `UPLOAD` (multipart, for the forms
with a file); the GET forms (the composer's choice, the audit search) come through a dependency reading the query.
Fields are strings with defaults, so a form with a field left empty or out still arrives and is answered in the
page's own words: the conversions check it and return the exchange schema, or a `Refusal` the page shows. Litestar
refuses only a body no page sends (a field repeated that is not a checkbox group, or longer than its bound), and
gateway/web/errors.py shows that as a page, never as the validator's words. The CSRF field is checked before a
handler runs (gateway/auth/csrf.py) and is no member of any form.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal, TypeVar, get_origin

import msgspec
from litestar import Request
from litestar.datastructures import UploadFile
from litestar.di import Provide
from litestar.enums import RequestEncodingType
from litestar.params import Body

from audit.events import Action, Outcome
from audit.schemas import SubjectLookupIn
from exchange.cases.lookup import snils_digits
from exchange.cases.policy import STATUTORY_CATALOGUE
from exchange.cases.schemas import CaseIn, ConsentIn
from exchange.plans.schemas import CareActionIn, CareGoalIn, PlanIn, PlanTasksIn
from exchange.referrals.schemas import MessageIn, ReferralIn, StatutoryBasisIn, TransitionIn
from exchange.referrals.threads import MIN_JUSTIFICATION
from gateway.web.i18n import agency_zone
from gateway.web.pages import FIELD_LABELS, SUBJECT_ROLE_LABELS, day_error, invalid_form_text, translator
from tenants.calendar import Deadline, in_calendar
from tenants.errors import InvalidInput

FORM: Final = Body(media_type=RequestEncodingType.URL_ENCODED)
UPLOAD: Final = Body(media_type=RequestEncodingType.MULTI_PART)

Schema = TypeVar("Schema")
GetForm = TypeVar("GetForm", bound=msgspec.Struct)

# A group of checkboxes: one ticked box arrives as a string, several as a list (Litestar's URL-encoded parser).
Ticked = str | list[str]

# People a new case can name on its form (`subject-<row>-name`, ...).
SUBJECT_ROWS: Final = 3

# Generous upper bounds: they stop a form from feeding megabytes to argon2, and no real input comes near them.
_Email = Annotated[str, msgspec.Meta(max_length=320)]
_Secret = Annotated[str, msgspec.Meta(max_length=1024)]
_Code = Annotated[str, msgspec.Meta(max_length=64)]
_Text = Annotated[str, msgspec.Meta(max_length=320)]
_Long = Annotated[str, msgspec.Meta(max_length=8192)]


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a form is not sent on to its service, in the user's language."""

    text: str


def ticked(value: Ticked) -> list[str]:
    """The boxes of a group that were ticked (a blank value is no box)."""
    return [v for v in ([value] if isinstance(value, str) else value) if v.strip()]


def from_query(form: type[GetForm]) -> Provide:
    """A GET form as a dependency of its page: each field from its query parameter (every repeat, for a list field)."""
    names = {field.encode_name for field in msgspec.structs.fields(form)}
    many = {field.encode_name for field in msgspec.structs.fields(form) if get_origin(field.type) is list}

    def read(request: Request[Any, Any, Any]) -> GetForm:
        query = request.query_params
        fields = {name: query.getall(name) if name in many else query.get(name) for name in query if name in names}
        return msgspec.convert(fields, form)

    return Provide(read, sync_to_thread=False)


def _converted(request: Request[Any, Any, Any], body: dict[str, Any], schema: type[Schema]) -> Schema | Refusal:
    """The form's fields as the service's schema, or what the schema refused in the form's words."""
    try:
        return msgspec.convert(body, schema)
    except msgspec.ValidationError as exc:
        return Refusal(invalid_form_text(request, exc))


def _date(value: str) -> dt.date | None:
    """The day a date field holds, or None for anything else, a day outside the accepted calendar included."""
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        return None
    return day if in_calendar(day) else None


def _day_deadline(value: str, zone: dt.tzinfo) -> Deadline | None:
    """A date field's day as a deadline of the agency whose time zone is `zone` (tenants.calendar.deadline)."""
    day = _date(value)
    return None if day is None else Deadline.on(day, zone)


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


def _legal_basis(
    request: Request[Any, Any, Any], basis: str, reference: str, justification: str
) -> dict[str, Any] | Refusal:
    """The legal basis a form names: the family's consent, or a duty under the law with its reference and why."""
    _ = translator(request)
    if basis.strip() != "statutory":
        return {"type": "consent"}
    if not (reference.strip() and justification.strip()):
        return Refusal(_("A statutory basis needs the legal reference and a written justification."))
    return {"type": "statutory", "reference": reference.strip(), "justification": justification.strip()}


def _deadlines(
    request: Request[Any, Any, Any], respond_by: str, complete_by: str, *, now: dt.datetime, answer_optional: bool
) -> tuple[Deadline | None, Deadline] | Refusal:
    """The "answer by" and "complete by" fields as days of the agency (None for an answer day left empty where the
    service picks one). The service's own refusals of these (exchange/referrals/services.py, exchange/plans/) are for
    API clients: the form says them in words."""
    _ = translator(request)
    zone = agency_zone(request)
    given = respond_by.strip()
    answer = _day_deadline(given, zone) if given else None
    complete = _day_deadline(complete_by.strip(), zone)
    if complete is None or (answer is None and (given or not answer_optional)):
        return Refusal(day_error(request, FIELD_LABELS["complete_by" if complete is None else "respond_by"]))
    first, field = (answer, "respond_by") if answer is not None else (complete, "complete_by")
    if first.at <= now:
        return Refusal(_("%(field)s: choose a day after today.", field=_(FIELD_LABELS[field])))
    if answer is not None and complete.day < answer.day:
        return Refusal(
            _(
                "%(field)s must not be before %(other)s.",
                field=_(FIELD_LABELS["complete_by"]),
                other=_(FIELD_LABELS["respond_by"]),
            )
        )
    return answer, complete


# -- signing in (gateway/web/signin.py) --------------------------------------------------------------------------


class LoginForm(msgspec.Struct):
    email: _Email = ""
    password: _Secret = ""


class CodeForm(msgspec.Struct):
    code: _Code = ""


class PasswordForm(msgspec.Struct):
    current_password: _Secret = ""
    new_password: _Secret = ""
    confirmation: _Secret = ""


class LanguageForm(msgspec.Struct):
    language: Annotated[str, msgspec.Meta(max_length=8)] = ""
    next: Annotated[str, msgspec.Meta(max_length=2000)] = "/"


# -- casework (gateway/web/casework.py) --------------------------------------------------------------------------


class CaseForm(msgspec.Struct, kw_only=True, rename="kebab"):
    """A new case: its title, up to SUBJECT_ROWS people, the needs assessment and notes."""

    title: str = ""
    summary: str = ""
    key_worker: str = ""  # a colleague's user id; empty: the person opening the case
    needs_client: str = ""
    needs_carers: str = ""
    needs_community: str = ""
    subject_0_name: str = ""
    subject_0_ref: str = ""
    subject_0_role: str = ""
    subject_0_birth: str = ""
    subject_1_name: str = ""
    subject_1_ref: str = ""
    subject_1_role: str = ""
    subject_1_birth: str = ""
    subject_2_name: str = ""
    subject_2_ref: str = ""
    subject_2_role: str = ""
    subject_2_birth: str = ""
    # Ticked on the warning that someone is already on the agency's cases: open the case anyway.
    known_checked: str = ""

    def fields(self) -> dict[str, str]:
        """The fields under their names on the form, stripped: what the form shows again when it is refused."""
        return {name: value.strip() for name, value in msgspec.to_builtins(self).items()}

    def case_in(self, request: Request[Any, Any, Any], *, opened_by: uuid.UUID) -> CaseIn | Refusal:
        """The case; its key worker is the colleague chosen, else the person opening it (`opened_by`)."""
        _ = translator(request)
        form = self.fields()
        key_worker_id = _uuid(form["key-worker"]) if form["key-worker"] else opened_by
        if key_worker_id is None:
            return Refusal(_("Choose the key worker from the list."))
        subjects = []
        for row in range(SUBJECT_ROWS):
            if not (name := form[f"subject-{row}-name"]):
                continue
            role = form[f"subject-{row}-role"]
            # The default reference is in the page's language ("ребёнок 1"), as the pages show it afterwards.
            default_ref = (
                f"{_(SUBJECT_ROLE_LABELS.get(role, 'Person') if role != 'other' else 'Person').lower()} {row + 1}"
            )
            subject = {"ref": form[f"subject-{row}-ref"] or default_ref, "full_name": name}
            subject["role"] = role or "other"
            if birth := form[f"subject-{row}-birth"]:
                if _date(birth) is None:
                    return Refusal(day_error(request, FIELD_LABELS["birth_date"]))
                subject["birth_date"] = birth
            subjects.append(subject)
        if not form["title"] or not subjects:
            return Refusal(_("Give the case a title and at least one person."))
        body = {
            "title": form["title"],
            "subjects": subjects,
            "summary": form["summary"] or None,
            "needs": {k: form[f"needs-{k}"] for k in ("client", "carers", "community")},
            "key_worker_id": str(key_worker_id),
        }
        return _converted(request, body, CaseIn)


class ConsentForm(msgspec.Struct, kw_only=True):
    """A consent as the family signed it, with the signed form's scan (`evidence`) if one is attached."""

    subject_id: str = ""
    given_by_name: str = ""
    relation: str = ""
    purposes: Ticked = ""
    categories: Ticked = ""
    recipient_tenants: Ticked = ""
    recipient_kinds: Ticked = ""
    valid_until: str = ""
    evidence: UploadFile | None = None
    agencies: str = ""  # a button that turns the list of agencies to this offset, instead of recording the consent

    @property
    def upload(self) -> UploadFile | None:
        return self.evidence if self.evidence is not None and self.evidence.filename else None

    @property
    def agencies_offset(self) -> int | None:
        """The page of agencies asked for (None: record the consent); a value no button sends is the first page."""
        if not self.agencies.strip():
            return None
        return int(self.agencies) if self.agencies.isdigit() and len(self.agencies) < 7 else 0

    def shown(self) -> dict[str, Any]:
        """What the form shows again on another page of agencies: every field but the file."""
        return {
            "subject_id": self.subject_id.strip(),
            "given_by_name": self.given_by_name.strip(),
            "relation": self.relation.strip(),
            "purposes": ticked(self.purposes),
            "categories": ticked(self.categories),
            "recipient_tenants": ticked(self.recipient_tenants),
            "recipient_kinds": ticked(self.recipient_kinds),
            "valid_until": self.valid_until.strip(),
        }

    def consent_in(self, request: Request[Any, Any, Any], *, now: dt.datetime) -> ConsentIn | Refusal:
        _ = translator(request)
        body: dict[str, Any] = {
            "subject_id": self.subject_id.strip(),
            "given_by": {"name": self.given_by_name.strip(), "relation": self.relation.strip()},
            "purposes": ticked(self.purposes),
            "categories": ticked(self.categories),
            "recipients": {"tenants": ticked(self.recipient_tenants), "kinds": ticked(self.recipient_kinds)},
        }
        until = self.valid_until.strip()
        missing = [
            text
            for failed, text in (
                (not body["given_by"]["name"], _("Enter the name of the person who signed.")),
                (not body["purposes"], _("Tick at least one purpose.")),
                (not body["categories"], _("Tick at least one kind of data.")),
                (
                    not (body["recipients"]["tenants"] or body["recipients"]["kinds"]),
                    _("Name at least one recipient agency or kind of agency."),
                ),
                (not until, _("Enter the date until which the consent is valid.")),
            )
            if failed
        ]
        valid_until = _day_deadline(until, agency_zone(request))
        if valid_until is None and until:
            missing.append(day_error(request, FIELD_LABELS["valid_until"]))
        elif valid_until is not None and valid_until.at <= now:
            missing.append(_("%(field)s: choose a day after today.", field=_(FIELD_LABELS["valid_until"])))
        if missing or valid_until is None:
            return Refusal(" ".join(missing))
        body["valid_until"] = valid_until.at.isoformat()
        return _converted(request, body, ConsentIn)


class WithdrawalForm(msgspec.Struct, kw_only=True):
    reason: str = ""
    case_id: str = ""  # the case page the form is on, to go back to

    @property
    def case_path(self) -> str:
        return f"/cases/{self.case_id.strip()}" if self.case_id.strip() else "/cases"


class ComposerChoice(msgspec.Struct, kw_only=True):
    """The composer's first form, a GET: the directory's filters, then the recipient, purpose, basis and people."""

    problem_filter: str = ""
    district: str = ""
    kind: str = ""  # of agency, to filter the directory by
    to: str = ""
    purpose: str = ""
    basis: str = ""
    reference: str = ""
    subjects: list[str] = []  # every person ticked: the query repeats the parameter

    def chosen(self) -> dict[str, Any]:
        fields: dict[str, Any] = msgspec.to_builtins(self)
        return fields


class SharingFields(msgspec.Struct, kw_only=True):
    """What a form that sends a family's data names, a referral's or a plan's: why, about whom, which data, on what
    legal basis (the basis's fields are read by `_legal_basis`)."""

    purpose: str = ""
    problem: str = ""
    urgency: str = ""
    subjects: Ticked = ""
    categories: Ticked = ""
    basis: str = ""
    reference: str = ""
    justification: str = ""
    idempotency_key: str = ""


class ReferralForm(SharingFields, kw_only=True):
    """The composer's second form: the referral itself, with the directory filters and choices it carries along."""

    to: str = ""
    kind: str = ""
    requested_service: str = ""
    respond_by: str = ""
    complete_by: str = ""
    problem_filter: str = ""
    district: str = ""

    def chosen(self) -> dict[str, Any]:
        """What the composer shows again when the send is refused: everything as it was posted."""
        fields: dict[str, Any] = msgspec.to_builtins(self)
        return fields

    def referral_in(
        self, request: Request[Any, Any, Any], *, case_id: uuid.UUID, now: dt.datetime
    ) -> ReferralIn | Refusal:
        basis = _legal_basis(request, self.basis, self.reference, self.justification)
        if isinstance(basis, Refusal):
            return basis
        deadlines = _deadlines(request, self.respond_by, self.complete_by, now=now, answer_optional=False)
        if isinstance(deadlines, Refusal):
            return deadlines
        respond_by, complete_by = deadlines
        assert respond_by is not None  # not optional here
        body: dict[str, Any] = {
            "case_id": str(case_id),
            "to_tenant_id": self.to.strip(),
            "kind": self.kind.strip() or "referral",
            "purpose": self.purpose.strip(),
            "problem": self.problem.strip(),
            "requested_service": self.requested_service.strip(),
            "urgency": self.urgency.strip() or "routine",
            "subject_ids": ticked(self.subjects),
            "categories": ticked(self.categories),
            "legal_basis": basis,
            "respond_by": respond_by.day.isoformat(),
            "complete_by": complete_by.day.isoformat(),
        }
        return _converted(request, body, ReferralIn)


# -- multi-agency plans (gateway/web/plan_pages.py) --------------------------------------------------------------

# Tasks a plan's form holds (`task-<row>-to`, ...); an open plan takes more through its "add tasks" form.
TASK_ROWS: Final = 4


class PlanForm(SharingFields, kw_only=True, rename="kebab"):
    """A plan, or more tasks for one: up to TASK_ROWS tasks, each to one agency with its own deadlines, and what all
    of them share (purpose, the situation, about whom, the data sent and its legal basis). The plan's own fields
    (title, period, closing by itself) are left out by the form that adds tasks."""

    title: str = ""
    period_from: str = ""
    period_until: str = ""
    auto_close: str = ""  # a checkbox: "on" when ticked
    task_0_to: str = ""
    task_0_title: str = ""
    task_0_expected: str = ""
    task_0_complete_by: str = ""
    task_0_respond_by: str = ""
    task_1_to: str = ""
    task_1_title: str = ""
    task_1_expected: str = ""
    task_1_complete_by: str = ""
    task_1_respond_by: str = ""
    task_2_to: str = ""
    task_2_title: str = ""
    task_2_expected: str = ""
    task_2_complete_by: str = ""
    task_2_respond_by: str = ""
    task_3_to: str = ""
    task_3_title: str = ""
    task_3_expected: str = ""
    task_3_complete_by: str = ""
    task_3_respond_by: str = ""

    def fields(self) -> dict[str, Any]:
        """What the form shows again when it is refused: everything as it was posted, by the fields' names."""
        shown: dict[str, Any] = msgspec.to_builtins(self)
        shown["subjects"], shown["categories"] = ticked(self.subjects), ticked(self.categories)
        return shown

    def plan_in(self, request: Request[Any, Any, Any], *, case_id: uuid.UUID, now: dt.datetime) -> PlanIn | Refusal:
        _ = translator(request)
        title = self.title.strip()
        period_from, period_until = _date(self.period_from.strip()), _date(self.period_until.strip())
        if not title:
            return Refusal(_("Give the plan a title."))
        if period_from is None or period_until is None:
            return Refusal(day_error(request, FIELD_LABELS["period_from" if period_from is None else "period_until"]))
        if period_until < period_from:
            return Refusal(
                _(
                    "%(field)s must not be before %(other)s.",
                    field=_(FIELD_LABELS["period_until"]),
                    other=_(FIELD_LABELS["period_from"]),
                )
            )
        tasks = self._tasks(request, now=now)
        if isinstance(tasks, Refusal):
            return tasks
        body = {
            "case_id": str(case_id),
            "title": title,
            "period_from": period_from.isoformat(),
            "period_until": period_until.isoformat(),
            "auto_close": bool(self.auto_close.strip()),
            "tasks": tasks,
        }
        return _converted(request, body, PlanIn)

    def tasks_in(self, request: Request[Any, Any, Any], *, now: dt.datetime) -> PlanTasksIn | Refusal:
        tasks = self._tasks(request, now=now)
        return tasks if isinstance(tasks, Refusal) else _converted(request, {"tasks": tasks}, PlanTasksIn)

    def _tasks(self, request: Request[Any, Any, Any], *, now: dt.datetime) -> list[dict[str, Any]] | Refusal:
        """The rows filled in as the API's tasks, each with what they all share; a row left blank is no task."""
        _ = translator(request)
        basis = _legal_basis(request, self.basis, self.reference, self.justification)
        if isinstance(basis, Refusal):
            return basis
        if not self.problem.strip():
            return Refusal(_("Describe the situation the plan is to address."))
        if not ticked(self.categories):
            return Refusal(_("Tick at least one kind of data."))
        form: dict[str, str] = msgspec.to_builtins(self)
        tasks = []
        for row in range(TASK_ROWS):
            cells = {name: form[f"task-{row}-{name}"].strip() for name in TASK_CELLS}
            if not (cells["to"] or cells["title"] or cells["expected"]):
                continue
            number = row + 1
            if _uuid(cells["to"]) is None:
                return Refusal(_("Task %(number)d: choose the agency.", number=number))
            if not (cells["title"] and cells["expected"]):
                return Refusal(_("Task %(number)d: say what is to be done and the result expected.", number=number))
            deadlines = _deadlines(request, cells["respond-by"], cells["complete-by"], now=now, answer_optional=True)
            if isinstance(deadlines, Refusal):
                return Refusal(_("Task %(number)d: %(reason)s", number=number, reason=deadlines.text))
            respond_by, complete_by = deadlines
            task: dict[str, Any] = {
                "title": cells["title"],
                "to_tenant_id": cells["to"],
                "expected_result": cells["expected"],
                "complete_by": complete_by.day.isoformat(),
                "purpose": self.purpose.strip(),
                "problem": self.problem.strip(),
                # What the agency is asked to do is the task itself; its letter says it under that heading.
                "requested_service": cells["title"],
                "urgency": self.urgency.strip() or "routine",
                "subject_ids": ticked(self.subjects),
                "categories": ticked(self.categories),
                "legal_basis": basis,
            }
            if respond_by is not None:
                task["respond_by"] = respond_by.day.isoformat()
            tasks.append(task)
        if not tasks:
            return Refusal(
                _("Fill in at least one task: the agency, what is to be done, the result expected and its day.")
            )
        return tasks


TASK_CELLS: Final = ("to", "title", "expected", "complete-by", "respond-by")


# -- a referral's page (gateway/web/referral_pages.py) -----------------------------------------------------------


class TransitionForm(msgspec.Struct, kw_only=True):
    to: str = ""
    reason: str = ""
    outcome: str = ""  # the result for the family, when the referral is completed or failed
    note: str = ""

    def transition_in(self, request: Request[Any, Any, Any]) -> TransitionIn | Refusal:
        _ = translator(request)
        to, reason, result = self.to.strip(), self.reason.strip(), self.outcome.strip()
        if to == "rejected" and not reason:
            return Refusal(_("Give the reason for declining."))
        if to in ("completed", "failed") and not result:
            return Refusal(_("Choose the outcome for the family."))
        body: dict[str, Any] = {"to": to}
        if reason:
            body["reason"] = reason
        if result:
            body["outcome"] = {"result": result, "note": self.note.strip()}
        try:
            return msgspec.convert(body, TransitionIn)
        except msgspec.ValidationError:
            return Refusal(_("This action is not known."))


class MessageForm(msgspec.Struct, kw_only=True):
    """A message to the partner, with one document attached to it if a file is chosen (`attachment`)."""

    body: str = ""
    attachment: UploadFile | None = None

    @property
    def upload(self) -> UploadFile | None:
        return self.attachment if self.attachment is not None and self.attachment.filename else None

    def message_in(self, request: Request[Any, Any, Any]) -> MessageIn | Refusal:
        _ = translator(request)
        return MessageIn(body=self.body.strip()) if self.body.strip() else Refusal(_("Write a message first."))


class OwnBasisForm(msgspec.Struct, kw_only=True):
    """The recipient's own legal basis for keeping what it received: a catalogued provision and why it applies."""

    reference: str = ""
    justification: str = ""

    def basis_in(self, request: Request[Any, Any, Any]) -> StatutoryBasisIn | Refusal:
        _ = translator(request)
        reference, justification = self.reference.strip(), self.justification.strip()
        if reference not in STATUTORY_CATALOGUE:
            return Refusal(_("Choose the provision of the law from the list."))
        if len(justification) < MIN_JUSTIFICATION:
            return Refusal(_("Explain in at least 20 characters why the law lets your organisation keep the data."))
        return _converted(request, {"reference": reference, "justification": justification}, StatutoryBasisIn)


class AssignmentForm(msgspec.Struct, kw_only=True):
    assignee: str = ""  # a colleague's user id; empty to take the referral off everyone's list

    def assignee_id(self, request: Request[Any, Any, Any]) -> uuid.UUID | Refusal | None:
        _ = translator(request)
        chosen = _uuid(self.assignee.strip())
        return Refusal(_("Choose a colleague from the list.")) if chosen is None and self.assignee.strip() else chosen


# -- the administrator's and the DPO's pages (gateway/web/admin.py, dpo.py) ---------------------------------------


class InvitationForm(msgspec.Struct, kw_only=True):
    email: str = ""
    display_name: str = ""
    roles: Ticked = ""

    def shown(self) -> dict[str, Any]:
        return {"email": self.email, "display_name": self.display_name, "roles": ticked(self.roles)}


class RolesForm(msgspec.Struct, kw_only=True):
    roles: Ticked = ""


class ClientForm(msgspec.Struct, kw_only=True):
    """A new API client: its name, public key (a JWK as JSON), role and scopes."""

    name: str = ""
    jwk: str = ""
    role: str = ""
    scopes: Ticked = ""

    def shown(self) -> dict[str, Any]:
        return {"name": self.name, "jwk": self.jwk, "role": self.role, "scopes": ticked(self.scopes)}

    def public_jwk(self, request: Request[Any, Any, Any]) -> Any:
        """The key as JSON (the service checks it is a public JWK), or a Refusal when it is not JSON at all."""
        _ = translator(request)
        try:
            return json.loads(self.jwk)
        except json.JSONDecodeError:
            return Refusal(_("The public key is not valid JSON. Paste the whole JWK, from { to }."))


class ConfirmForm(msgspec.Struct):
    confirm: _Text = ""


class TimeZoneForm(msgspec.Struct):
    time_zone: _Text = ""


class AcceptForm(msgspec.Struct):
    new_password: _Long = ""
    confirmation: _Long = ""


class AuditSearchForm(msgspec.Struct, kw_only=True):
    """The audit console's search: a GET form, so its fields are query parameters."""

    actor: str = ""  # a colleague's email address or an actor's id
    subject_id: str = ""
    resource_id: str = ""
    action: str = ""
    outcome: str = ""
    since: str = ""
    until: str = ""

    def shown(self) -> dict[str, str]:
        fields: dict[str, str] = msgspec.to_builtins(self)
        return fields

    def criteria(self, request: Request[Any, Any, Any], zone: dt.tzinfo) -> tuple[dict[str, Any], dict[str, str]]:
        """The search's criteria but its actor (looked up by the page), and the errors to show next to the fields."""
        _ = translator(request)
        errors: dict[str, str] = {}
        criteria: dict[str, Any] = {}
        try:
            criteria["subject_id"] = uuid.UUID(self.subject_id.strip()) if self.subject_id.strip() else None
        except ValueError:
            errors["subject_id"] = _("A person's id looks like 0195f0e2-…: copy it from the case page.")
        if len(self.resource_id.strip()) > 64:
            errors["resource_id"] = _("That is too long for a record's id.")
        criteria["resource_id"] = self.resource_id.strip() or None
        criteria["action"] = Action(self.action) if self.action in set(Action) else None
        criteria["outcome"] = Outcome(self.outcome) if self.outcome in set(Outcome) else None
        for name, text, end in (("since", self.since, False), ("until", self.until, True)):
            try:
                criteria[name] = local_day(text, zone, end=end)
            except ValueError:
                errors[name] = day_error(request)
        if not errors and criteria["since"] and criteria["until"] and criteria["since"] >= criteria["until"]:
            errors["until"] = _("The last day must not be before the first.")
        return criteria, errors


def local_day(text: str | None, zone: dt.tzinfo, *, end: bool) -> dt.datetime | None:
    """A date from a date field as the start of that day (or of the next, for an inclusive end) in local time."""
    if not text:
        return None
    day = dt.date.fromisoformat(text)  # ValueError is the caller's field error
    if not in_calendar(day):  # outside tenants/calendar.py's range some days have no UTC instant, or no next day
        raise ValueError(f"{text!r} is out of range")
    if end:
        day += dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(), tzinfo=zone)


class ReviewForm(msgspec.Struct):
    note: Annotated[str, msgspec.Meta(max_length=2000)] = ""


_REPORT_FORMATS: Final[dict[str, Literal["json", "csv", "pdf"]]] = {"json": "json", "csv": "csv", "pdf": "pdf"}


class PersonLookupForm(msgspec.Struct):
    """The DPO's "find a person" form: the person's details, and which page or file of their report is wanted (the
    button pressed sends `format`, the "next page" button `cursor`)."""

    full_name: _Text = ""
    birth_date: _Code = ""
    snils: _Code = ""
    format: _Code = "json"
    cursor: _Code = ""

    def lookup(
        self, request: Request[Any, Any, Any], *, page_rows: int
    ) -> tuple[SubjectLookupIn | None, dict[str, str]]:
        """The lookup the form asks for, or the message of each field that holds nothing usable."""
        _ = translator(request)
        errors: dict[str, str] = {}
        if not self.full_name.strip():
            errors["full_name"] = _("Enter the person's full name, as it is written in their case.")
        birth_date = _date(self.birth_date.strip())
        if birth_date is None:
            errors["birth_date"] = day_error(request)
        snils = None
        if self.snils.strip():
            try:
                snils = snils_digits(self.snils)
            except InvalidInput:
                errors["snils"] = _("A SNILS has 11 digits, such as 123-456-789 01.")
        if errors or birth_date is None:
            return None, errors
        report_format = _REPORT_FORMATS.get(self.format, "json")
        return SubjectLookupIn(
            full_name=self.full_name,
            birth_date=birth_date,
            snils=snils,
            format=report_format,
            cursor=self.cursor or None,
            limit=page_rows if report_format == "json" else None,
        ), errors

    def shown(self) -> dict[str, str]:
        """What the form shows again: what was typed (the page answers only the DPO who typed it, and is not cached)."""
        return {"full_name": self.full_name, "birth_date": self.birth_date, "snils": self.snils}


class CareGoalForm(msgspec.Struct, kw_only=True):
    """A goal of the case's care plan and the part of the needs assessment it answers."""

    need: _Code = ""
    text: _Long = ""

    def goal_in(self, request: Request[Any, Any, Any]) -> CareGoalIn | Refusal:
        _ = translator(request)
        if not self.text.strip():
            return Refusal(_("Write the goal."))
        return _converted(request, {"need": self.need, "text": self.text.strip()}, CareGoalIn)


class CareActionForm(msgspec.Struct, kw_only=True, rename="kebab"):
    """An action towards a goal: what, who, by which day, and the case's referral that carries it out, if any."""

    goal: _Code = ""
    what: _Long = ""
    who: _Text = ""
    due_by: _Code = ""
    referral: _Code = ""

    def action_in(self, request: Request[Any, Any, Any]) -> CareActionIn | Refusal:
        _ = translator(request)
        if not (self.what.strip() and self.who.strip()):
            return Refusal(_("Say what is to be done and who does it."))
        due = _date(self.due_by.strip())
        if due is None:
            return Refusal(day_error(request, FIELD_LABELS["due_by"]))
        body = {
            "goal_id": self.goal.strip(),
            "what": self.what.strip(),
            "who": self.who.strip(),
            "due_by": due.isoformat(),
            "referral_id": self.referral.strip() or None,
        }
        return _converted(request, body, CareActionIn)


class CareReferralForm(msgspec.Struct, kw_only=True):
    """The referral of the case that carries out an action; blank for none."""

    referral: _Code = ""
